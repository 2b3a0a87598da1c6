import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readCheckpoint } from './checkpoint.js';
import { mulberry32 } from './dataset.js';
import { makeTextFolder } from './test-helpers.js';
import type { MetricsRecord } from './metrics.js';

const cli = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/cli.js');
const VERSION = (
  JSON.parse(readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), '../package.json'), 'utf8')) as { version: string }
).version;
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

const evalRecords = (out: string) =>
  readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as MetricsRecord)
    .filter((r) => r.type === 'eval')
    .map((r) => [r.step, r.bpb]);

/** The last training step in metrics.jsonl (a line torn by the kill is skipped). */
const lastRecordedStep = (out: string) =>
  Math.max(
    0,
    ...readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .flatMap((l) => {
        try {
          const r = JSON.parse(l) as MetricsRecord;
          return r.type === 'train' ? [r.step] : [];
        } catch {
          return [];
        }
      }),
  );

/** Test preload that stalls the Nth checkpoint write half way (see the file). */
const stallHook = resolve(dirname(fileURLToPath(import.meta.url)), 'test-stall-checkpoint.mjs');

interface KillRecord {
  moment: 'step' | 'write';
  target: number;
  delayMs: number;
  /** The last step whose checkpoint the run reported before the kill (its start step if none). */
  lastReported: number;
  stepOnDisk?: number;
}

/**
 * Runs the CLI and SIGKILLs it: `'step'` — `delayMs` after its `target`th "checkpoint" line;
 * `'write'` — once its `target`th checkpoint write is half done (stalled by the preload).
 */
async function killOnce(o: { args: string[]; moment: 'step' | 'write'; target: number; delayMs: number }): Promise<KillRecord> {
  const child = spawn(process.execPath, ['--import', pathToFileURL(stallHook).href, cli, ...o.args, '--progress'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, BYTELATENT_STALL_CHECKPOINT_WRITE: o.moment === 'write' ? String(o.target) : '0' },
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  let stderr = '';
  let reported = 0;
  let lastReported = -1;
  const fire = new Promise<void>((r) => {
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const lines = stderr.split('\n');
      stderr = lines.pop()!;
      for (const line of lines) {
        const resumed = /resumed from .* at step (\d+)/.exec(line);
        if (resumed && lastReported < 0) lastReported = Number(resumed[1]);
        const saved = /^step (\d+): checkpoint /.exec(line);
        if (saved) {
          lastReported = Number(saved[1]);
          if (o.moment === 'step' && ++reported === o.target) setTimeout(r, o.delayMs);
        }
        if (o.moment === 'write' && line.startsWith(`stalled in checkpoint write ${o.target} `)) r();
      }
    });
  });
  const code = await Promise.race([fire.then(() => 'fire' as const), exited]);
  expect(code, `the run ended before the kill (${o.moment} ${o.target})`).toBe('fire');
  child.kill('SIGKILL');
  await exited;
  return { moment: o.moment, target: o.target, delayMs: o.delayMs, lastReported: Math.max(0, lastReported) };
}

describe('bytelatent-train CLI', () => {
  it('prints help', () => {
    const r = run(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('usage: bytelatent-train');
    expect(r.stdout).toContain('entropy-small');
  });

  it('--version prints the name and version and exits 0, on every command', () => {
    for (const args of [['--version'], ['export-blt', '--version'], ['study', '--version']]) {
      const r = run(args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stdout).toBe(`bytelatent-train ${VERSION}\n`);
      expect(r.stderr).toBe('');
    }
  });

  it('rejects bad flags with exit code 2 and one line naming them and pointing to --help', () => {
    const badConfig = join(tmp(), 'run.json');
    writeFileSync(badConfig, JSON.stringify({ step: 10, lr: '1e-3' }));
    for (const [args, message] of [
      // A --config file's unknown or mistyped fields are refused, not ignored.
      [['--config', badConfig], /unknown field "step" \(did you mean "steps"\?.*"lr" must be a number > 0, got "1e-3"/],
      [['--steps', 'ten'], /--steps must be an integer, got "ten"/],
      [['--preset', 'huge'], /unknown preset "huge"/],
      [['--bogus'], /Unknown option '--bogus'/],
      [['export-blt', '--bogus'], /Unknown option '--bogus'/],
      [['fly'], /unknown command "fly": one of train, /],
      [['export-blt', '--out', 'x'], /export-blt needs --run DIR/],
      [['--backend', 'tpu'], /--backend must be auto, wasm, cpu or webgpu, got "tpu"/],
      // corpus and study print no JSON document, so --json there is refused rather than ignored.
      [['study', '--json'], /--json goes with train, export-patcher and export-blt, not study/],
    ] as const) {
      const r = run([...args]);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/^bytelatent-train: [^\n]+ \(see bytelatent-train --help\)\n$/);
      expect(r.stdout).toBe('');
    }
  });

  it('a failure that is not a usage error (no checkpoint to resume) exits 1', () => {
    const r = run([...base, '--resume', '--out', tmp()]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^bytelatent-train: CHECKPOINT_\w+: .*cannot read checkpoint/m);
  });

  it('trains a few steps and prints one JSON summary line', () => {
    const out = tmp();
    const r = run([...base, '--steps', '4', '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    // Exactly one JSON document on stdout (the progress bar and logs are on stderr).
    expect(r.stdout.trimEnd()).not.toContain('\n');
    const summary = JSON.parse(r.stdout) as { endStep: number; lastEvalBpb: number; backend: string };
    expect(summary.endStep).toBe(4);
    expect(summary.backend).toBe('wasm');
    expect(summary.lastEvalBpb).toBeGreaterThan(0);
    // stderr is a pipe here: no progress bar unless asked for.
    expect(r.stderr).not.toMatch(/\] \d+\/4 /);
    expect(r.stderr).not.toMatch(/checkpoint/);
    const shown = run([...base, '--steps', '4', '--out', tmp(), '--json', '--progress']);
    expect(shown.stderr).toMatch(/\] 4\/4 \| loss /);
    expect(shown.stderr).toMatch(/^step 4: checkpoint /m);
  });

  it('Ctrl-C saves a checkpoint and exits 130; --resume finishes the run', async () => {
    const out = tmp();
    const child = spawn(process.execPath, [
      cli,
      ...base,
      '--steps',
      '400',
      '--checkpoint-every',
      '0',
      '--eval-every',
      '0',
      '--out',
      out,
      '--progress',
    ]);
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
    const r = run([
      ...base,
      '--steps',
      '400',
      '--checkpoint-every',
      '0',
      '--eval-every',
      '0',
      '--out',
      out,
      '--resume',
      '--stop-after',
      '2',
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(`resumed from`);
  });

  it('survives kill -9 at seeded random moments of training steps and of checkpoint writes: resume reaches the same losses', async () => {
    const steps = 40;
    const args = [...base, '--steps', String(steps), '--checkpoint-every', '1', '--eval-every', '0'];
    const straight = tmp();
    expect(run([...args, '--out', straight]).status).toBe(0);
    const out = tmp();
    // Another plan of kills: BYTELATENT_KILL_SEED=n npx vitest run src/cli.test.ts -t 'kill -9'
    const random = mulberry32(Number(process.env['BYTELATENT_KILL_SEED'] ?? 9));
    const kills: KillRecord[] = [];
    let resume = false;
    // Alternately: SIGKILL at a random moment inside the step after the kth checkpoint (a random delay
    // after its "checkpoint" line: forward, backward, update, metrics or the next write), and SIGKILL
    // while the nth checkpoint of the run is half written (the test preload stalls that write).
    for (const moment of ['step', 'write', 'step', 'write', 'step', 'write'] as const) {
      const target = 1 + Math.floor(random() * 5);
      const delayMs = Math.floor(random() * 80);
      const record = await killOnce({ args: [...args, '--out', out, ...(resume ? ['--resume'] : [])], moment, target, delayMs });
      kills.push(record);
      // Nothing lost: the checkpoint on disk is the last one the run reported, or the one being
      // written when the kill landed (renamed, not yet reported), never an older one, never torn.
      const { state } = await readCheckpoint(join(out, 'checkpoint.safetensors'));
      record.stepOnDisk = state.step;
      expect(state.step, JSON.stringify(record)).toBeGreaterThanOrEqual(record.lastReported);
      // ... and never ahead of the work: no checkpoint of a step whose loss was not recorded.
      expect(state.step, JSON.stringify(record)).toBeLessThanOrEqual(moment === 'write' ? record.lastReported : lastRecordedStep(out));
      if (moment === 'write') {
        // The kill landed mid-write: the half-written temporary file is there, the checkpoint intact.
        expect(readdirSync(out).filter((f) => f.startsWith('checkpoint.safetensors.tmp-')).length).toBeGreaterThan(0);
      }
      resume = true;
    }
    expect(
      kills.every((k) => k.stepOnDisk! > 0 && k.stepOnDisk! < steps),
      JSON.stringify(kills),
    ).toBe(true);
    const r = run([...args, '--out', out, '--resume']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/removed \d+ temporary file\(s\) of an interrupted write/);
    expect(readdirSync(out).filter((f) => f.includes('.tmp-'))).toEqual([]);
    // Every step's loss, bit for bit, and the final weights' held-out score equal the uninterrupted run's.
    expect(trainLosses(out)).toEqual(trainLosses(straight));
    expect(evalRecords(out).at(-1)).toEqual(evalRecords(straight).at(-1));
    if (process.env['BYTELATENT_KILL_LOG']) appendFileSync(process.env['BYTELATENT_KILL_LOG'], `${JSON.stringify(kills)}\n`);
  }, 240_000);
});
