import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@bytelatent/nn';
import { beforeAll, describe, expect, it } from 'vitest';
import { EntropyModel, entropyFromLogits, entropyModelArgsOfSize } from './entropy-model.js';
import { PatcherError } from './errors.js';

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
});

describe('EntropyModel.logitsCached', () => {
  it('gives, piece by piece, the logits of the whole row (sliding window, documents split after EOS)', async () => {
    const model = new EntropyModel(
      { dim: 16, n_layers: 2, n_heads: 2, max_seqlen: 20, attn_bias_type: 'local_block_causal', sliding_window: 4 },
      1,
    );
    const row = [1, 72, 101, 108, 2, 108, 111, 32, 119, 111, 2, 114, 108, 100, 33];
    const fullLogits = model.logits([row]);
    const full = await fullLogits.data();
    fullLogits.dispose();
    const before = tf.memory().numTensors;
    const cache = model.createCache();
    const got: number[] = [];
    for (const [a, b] of [
      [0, 1],
      [1, 6],
      [6, 7],
      [7, 15],
    ] as const) {
      const out = model.logitsCached(row.slice(a, b), cache);
      got.push(...(await out.data()));
      out.dispose();
    }
    expect(got.length).toBe(full.length);
    expect(got.every((v, i) => Math.abs(v - full[i]!) < 1e-5)).toBe(true);
    expect(cache.held).toBeLessThanOrEqual(3);
    // Past max_seqlen the caller starts a new context (a new cache), as `entropies` does.
    expect(() => model.logitsCached(new Array(6).fill(5), cache)).toThrow(PatcherError);
    cache.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const h = entropyFromLogits(model.logits([row]));
    expect(h.shape).toEqual([1, row.length]);
    h.dispose();
    model.dispose();
  });
});

describe('entropyModelArgsOfSize', () => {
  it('gives the arguments of a buildable entropy model of that width, depth and context', async () => {
    const args = entropyModelArgsOfSize(64, 2, 32);
    expect(args).toMatchObject({
      dim: 64,
      n_layers: 2,
      n_heads: 2,
      max_seqlen: 32,
      sliding_window: 32,
      attn_bias_type: 'local_block_causal',
    });
    const model = new EntropyModel(args, 0);
    try {
      const [entropies] = await model.entropies([Int32Array.of(1, 70, 71)]);
      expect(entropies).toHaveLength(3);
      expect(model.maxSeqLen).toBe(32);
    } finally {
      model.dispose();
    }
  });
});
