import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { byteGroupHashIdsReference, rollingPolynomialHashReference } from '@bytelatent/ngram-hash';
import { type SafetensorsTensor, serializeSafetensors } from '@bytelatent/nn';
import { afterAll, describe, expect, it } from 'vitest';
import { runGoldenCheck } from './run-golden.js';

const here = dirname(fileURLToPath(import.meta.url));
const TINY = process.env['BYTELATENT_GOLDEN_DIR'] ?? resolve(here, '../../../../shared/golden/tiny');
const CLI = resolve(here, '../dist/cli.js');

function run(dir: string) {
  const lines: string[] = [];
  return runGoldenCheck(dir, { log: (l) => lines.push(l) }).then((report) => ({ report, lines }));
}

describe('golden checker on shared/golden/tiny', () => {
  it('reproduces every implemented group of every case: integers exactly, floats within 1e-4', async () => {
    expect(existsSync(join(TINY, 'index.json')), `golden folder expected at ${TINY}`).toBe(true);
    const { report, lines } = await run(TINY);
    expect(report.failed).toBe(0);
    expect(report.maxAbsDiff).toBeGreaterThan(0); // floats are compared now, and differ at float32 rounding
    expect(report.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    for (const group of [
      'tokens',
      'hash_ids',
      'entropies',
      'entropy.logits',
      'act.entropy',
      'patch_lengths',
      'patch_lengths_unsplit',
      'patch_start_ids',
      'patch_ids',
      'decoder_patch_ids',
      'mask.entropy_self',
      'mask.cross_decoder',
      'rope.global',
    ]) {
      expect(
        lines.filter((l) => l.includes(`] ok   ${group} `)),
        group,
      ).toHaveLength(4);
    }
    // Integer groups are exact.
    expect(report.comparisons.filter((c) => c.comparison.tolerance === 0).every((c) => c.comparison.maxAbsDiff === 0)).toBe(true);
    for (const group of [
      'logits',
      'token_losses',
      'loss',
      'encoder.patch_embeds',
      'global.output',
      'decoder.patch_embeds',
      'act.blt.local_encoder',
      'act.blt.encoder_hash_tok_embedding',
      'act.blt.global_transformer',
      'act.blt.local_decoder',
    ]) {
      expect(
        lines.filter((l) => l.includes(`] ok   ${group} `)),
        group,
      ).toHaveLength(4);
    }
    // Every tensor of every case is checked: nothing is skipped any more.
    expect(report.checked).toBe(773);
    expect(report.skipped).toBe(0);
    expect(lines.at(-1)).toMatch(/^max_abs_diff=\S+ checked=773 skipped=0$/);
  });
});

// A folder of the same layout with another configuration: 3 hash functions, other n, another
// table size, a batch of 2 rows. Expected values come from the BigInt reference, not the fast path.
const tmpDirs: string[] = [];
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function writeSyntheticFolder(corrupt: boolean): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'golden-synthetic-'));
  tmpDirs.push(dir);
  await mkdir(join(dir, 'cases'));
  const vocab = 777;
  const sizes = [2, 5, 9];
  await writeFile(
    join(dir, 'config.json'),
    JSON.stringify({
      blt_args: { encoder_hash_byte_group_vocab: vocab, encoder_hash_byte_group_size: sizes, encoder_hash_byte_group_nb_functions: 3 },
    }),
  );
  const texts = ['Über 9000 — naïve', 'second row!!!!!!!!'];
  const rows = texts.map((t) => [1, ...Array.from(new TextEncoder().encode(t), (b) => b + 4), 2]);
  const len = Math.max(...rows.map((r) => r.length));
  const batch = rows.flatMap((r) => [...r, ...new Array<number>(len - r.length).fill(0)]);
  const tensors: Record<string, SafetensorsTensor> = {
    tokens: { dtype: 'I64', shape: [2, len], data: BigInt64Array.from(batch, BigInt) },
    entropies: { dtype: 'F32', shape: [2, len], data: new Float32Array(2 * len).fill(0.5) },
  };
  const raw: Record<string, string[]> = {};
  for (let f = 0; f < 3; f++) {
    for (const n of sizes) {
      const ids = byteGroupHashIdsReference(batch, n, { vocabSize: vocab, hashFunction: f, rowLength: len });
      if (corrupt && f === 1 && n === 5) ids[3] = (ids[3]! + 1) % vocab;
      tensors[`hash_ids.f${f}.n${n}`] = { dtype: 'I64', shape: [2, len], data: BigInt64Array.from(ids, BigInt) };
      raw[`f${f}.n${n}`] = Array.from(rollingPolynomialHashReference(batch, n, f, len), String);
    }
  }
  await writeFile(join(dir, 'cases', 'batch.safetensors'), serializeSafetensors(tensors));
  await writeFile(join(dir, 'cases', 'batch.json'), JSON.stringify({ name: 'batch', hash_raw_int64_before_mod: raw }));
  await writeFile(join(dir, 'index.json'), JSON.stringify({ cases: [{ name: 'batch' }] }));
  return dir;
}

describe('golden checker on another configuration', () => {
  it('passes unchanged with other sizes, functions, table size and a batch', async () => {
    const { report, lines } = await run(await writeSyntheticFolder(false));
    expect(report.failed).toBe(0);
    expect(report.checked).toBe(18); // 9 hash tensors + 9 raw arrays; no texts, so no token check
    expect(report.skipped).toBe(2); // tokens (no texts to derive them from) and entropies
    expect(lines.some((l) => l.includes('skip tokenizer: case JSON has no "texts" list'))).toBe(true);
  });

  it('fails and names the first mismatching value', async () => {
    const { report, lines } = await run(await writeSyntheticFolder(true));
    expect(report.failed).toBe(1);
    const fail = lines.find((l) => l.includes('FAIL'));
    expect(fail).toContain('hash_ids');
    expect(fail).toContain('first mismatch: hash_ids.f1.n5[3]');
  });

  it('reports a missing case file as a failure without stopping', async () => {
    const dir = await writeSyntheticFolder(false);
    await writeFile(join(dir, 'index.json'), JSON.stringify({ cases: [{ name: 'missing' }, { name: 'batch' }] }));
    const { report, lines } = await run(dir);
    expect(report.failed).toBe(1);
    expect(report.checked).toBe(18);
    expect(lines.some((l) => l.startsWith('[missing] ERROR'))).toBe(true);
  });
});

// Folders written by tools/golden-producer from the reference code (README there), in configurations
// the tiny vectors do not cover. mini-a: k=2, windowed cross-attention both ways, cross-attention at
// every local layer, GQA/MQA, head_dim 4, plain causal global and entropy masks, the combined
// patching rule, 2 hash functions. mini-b: one width and k=1 (no global token projection, no decoder
// patch projection), no hash tables, pm_size 2, the monotonic patching rule, a windowless
// document-split entropy mask. Each line of the checker must read its setting from config.json.
const FIXTURES = resolve(here, '../fixtures');

describe('golden checker on reference fixtures of other configurations', () => {
  it.each([
    ['mini-a', 164],
    ['mini-b', 131],
  ])('%s: every tensor matches (integers exactly, floats within 1e-4)', async (name, checked) => {
    const { report, lines } = await run(join(FIXTURES, name));
    expect(lines.filter((l) => l.includes('FAIL'))).toEqual([]);
    expect(report.failed).toBe(0);
    expect(report.maxAbsDiff).toBeGreaterThan(0);
    expect(report.maxAbsDiff).toBeLessThanOrEqual(1e-4);
    expect(report.checked).toBe(checked);
    expect(report.skipped).toBe(0);
    // The groups whose expected values depend on options the tiny vectors leave at one setting.
    for (const group of [
      'mask.entropy_self',
      'mask.global_self',
      'mask.cross_encoder',
      'mask.cross_decoder',
      'patch_start_ids',
      'patch_lengths',
      'decoder.patch_embeds',
      'logits',
      'act.blt.local_decoder',
    ]) {
      expect(
        lines.filter((l) => l.includes(`] ok   ${group} `)),
        group,
      ).toHaveLength(1);
    }
  });

  // mini-a has grouped-query attention: its key/value heads once went through a rank-5 tile, which
  // WebGPU runs on the CPU after a synchronous read that Node cannot do ("OffscreenCanvas is not defined").
  it('mini-a matches on webgpu too (software adapter; skipped without one)', async (ctx) => {
    const lines: string[] = [];
    let report;
    try {
      report = await runGoldenCheck(join(FIXTURES, 'mini-a'), { log: (l) => lines.push(l), backend: 'webgpu' });
    } catch (e) {
      if ((e as { code?: string }).code === 'BACKEND_UNAVAILABLE') ctx.skip();
      throw e;
    }
    expect(lines.filter((l) => l.includes('FAIL'))).toEqual([]);
    expect(report.failed).toBe(0);
    expect(report.checked).toBe(164);
    expect(report.maxAbsDiff).toBeLessThanOrEqual(1e-4);
  }, 120_000);

  it('reports a configuration the port does not support as a failure of the model check, and runs the others', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'golden-unsupported-'));
    tmpDirs.push(dir);
    await cp(join(FIXTURES, 'mini-a'), dir, { recursive: true });
    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { blt_args: Record<string, unknown> };
    config.blt_args['cross_attn_encoder'] = false; // the reference's pooling variant; ours has cross-attention only
    await writeFile(join(dir, 'config.json'), JSON.stringify(config));
    const { report, lines } = await run(dir);
    expect(report.failed).toBe(1);
    const fails = lines.filter((l) => l.includes('FAIL'));
    expect(fails).toHaveLength(1);
    expect(fails[0]).toContain('blt-model');
    expect(fails[0]).toContain('cannot run on this folder: BLT args: cross_attn_encoder');
    expect(lines.filter((l) => l.includes('] ok   ')).length).toBeGreaterThan(15); // tokens, hashes, masks, entropy model, patches
    expect(report.skipped).toBe(0);
  });
});

describe('golden CLI', () => {
  const exitCode = (args: string[]): number => {
    try {
      execFileSync(process.execPath, [CLI, ...args], { stdio: 'pipe' });
      return 0;
    } catch (e) {
      return (e as { status: number }).status;
    }
  };

  it('exits 0 on a match, 1 on a mismatch or a skipped tensor, 2 on an unreadable folder or bad arguments', async () => {
    const matching = await writeSyntheticFolder(false); // tokens and entropies are skipped there
    expect(exitCode([matching, '--allow-skipped'])).toBe(0);
    expect(exitCode([matching])).toBe(1);
    expect(exitCode([await writeSyntheticFolder(true)])).toBe(1);
    expect(exitCode([join(tmpdir(), 'no-such-golden-folder')])).toBe(2);
    expect(exitCode(['--bogus'])).toBe(2);
  }, 60_000); // five node processes; slow on a loaded machine, never a timing assertion
});
