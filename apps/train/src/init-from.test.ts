// Fine-tuning a model of a published layout (--init-from) and exporting it in one (export-blt --layout).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { ByteLatentTransformer, loadPretrained, savePretrained, type BltArgs } from '@bytelatent/blt';
import { EntropyModel, EntropyPatcher, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import { initBackend } from '@bytelatent/nn';
import { beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint, saveCheckpoint, CHECKPOINT_FORMAT, CHECKPOINT_VERSION } from './checkpoint.js';
import { BltTrainable } from './models.js';
import { AdamW } from '@bytelatent/nn';
import { PRESETS } from './presets.js';
import { RowPatcher } from './row-patcher.js';
import { exportBltPretrained } from './run.js';
import { makeTextFolder } from './test-helpers.js';
import { CHECKPOINT_FILE } from './trainer.js';

const cli = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/cli.js');
/** A BLT written by Meta's reference in the consolidated layout (params.json + consolidated.pth, ../entropy_model). */
const CONSOLIDATED = resolve(dirname(fileURLToPath(import.meta.url)), '../../../tools/golden/fixtures/layout-consolidated/pretrained/blt');
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 180_000 });
const tmp = () => mkdtempSync(join(tmpdir(), 'bytelatent-init-from-'));
const text = makeTextFolder();

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
  ffn_dim_multiplier: 1.0,
  max_seqlen: 64,
  max_encoder_seq_length: 64,
  local_attention_window_len: 64,
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
const ENTROPY_ARGS: EntropyModelArgs = {
  dim: 16,
  n_layers: 1,
  n_heads: 2,
  max_seqlen: 64,
  vocab_size: 260,
  attn_bias_type: 'local_block_causal',
  sliding_window: 64,
  multiple_of: 16,
};
const SETTINGS = { mode: 'entropy' as const, threshold: 5.1, maxPatchLength: 4 };
// Few steps at a small learning rate: the weights move, but stay far closer to the folder's than any
// fresh initialisation could be.
// --corpus: the patch cache lives beside it (in a temporary folder, not the working tree).
const TRAIN = [
  '--data',
  text.train,
  '--heldout',
  text.heldout,
  '--corpus',
  join(text.dir, 'corpus'),
  '--backend',
  'wasm',
  '--seq-len',
  '32',
  '--batch-size',
  '2',
  '--grad-accumulation',
  '1',
  '--warmup-steps',
  '1',
  '--eval-every',
  '0',
  '--lr',
  '1e-3',
];

let folder: string;
/** Every parameter of the original BLT and entropy model, by name. */
const original = new Map<string, Float32Array>();
const originalEntropy = new Map<string, Float32Array>();

async function weightsOf(registry: { list(): ReadonlyArray<{ name: string; variable: tf.Variable }> }): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const p of registry.list()) out.set(p.name, (await p.variable.data()) as Float32Array);
  return out;
}

function maxAbsDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
  let max = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i]! - y[i]!));
  }
  return max;
}

beforeAll(async () => {
  tf.env().set('PROD', true);
  await initBackend({ backend: 'cpu' });
  const blt = new ByteLatentTransformer(BLT_ARGS, 31);
  const patcher = EntropyPatcher.fromModel(new EntropyModel(ENTROPY_ARGS, 32), SETTINGS);
  folder = join(tmp(), 'blt-hub');
  await savePretrained(blt, patcher, folder, { layout: 'hub' });
  for (const [k, v] of await weightsOf(blt.registry)) original.set(k, v);
  for (const [k, v] of await weightsOf(patcher.model.registry)) originalEntropy.set(k, v);
  blt.dispose();
  patcher.dispose();
});

describe('bytelatent-train --init-from DIR', () => {
  it('fine-tunes a hub-layout BLT for 2 steps with its patching settings, then exports it in the transformers layout, which loads', async () => {
    const out = tmp();
    const r = run([...TRAIN, '--init-from', folder, '--steps', '2', '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
      endStep: number;
      lastLoss: number;
      parameters: number;
      initFrom: { location: string; layout: string };
    };
    expect(summary.endStep).toBe(2);
    expect(Number.isFinite(summary.lastLoss)).toBe(true);
    expect(summary.lastLoss).toBeGreaterThan(0);
    expect(summary.initFrom).toEqual({ location: folder, layout: 'hub' });
    expect(r.stderr).toContain(`initialised from ${folder} (hub layout); patching entropy, threshold 5.1, max patch length 4`);
    // The run's configuration: the folder's arguments and patching settings, its entropy model.
    const { state } = await readCheckpoint(join(out, CHECKPOINT_FILE));
    expect(state.kind).toBe('blt');
    expect(state.config['patching']).toEqual({ ...SETTINGS, entropyModel: folder });
    expect((state.config['model'] as BltArgs)['dim_global']).toBe(32);
    expect(state.config['initFrom']).toEqual({ location: folder, layout: 'hub' });

    const exported = join(tmp(), 'exported');
    const e = run(['export-blt', '--run', out, '--out', exported, '--layout', 'transformers']);
    expect(e.status, e.stderr).toBe(0);
    const info = JSON.parse(e.stdout) as { layout: string; dtype: string; files: string[]; patching: unknown };
    expect(info).toMatchObject({ layout: 'transformers', dtype: 'F32', patching: SETTINGS });
    expect(info.files).toEqual(['config.json', 'model.safetensors', 'tokenizer_config.json']);
    // The hash tables as tensors, to compare every weight (by default they stay in the file).
    const loaded = await loadPretrained(exported, { hashTables: 'tensors' });
    try {
      expect(loaded.layout).toBe('transformers');
      expect(loaded.patching).toEqual(SETTINGS);
      expect(loaded.model.parameterCount()).toBe(summary.parameters);
      // Training continued from the folder's weights: they moved, by about lr per step.
      const diff = maxAbsDiff(original, await weightsOf(loaded.model.registry));
      expect(diff).toBeGreaterThan(0);
      expect(diff).toBeLessThan(0.01);
      // The entropy model is the folder's, untouched.
      expect(maxAbsDiff(originalEntropy, await weightsOf(loaded.patcher!.model.registry))).toBe(0);
    } finally {
      loaded.dispose();
    }
  });

  it('fine-tunes a consolidated checkpoint written by the reference with its combined rule, and exports it in the hub layout', async () => {
    const out = tmp();
    const r = run([...TRAIN, '--init-from', CONSOLIDATED, '--steps', '1', '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(Number.isFinite((JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { lastLoss: number }).lastLoss)).toBe(true);
    // params.json data.patcher_args: entropy, threshold 5.08, threshold_add 0.01, max_patch_length 3.
    const { state } = await readCheckpoint(join(out, CHECKPOINT_FILE));
    expect(state.config['patching']).toEqual({
      mode: 'combined',
      threshold: 5.08,
      thresholdAdd: 0.01,
      maxPatchLength: 3,
      entropyModel: CONSOLIDATED,
    });
    const exported = join(tmp(), 'hub');
    const e = run(['export-blt', '--run', out, '--out', exported, '--layout', 'hub', '--dtype', 'BF16']);
    expect(e.status, e.stderr).toBe(0);
    const loaded = await loadPretrained(exported);
    expect(loaded.layout).toBe('hub');
    expect(loaded.patching).toEqual({ mode: 'combined', threshold: 5.08, thresholdAdd: 0.01, maxPatchLength: 3 });
    loaded.dispose();
  });

  it('fine-tunes an entropy model folder (kind from the folder), and refuses rows longer than the model reads', () => {
    const out = tmp();
    const r = run([
      ...TRAIN,
      '--preset',
      'entropy-tiny',
      '--init-from',
      join(folder, 'entropy_model'),
      '--steps',
      '1',
      '--out',
      out,
      '--json',
    ]);
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { lastLoss: number; initFrom: { layout: string } };
    expect(Number.isFinite(summary.lastLoss)).toBe(true);
    expect(summary.initFrom.layout).toBe('hub');
    const long = run([...TRAIN, '--init-from', folder, '--seq-len', '128', '--steps', '1', '--out', tmp()]);
    expect(long.status).toBe(2);
    expect(long.stderr).toContain('--seq-len 128 is longer than the blt model of');
    const notModel = run([...TRAIN, '--init-from', text.dir, '--steps', '1', '--out', tmp()]);
    expect(notModel.status).toBe(1); // not a usage error: the folder cannot be read as a model
    expect(notModel.stderr).toMatch(/not a BLT checkpoint folder/);
    expect(run(['export-blt', '--run', out, '--out', tmp(), '--layout', 'onnx']).stderr).toContain(
      '--layout must be hub or transformers, got "onnx"',
    );
  });

  it('export-blt --layout transformers writes a BLT that loads back, or refuses it before writing, naming --layout hub', async () => {
    // The tiny preset (multiple_of 64 at dims 32 and 64), and a rounding the transformers config.json
    // cannot carry (it stores intermediate_size, not ffn_dim_multiplier 0.77).
    for (const args of [PRESETS['tiny']!.model as BltArgs, { ...BLT_ARGS, multiple_of: 1, ffn_dim_multiplier: 0.77 }]) {
      const runDir = tmp();
      const trainable = new BltTrainable(args, 0, new RowPatcher({ mode: 'space' }));
      const optimizer = new AdamW(
        trainable.registry.list().map((p) => ({ name: p.name, variable: p.variable })),
        { beta1: 0.9, beta2: 0.95, weightDecay: 0, clipNorm: 0 },
      );
      await saveCheckpoint(join(runDir, CHECKPOINT_FILE), trainable, optimizer, {
        format: CHECKPOINT_FORMAT,
        version: CHECKPOINT_VERSION,
        step: 0,
        kind: 'blt',
        config: { model: args, patching: { mode: 'space' } },
      });
      const parameters = trainable.model.parameterCount();
      optimizer.dispose();
      trainable.dispose();
      const hub = await exportBltPretrained(runDir, join(tmp(), 'hub'), { layout: 'hub' });
      expect(hub.patching).toEqual({ mode: 'space', threshold: expect.any(Number) });
      const fromHub = await loadPretrained(hub.dir);
      expect(fromHub.model.parameterCount()).toBe(parameters);
      expect(fromHub.patching).toMatchObject({ mode: 'space' });
      fromHub.dispose();
      const out = join(tmp(), 'transformers');
      let written = false;
      try {
        await exportBltPretrained(runDir, out, { layout: 'transformers' });
        written = true;
      } catch (e) {
        expect((e as Error).message).toMatch(/cannot be exported in the transformers layout: .*; export it with --layout hub/);
        expect(existsSync(out)).toBe(false);
      }
      if (written) {
        const back = await loadPretrained(out);
        expect(back.model.parameterCount()).toBe(parameters);
        back.dispose();
      }
    }
  });
});
