import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readCheckpoint } from './checkpoint.js';
import { makeTextFolder } from './test-helpers.js';
import type { MetricsRecord } from './trainer.js';

const cli = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/cli.js');
const folder = makeTextFolder();
const base = ['--preset', 'entropy-tiny', '--data', folder.train, '--heldout', folder.heldout, '--backend', 'wasm', '--seq-len', '32'];
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120_000 });
const tmp = () => mkdtempSync(join(tmpdir(), 'bytelatent-cli-'));
const trainLosses = (out: string) =>
  readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as MetricsRecord)
    .filter((r) => r.type === 'train')
    .map((r) => [r.step, (r as { loss: number }).loss]);

describe('bytelatent-train CLI', () => {
  it('prints help', () => {
    const r = run(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('usage: bytelatent-train');
    expect(r.stdout).toContain('entropy-small');
  });

  it('rejects bad flags with exit code 2 and a message naming them', () => {
    expect(run(['--steps', 'ten']).stderr).toContain('--steps must be an integer, got "ten"');
    expect(run(['--preset', 'huge']).status).toBe(2);
    expect(run(['--bogus']).stderr).toContain("Unknown option '--bogus'");
    expect(run([...base, '--resume', '--out', tmp()]).stderr).toMatch(/cannot read checkpoint/);
  });

  it('trains a few steps and prints one JSON summary line', () => {
    const out = tmp();
    const r = run([...base, '--steps', '4', '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { endStep: number; lastEvalBpb: number; backend: string };
    expect(summary.endStep).toBe(4);
    expect(summary.backend).toBe('wasm');
    expect(summary.lastEvalBpb).toBeGreaterThan(0);
    expect(r.stderr).toContain('4/4');
  });

  it('Ctrl-C saves a checkpoint and exits 130; --resume finishes the run', async () => {
    const out = tmp();
    const child = spawn(process.execPath, [cli, ...base, '--steps', '400', '--checkpoint-every', '0', '--eval-every', '0', '--out', out]);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/\] [1-9]\d*\/400/.test(stderr) && !child.killed) child.kill('SIGINT');
    });
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    expect(code).toBe(130);
    const { state } = await readCheckpoint(join(out, 'checkpoint.safetensors'));
    expect(state.step).toBeGreaterThan(0);
    expect(state.step).toBeLessThan(400);
    const r = run([...base, '--steps', '400', '--checkpoint-every', '0', '--eval-every', '0', '--out', out, '--resume', '--stop-after', '2']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(`resumed from`);
  });

  it('survives kill -9 at random moments: the checkpoint always loads and the resumed run equals an uninterrupted one', async () => {
    const args = [...base, '--steps', '40', '--checkpoint-every', '1', '--eval-every', '0'];
    const straight = tmp();
    expect(run([...args, '--out', straight]).status).toBe(0);
    const out = tmp();
    let resume = false;
    const stepsAtKill: number[] = [];
    // Deterministic "random" kill delays: after start-up, inside the step/checkpoint loop.
    for (const delayMs of [1500, 2100, 1800]) {
      const child = spawn(process.execPath, [cli, ...args, '--out', out, ...(resume ? ['--resume'] : [])], { stdio: 'ignore' });
      const exited = new Promise((r) => child.on('exit', r));
      await new Promise((r) => setTimeout(r, delayMs));
      child.kill('SIGKILL');
      await exited;
      try {
        stepsAtKill.push((await readCheckpoint(join(out, 'checkpoint.safetensors'))).state.step);
        resume = true;
      } catch (e) {
        // Killed before the first checkpoint: nothing to resume yet, and nothing half-written.
        expect(String(e)).toMatch(/cannot read checkpoint/);
      }
    }
    // The kills landed mid-run, not after the end.
    expect(stepsAtKill.some((s) => s > 0 && s < 40), String(stepsAtKill)).toBe(true);
    const r = run([...args, '--out', out, ...(resume ? ['--resume'] : [])]);
    expect(r.status, r.stderr).toBe(0);
    expect(trainLosses(out)).toEqual(trainLosses(straight));
  }, 120_000);
});
