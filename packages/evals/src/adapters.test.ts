import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ByteLatentTransformer, type BltArgs } from '@bytelatent/blt';
import { EntropyModel, EntropyPatcher, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import { initBackend, serializeSafetensors } from '@bytelatent/nn';
import { beforeAll, describe, expect, it } from 'vitest';
import { bltPatchingFromSettings } from '@bytelatent/blt';
import { bltScorer, entropyModelScorer, measurePatching } from './adapters.js';
import { evaluateBitsPerByte } from './bits-per-byte.js';
import { evaluateCharacterTasks, generateCharacterTasks } from './character-tasks.js';
import { loadModelFile, loadPretrainedEntropyModel } from './load-model.js';
import { expectCode } from './test-helpers.js';

const ENTROPY_ARGS: EntropyModelArgs = {
  dim: 16,
  n_layers: 1,
  n_heads: 2,
  max_seqlen: 48,
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
  multiple_of: 16,
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
const TEXT = 'A byte latent transformer reads bytes, groups them into patches, and predicts the next byte. ';

beforeAll(async () => {
  tf.env().set('PROD', true);
  await initBackend({ backend: 'cpu' });
});

describe('entropyModelScorer', () => {
  it('returns log-softmax at the targets, without leaking tensors', async () => {
    const em = new EntropyModel(ENTROPY_ARGS, 5);
    const scorer = entropyModelScorer(em);
    const row = { tokens: Int32Array.of(1, 70, 71, 72), targets: Int32Array.of(70, 71, 72, 73) };
    const [got] = await scorer.logProbs([row]);
    const logits = em.logits([row.tokens]);
    const want = (await tf.logSoftmax(logits).data()) as Float32Array;
    row.targets.forEach((y, t) => expect(got![t]).toBeCloseTo(want[t * 260 + y]!, 5));
    logits.dispose();
    await evaluateBitsPerByte(scorer, TEXT);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await evaluateBitsPerByte(scorer, TEXT, { contextLength: 20 });
    expect(tf.memory().numTensors).toBe(before);
    em.dispose();
  });

  it('the shipped entropy model knows English (far below the uniform 8.02 bits per byte)', async () => {
    const loaded = await loadPretrainedEntropyModel();
    const r = await evaluateBitsPerByte(loaded.model, TEXT.repeat(4));
    expect(r.bitsPerByte).toBeLessThan(4);
    expect(loaded.parameters).toBeGreaterThan(100_000);
    loaded.dispose();
  });
});

describe('bltScorer', () => {
  it('is −tokenLosses of rows patched as in training, without leaking tensors', async () => {
    const blt = new ByteLatentTransformer(BLT_ARGS, 3);
    const scorer = bltScorer(blt, { mode: 'space' });
    const text = new TextEncoder().encode(TEXT);
    const tokens = Int32Array.from([1, ...text.subarray(0, 29)].map((b, i) => (i === 0 ? b : b + 4)));
    const targets = Int32Array.from(text.subarray(0, 30), (b) => b + 4);
    const [got] = await scorer.logProbs([{ tokens, targets }]);
    expect(scorer.patchCounts().positions).toBe(30);
    // Space patches of BOS + "A byte latent transformer rea", by hand: [BOS] [A ] [byte ] [latent ] [transformer ] [rea].
    const losses = blt.tokenLosses([tokens], [Int32Array.from([1, 2, 5, 7, 12, 3])], [targets]);
    const want = (await losses.data()) as Float32Array;
    losses.dispose();
    want.forEach((l, t) => expect(got![t]).toBeCloseTo(-l, 5));
    await evaluateBitsPerByte(scorer, TEXT);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 2; i++) await evaluateBitsPerByte(scorer, TEXT);
    expect(tf.memory().numTensors).toBe(before);
    blt.dispose();
  });

  it('measures the same mean patch size it scores with', async () => {
    const blt = new ByteLatentTransformer(BLT_ARGS, 4);
    const patcher = EntropyPatcher.fromModel(new EntropyModel(ENTROPY_ARGS, 6), { threshold: 5.5 });
    for (const patching of [
      { mode: 'static' as const, patchSize: 4 },
      { mode: 'entropy' as const, patcher, maxPatchLength: 3 },
    ]) {
      const scorer = bltScorer(blt, patching);
      await evaluateBitsPerByte(scorer, TEXT, { contextLength: 40 });
      const measured = await measurePatching(patching, new TextEncoder().encode(TEXT), 40);
      expect(measured.positions).toBe(scorer.patchCounts().positions);
      expect(measured.patches).toBe(scorer.patchCounts().patches);
    }
    patcher.dispose();
    blt.dispose();
  });

  it('loads from a file with its patching metadata and runs the character tasks', async () => {
    const blt = new ByteLatentTransformer(BLT_ARGS, 7);
    const dir = mkdtempSync(join(tmpdir(), 'evals-blt-'));
    const path = join(dir, 'blt.safetensors');
    writeFileSync(path, await blt.toSafetensors({ patching: JSON.stringify({ mode: 'static', patchSize: 3 }) }));
    blt.dispose();
    const loaded = await loadModelFile(path);
    expect(loaded.kind).toBe('blt');
    if (loaded.kind !== 'blt') throw new Error('unreachable');
    expect(loaded.patching).toEqual({ mode: 'static', patchSize: 3 });
    const items = generateCharacterTasks({ perTask: 2, shots: 1, tasks: ['reverse-spelling', 'contains-char'] });
    const r = await evaluateCharacterTasks(loaded.model, items);
    expect(r.tasks.map((t) => t.items)).toEqual([2, 2]);
    loaded.dispose();
    await expectCode(() => loadModelFile(join(dir, 'missing.safetensors')), 'DATA_UNAVAILABLE');
    const foreign = join(dir, 'foreign.safetensors');
    writeFileSync(foreign, serializeSafetensors(new Map([['w', { dtype: 'F32', shape: [1], data: Float32Array.of(1) }]])));
    await expectCode(() => loadModelFile(foreign), 'INVALID_MODEL_FILE');
  });

  it('scores with every rule a released checkpoint can name (monotonic, combined, byte) and its maximum patch length', async () => {
    const blt = new ByteLatentTransformer(BLT_ARGS, 9);
    const patcher = EntropyPatcher.fromModel(new EntropyModel(ENTROPY_ARGS, 10), { threshold: 5.1 });
    const bytes = new TextEncoder().encode(TEXT);
    expect(bltPatchingFromSettings({ mode: 'space', maxPatchLength: 4 }, patcher)).toEqual({ mode: 'space', maxPatchLength: 4 });
    expect(bltPatchingFromSettings({ threshold: 5 }, patcher)).toEqual({ mode: 'entropy', patcher, threshold: 5 });
    for (const settings of [
      { mode: 'monotonic' as const, threshold: 0.01 },
      { mode: 'combined' as const, threshold: 5.1, thresholdAdd: 0.02, maxPatchLength: 2 },
      { mode: 'byte' as const },
    ]) {
      const patching = bltPatchingFromSettings(settings, patcher);
      const scorer = bltScorer(blt, patching);
      const r = await evaluateBitsPerByte(scorer, TEXT, { contextLength: 40 });
      expect(Number.isFinite(r.bitsPerByte)).toBe(true);
      const measured = await measurePatching(patching, bytes, 40);
      expect(measured.patches).toBe(scorer.patchCounts().patches);
      if (settings.mode === 'byte') expect(measured.meanPatchSize).toBe(1);
      if (settings.mode === 'combined') expect(measured.meanPatchSize).toBeLessThanOrEqual(2);
    }
    await expectCode(() => bltScorer(blt, { mode: 'combined', patcher, threshold: 5 }), 'INVALID_ARGUMENT');
    patcher.dispose();
    blt.dispose();
  });

  it('rejects patching without what the mode needs', async () => {
    const blt = new ByteLatentTransformer(BLT_ARGS, 8);
    await expectCode(() => bltScorer(blt, { mode: 'entropy' }), 'INVALID_ARGUMENT');
    await expectCode(() => bltScorer(blt, { mode: 'static' }), 'INVALID_ARGUMENT');
    await expectCode(() => bltScorer(blt, { mode: 'bpe' as never }), 'INVALID_ARGUMENT');
    await expectCode(() => measurePatching({ mode: 'space' }, new Uint8Array(0), 8), 'EMPTY_INPUT');
    blt.dispose();
  });
});
