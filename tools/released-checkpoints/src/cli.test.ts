import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSize } from './units.js';

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('cli', () => {
  it('writes a tiny checkpoint and prints one JSON line of figures', async () => {
    const out = await mkdtemp(join(tmpdir(), 'released-cli-'));
    dirs.push(out);
    const r = spawnSync(
      process.execPath,
      [cli, '--model', 'blt-entropy', '--layout', 'hub', '--preset', 'tiny', '--out', out, '--seed', '3', '--no-fsync'],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.length).toBe(1);
    const summary = JSON.parse(lines[0]!);
    expect(summary).toMatchObject({ model: 'blt-entropy', layout: 'hub', preset: 'tiny', dtype: 'bf16', seed: 3, tensors: 21 });
    expect(summary.files.map((f: { path: string }) => f.path)).toEqual(['config.json', 'model.safetensors']);
    expect(typeof summary.seconds).toBe('number');
    expect(summary.parameters).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/MB\/s/);
  });

  it('rejects bad arguments with status 2', () => {
    for (const args of [
      ['--model', 'gpt2', '--layout', 'hub', '--out', 'x'],
      ['--model', 'blt-1b', '--out', 'x'],
      ['--model', 'blt-1b', '--layout', 'hub'],
      ['--bogus'],
    ]) {
      const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/usage/);
    }
  });

  it('reads shard sizes like transformers', () => {
    expect(parseSize('5GB')).toBe(5e9);
    expect(parseSize('500MB')).toBe(5e8);
    expect(parseSize('2GiB')).toBe(2 * 2 ** 30);
    expect(parseSize('123456')).toBe(123456);
    expect(() => parseSize('5 parsecs')).toThrow(/size/);
  });
});
