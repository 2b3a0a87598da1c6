import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { ByteLatentTransformer, savePretrained, type BltArgs } from '@bytelatent/blt';
import { EntropyModel, EntropyPatcher, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import { initBackend } from '@bytelatent/nn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bltScorer, measurePatching } from './adapters.js';
import { loadPretrained, type BltPatching } from '@bytelatent/blt';
import { evaluateBitsPerByte } from './bits-per-byte.js';
import { loadModel, pretrainedFolderKind } from './load-model.js';
import { expectCode } from './test-helpers.js';

const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/cli.js');
/** A BLT written by Meta's reference in the consolidated layout (params.json + consolidated.pth, ../entropy_model). */
const CONSOLIDATED = resolve(dirname(fileURLToPath(import.meta.url)), '../../../tools/golden/fixtures/layout-consolidated/pretrained/blt');

const ENTROPY_ARGS: EntropyModelArgs = {
  dim: 16,
  n_layers: 1,
  n_heads: 2,
  max_seqlen: 48,
  vocab_size: 260,
  attn_bias_type: 'local_block_causal',
  sliding_window: 48,
  multiple_of: 16,
};
const BLT_ARGS: BltArgs = {
  vocab_size: 260,
  dim_global: 32,
  dim_local_encoder: 16,
  dim_local_decoder: 16,
  n_layers_global: 1,
  n_layers_local_encoder: 1,
  n_layers_local_decoder: 1,
  n_heads_global: 2,
  n_heads_local_encoder: 2,
  n_heads_local_decoder: 2,
  // The reference's default rounding (multiple_of 256): a transformers config.json carries only
  // intermediate_size, from which loadPretrained infers one rounding for every component.
  ffn_dim_multiplier: 1.0,
  max_seqlen: 48,
  max_encoder_seq_length: 48,
  local_attention_window_len: 48,
  attn_bias_type: 'block_causal',
  use_local_encoder_transformer: true,
  cross_attn_encoder: true,
  cross_attn_decoder: true,
  cross_attn_init_by_pooling: true,
  cross_attn_k: 2,
  cross_attn_nheads: 2,
  cross_attn_all_layers_decoder: true,
  downsampling_by_pooling: 'max',
  encoder_hash_byte_group_size: [3, 4],
  encoder_hash_byte_group_vocab: 61,
  encoder_hash_byte_group_nb_functions: 1,
};
const TEXT = 'A byte latent transformer reads bytes, groups them into patches, and predicts the next byte. '.repeat(3);
// The patching settings the folders carry: a threshold that the random entropy model passes at about
// one byte in five (its entropies lie in 4.8..5.2 nats), so the 3-byte cap decides many patches.
const SETTINGS = { mode: 'entropy' as const, threshold: 5.12, maxPatchLength: 3 };

let blt: ByteLatentTransformer;
let patcher: EntropyPatcher;
let dir: string;
let textFile: string;
const folders: Record<'hub' | 'transformers', string> = { hub: '', transformers: '' };

beforeAll(async () => {
  tf.env().set('PROD', true);
  await initBackend({ backend: 'cpu' });
  blt = new ByteLatentTransformer(BLT_ARGS, 11);
  patcher = EntropyPatcher.fromModel(new EntropyModel(ENTROPY_ARGS, 12), SETTINGS);
  dir = mkdtempSync(join(tmpdir(), 'evals-pretrained-'));
  textFile = join(dir, 'text.txt');
  writeFileSync(textFile, TEXT);
  for (const layout of ['hub', 'transformers'] as const) {
    folders[layout] = join(dir, layout);
    await savePretrained(blt, patcher, folders[layout], { layout });
  }
});

afterAll(() => {
  blt.dispose();
  patcher.dispose();
});

/** Bits per byte of the in-process model with a rule, and the patches it made. */
async function inProcess(patching: BltPatching): Promise<{ bitsPerByte: number; meanPatchSize: number }> {
  const scorer = bltScorer(blt, patching);
  const r = await evaluateBitsPerByte(scorer, TEXT, { contextLength: scorer.maxContext, batchSize: 8 });
  const { positions, patches } = scorer.patchCounts();
  return { bitsPerByte: r.bitsPerByte, meanPatchSize: positions / patches };
}

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args, '--backend', 'cpu'], {
    encoding: 'utf8',
    env: { ...process.env, INIT_CWD: process.cwd() },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Rewrites a JSON file of a copied folder. */
function editJson(path: string, edit: (value: Record<string, unknown>) => void): void {
  const value = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  edit(value);
  writeFileSync(path, JSON.stringify(value));
}

describe('loadModel on a folder of a published layout', () => {
  for (const layout of ['hub', 'transformers'] as const) {
    it(`${layout}: scores exactly as the in-process model with the folder's patching settings`, async () => {
      const loaded = await loadModel(folders[layout]);
      try {
        expect(loaded.kind).toBe('blt');
        if (loaded.kind !== 'blt') throw new Error('unreachable');
        expect(loaded.layout).toBe(layout);
        expect(loaded.patching).toMatchObject(SETTINGS);
        const want = await inProcess({ ...SETTINGS, patcher });
        const got = await evaluateBitsPerByte(loaded.model, TEXT, { contextLength: loaded.model.maxContext, batchSize: 8 });
        expect(got.bitsPerByte).toBeCloseTo(want.bitsPerByte, 6);
        const { positions, patches } = loaded.model.patchCounts();
        expect(positions / patches).toBeCloseTo(want.meanPatchSize, 12);
      } finally {
        loaded.dispose();
      }
    });
  }

  it('an entropy model folder is scored as the byte-level model it is; a foreign folder is refused', async () => {
    const entropyDir = join(folders.hub, 'entropy_model');
    expect(await pretrainedFolderKind(entropyDir)).toBe('entropy');
    expect(await pretrainedFolderKind(folders.transformers)).toBe('blt');
    const loaded = await loadModel(entropyDir);
    expect(loaded.kind).toBe('entropy');
    expect(loaded.layout).toBe('hub');
    expect(loaded.parameters).toBe(patcher.model.registry.count());
    loaded.dispose();
    await expectCode(() => loadModel(dir), 'INVALID_MODEL_FILE');
    await expectCode(() => loadModel(join(dir, 'nothing-here')), 'DATA_UNAVAILABLE');
  });
});

describe('bytelatent-eval --model DIR', () => {
  it('bpb through --model DIR (hub, transformers) equals bpb through the in-process model; --json is one document', async () => {
    const want = await inProcess({ ...SETTINGS, patcher });
    for (const layout of ['hub', 'transformers'] as const) {
      const r = cli('bpb', '--model', folders[layout], '--file', textFile, '--json');
      expect(r.code, r.stderr).toBe(0);
      // Exactly one JSON document on stdout; the table went to stderr.
      const figures = JSON.parse(r.stdout) as {
        kind: string;
        layout: string;
        patching: Record<string, unknown>;
        results: Array<{ bytes: number; bitsPerByte: number; meanPatchSize: number }>;
      };
      expect(r.stderr).toMatch(new RegExp(`blt model \\(${layout} layout\\).*patching entropy, threshold 5\\.12, max length 3`));
      expect(figures.kind).toBe('blt');
      expect(figures.layout).toBe(layout);
      expect(figures.patching).toMatchObject(SETTINGS);
      expect(figures.results[0]!.bytes).toBe(new TextEncoder().encode(TEXT).length);
      expect(figures.results[0]!.bitsPerByte).toBeCloseTo(want.bitsPerByte, 6);
      expect(figures.results[0]!.meanPatchSize).toBeCloseTo(want.meanPatchSize, 12);
    }
  });

  it("honours the file's max_patch_length (hub train_args.json, transformers config.json)", async () => {
    const capped = await inProcess({ ...SETTINGS, maxPatchLength: 2, patcher });
    const uncapped = await inProcess({ mode: 'entropy', threshold: SETTINGS.threshold, patcher });
    expect(capped.meanPatchSize).toBeLessThanOrEqual(2);
    expect(uncapped.meanPatchSize).toBeGreaterThan(3);
    const hub = join(dir, 'hub-cap-2');
    cpSync(folders.hub, hub, { recursive: true });
    editJson(
      join(hub, 'train_args.json'),
      (v) => (((v['data'] as Record<string, unknown>)['patcher_args'] as Record<string, unknown>)['max_patch_length'] = 2),
    );
    const transformers = join(dir, 'transformers-no-cap');
    cpSync(folders.transformers, transformers, { recursive: true });
    editJson(join(transformers, 'config.json'), (v) => (v['max_patch_length'] = null));
    for (const [folder, want, cap] of [
      [hub, capped, 2],
      [transformers, uncapped, null],
    ] as const) {
      const r = cli('bpb', '--model', folder, '--file', textFile, '--json');
      expect(r.code, r.stderr).toBe(0);
      const figures = JSON.parse(r.stdout) as {
        patching: { maxPatchLength: number | null };
        results: Array<{ bitsPerByte: number; meanPatchSize: number }>;
      };
      expect(figures.patching.maxPatchLength).toBe(cap);
      expect(figures.results[0]!.meanPatchSize).toBeCloseTo(want.meanPatchSize, 12);
      expect(figures.results[0]!.bitsPerByte).toBeCloseTo(want.bitsPerByte, 6);
    }
    // flops measures the mean patch with the same rule.
    const flops = cli('flops', '--model', hub, '--file', textFile, '--json');
    expect(flops.code, flops.stderr).toBe(0);
    const measured = await measurePatching(
      { ...SETTINGS, maxPatchLength: 2, patcher },
      new TextEncoder().encode(TEXT),
      BLT_ARGS.max_encoder_seq_length as number,
    );
    expect((JSON.parse(flops.stdout) as { meanPatchSize: number }).meanPatchSize).toBeCloseTo(measured.meanPatchSize, 12);
  });

  it("--patcher DIR (an entropy model folder) wins over the folder's own; the BLT keeps its patching settings", async () => {
    const other = EntropyPatcher.fromModel(new EntropyModel(ENTROPY_ARGS, 99), { mode: 'entropy', threshold: 0.1 });
    const otherDir = join(dir, 'other-blt');
    await savePretrained(blt, other, otherDir, { layout: 'hub' });
    const want = await inProcess({ ...SETTINGS, patcher: other });
    other.dispose();
    // The two entropy models patch differently (else the test would prove nothing).
    expect(want.meanPatchSize).not.toBeCloseTo((await inProcess({ ...SETTINGS, patcher })).meanPatchSize, 3);
    const r = cli('bpb', '--model', folders.transformers, '--patcher', join(otherDir, 'entropy_model'), '--file', textFile, '--json');
    expect(r.code, r.stderr).toBe(0);
    const figures = JSON.parse(r.stdout) as {
      patching: { threshold: number };
      results: Array<{ bitsPerByte: number; meanPatchSize: number }>;
    };
    expect(figures.patching.threshold).toBe(SETTINGS.threshold);
    expect(figures.results[0]!.meanPatchSize).toBeCloseTo(want.meanPatchSize, 12);
    expect(figures.results[0]!.bitsPerByte).toBeCloseTo(want.bitsPerByte, 6);
  });

  it('a consolidated checkpoint written by the reference: its combined rule (threshold_add) and max_patch_length, as the library scores them', async () => {
    // params.json data.patcher_args: patching_mode entropy, threshold 5.08, threshold_add 0.01, max_patch_length 3.
    const loaded = await loadPretrained(CONSOLIDATED);
    let want: { bitsPerByte: number; meanPatchSize: number };
    try {
      const scorer = bltScorer(loaded.model, {
        mode: 'combined',
        threshold: 5.08,
        thresholdAdd: 0.01,
        maxPatchLength: 3,
        patcher: loaded.patcher!,
      });
      const r = await evaluateBitsPerByte(scorer, TEXT, { contextLength: scorer.maxContext, batchSize: 8 });
      want = { bitsPerByte: r.bitsPerByte, meanPatchSize: scorer.patchCounts().positions / scorer.patchCounts().patches };
    } finally {
      loaded.dispose();
    }
    const r = cli('bpb', '--model', CONSOLIDATED, '--file', textFile, '--json');
    expect(r.code, r.stderr).toBe(0);
    const figures = JSON.parse(r.stdout) as {
      layout: string;
      patching: Record<string, unknown>;
      results: Array<{ bitsPerByte: number; meanPatchSize: number }>;
    };
    expect(figures.layout).toBe('consolidated');
    expect(figures.patching).toEqual({ mode: 'combined', threshold: 5.08, thresholdAdd: 0.01, patchSize: null, maxPatchLength: 3 });
    expect(figures.results[0]!.bitsPerByte).toBeCloseTo(want.bitsPerByte, 6);
    expect(figures.results[0]!.meanPatchSize).toBeCloseTo(want.meanPatchSize, 12);
  });

  it('cute and noise run on a folder model; a folder that is no model is a typed error', () => {
    const cute = cli('cute', '--model', folders.hub, '--per-task', '1', '--shots', '0', '--json');
    expect(cute.code, cute.stderr).toBe(0);
    expect((JSON.parse(cute.stdout) as { layout: string }).layout).toBe('hub');
    const noise = cli('noise', '--model', folders.transformers, '--file', textFile, '--max-bytes', '64', '--json');
    expect(noise.code, noise.stderr).toBe(0);
    expect((JSON.parse(noise.stdout) as { results: unknown[] }).results).toHaveLength(1);
    const bad = cli('bpb', '--model', dir, '--file', textFile);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/INVALID_MODEL_FILE: .*not a BLT checkpoint folder/);
  });
});
