import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type SafetensorsTensor, parseSafetensors, serializeSafetensors } from '@bytelatent/nn';
import { afterAll, describe, expect, it } from 'vitest';
import type { GoldenCheck } from './checks/index.js';
import { runGoldenCheck } from './run-golden.js';

// Planted folders: a copy of a small reference fixture with one thing changed. Every tensor of the
// case must end up compared (ok or FAIL) or skipped by name with its reason: none may vanish.
const here = dirname(fileURLToPath(import.meta.url));
const FIXTURE = resolve(here, '../fixtures/mini-a');
const CASE = 'packed';
const CLI = resolve(here, '../dist/cli.js');

const tmpDirs: string[] = [];
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function plant(change: (dir: string) => Promise<void>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'golden-planted-'));
  tmpDirs.push(dir);
  await cp(FIXTURE, dir, { recursive: true });
  await change(dir);
  return dir;
}

async function editConfig(dir: string, edit: (blt: Record<string, unknown>) => void): Promise<void> {
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { blt_args: Record<string, unknown> };
  edit(config.blt_args);
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
}

async function run(dir: string, checks?: readonly GoldenCheck[]) {
  const lines: string[] = [];
  const report = await runGoldenCheck(dir, { log: (l) => lines.push(l), ...(checks ? { checks } : {}) });
  return { report, lines };
}

/** The skip lines that name `name` (`[case] skip N tensor(s) (reason): a, b`). */
function skipLinesOf(lines: readonly string[], name: string): string[] {
  return lines.filter((l) => l.startsWith(`[${CASE}] skip `) && (l.split(': ').at(-1) ?? '').split(', ').includes(name));
}

/** Every tensor of the case is compared (ok or FAIL) or named in exactly one skip line; the totals add up. */
async function expectNothingVanished(dir: string, result: Awaited<ReturnType<typeof run>>): Promise<void> {
  const names = parseSafetensors(await readFile(join(dir, 'cases', `${CASE}.safetensors`))).names();
  const compared = new Set(result.report.comparisons.flatMap((c) => c.comparison.items));
  for (const name of names) {
    const skips = skipLinesOf(result.lines, name);
    expect(compared.has(name) || skips.length === 1, `${name} neither compared nor skipped by name`).toBe(true);
    expect(compared.has(name) && skips.length > 0, `${name} both compared and skipped`).toBe(false);
  }
  const tensorItems = [...compared].filter((n) => !n.startsWith('json:')).length;
  expect(tensorItems + result.report.skipped).toBe(names.length);
  expect(result.lines.at(-1)).toMatch(new RegExp(` skipped=${result.report.skipped}$`));
}

function cli(args: string[]): { status: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(process.execPath, [CLI, ...args], { stdio: 'pipe', encoding: 'utf8' });
    return { status: 0, stdout, stderr: '' };
  } catch (e) {
    const err = e as { status: number; stdout: string; stderr: string };
    return { status: err.status, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('golden checker never drops a tensor silently (planted folders)', () => {
  it('the unchanged fixture: everything compared, nothing skipped', async () => {
    const result = await run(FIXTURE);
    expect(result.report.skipped).toBe(0);
    await expectNothingVanished(FIXTURE, result);
  });

  it('no rope_theta in blt_args: rope.local and rope.global are skipped by name with the reason', async () => {
    const dir = await plant((d) => editConfig(d, (blt) => delete blt['rope_theta']));
    const result = await run(dir);
    expect(result.report.skipped).toBe(2);
    for (const name of ['rope.local', 'rope.global']) {
      const skips = skipLinesOf(result.lines, name);
      expect(skips, name).toHaveLength(1);
      expect(skips[0]).toContain('nn-masks-rope: no rope_theta in config.json');
    }
    expect(result.lines.at(-1)).toMatch(/ skipped=2$/);
    await expectNothingVanished(dir, result);
  });

  it('an unknown attn_bias_type: mask.global_self is skipped by name, never vanishes', async () => {
    const dir = await plant((d) => editConfig(d, (blt) => (blt['attn_bias_type'] = 'planted_unknown_bias')));
    const result = await run(dir);
    const skips = skipLinesOf(result.lines, 'mask.global_self');
    expect(skips).toHaveLength(1);
    expect(skips[0]).toContain('attn_bias_type planted_unknown_bias is not checked here');
    expect(result.report.skipped).toBeGreaterThanOrEqual(1);
    await expectNothingVanished(dir, result);
  });

  it('an extra tensor no check knows: skipped by name', async () => {
    const dir = await plant(async (d) => {
      const path = join(d, 'cases', `${CASE}.safetensors`);
      const file = parseSafetensors(await readFile(path));
      const tensors: Record<string, SafetensorsTensor> = {};
      for (const name of file.names()) tensors[name] = file.get(name);
      tensors['planted.unknown_tensor'] = { dtype: 'F32', shape: [3], data: Float32Array.of(1, 2, 3) };
      await writeFile(path, serializeSafetensors(tensors));
    });
    const result = await run(dir);
    expect(result.report.failed).toBe(0);
    expect(result.report.skipped).toBe(1);
    const skips = skipLinesOf(result.lines, 'planted.unknown_tensor');
    expect(skips).toHaveLength(1);
    expect(skips[0]).toContain('no check implemented for it yet');
    await expectNothingVanished(dir, result);
  });

  it('a raw-hash JSON entry the hash check cannot read: skipped by name', async () => {
    const dir = await plant(async (d) => {
      const path = join(d, 'cases', `${CASE}.json`);
      const json = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
      json['hash_raw_int64_before_mod'] = { ...(json['hash_raw_int64_before_mod'] as object), planted: ['1'] };
      await writeFile(path, JSON.stringify(json));
    });
    const result = await run(dir);
    expect(result.report.skipped).toBe(1);
    expect(result.lines).toContain(`[${CASE}] skip json:hash_raw_int64_before_mod.planted: ngram-hash: key is not f<F>.n<n>`);
  });

  it('a check that claims tensors but neither compares nor skips them: the runner still reports them', async () => {
    const silent: GoldenCheck = { name: 'silent', claims: (n) => n.startsWith('rope.'), run: () => [] };
    const result = await run(FIXTURE, [silent]);
    const skips = skipLinesOf(result.lines, 'rope.global');
    expect(skips).toHaveLength(1);
    expect(skips[0]).toContain('silent: claimed but neither compared nor skipped by the check');
    await expectNothingVanished(FIXTURE, result);
  });
});

describe('golden CLI and skipped tensors', () => {
  it('exits 1 when tensors were skipped, naming them; 0 with --allow-skipped', async () => {
    const dir = await plant((d) => editConfig(d, (blt) => delete blt['rope_theta']));
    const strict = cli([dir]);
    expect(strict.status).toBe(1);
    expect(strict.stdout).toContain('(nn-masks-rope: no rope_theta in config.json): rope.local, rope.global');
    expect(strict.stdout.trimEnd().split('\n').at(-1)).toMatch(/ skipped=2$/);
    expect(strict.stderr).toContain('--allow-skipped');
    const allowed = cli([dir, '--allow-skipped']);
    expect(allowed.status).toBe(0);
    expect(allowed.stdout.trimEnd().split('\n').at(-1)).toMatch(/ skipped=2$/);
  }, 60_000);

  it('an unknown attn_bias_type fails the run without --allow-skipped, naming mask.global_self', async () => {
    const bias = await plant((d) => editConfig(d, (blt) => (blt['attn_bias_type'] = 'planted_unknown_bias')));
    const result = cli([bias]);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/skip .*mask\.global_self/);
  }, 60_000);
});
