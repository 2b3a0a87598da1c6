import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import { bltArgsOfSize, resolveBltArgs } from './blt-args.js';
import { ByteLatentTransformer } from './blt-model.js';

describe('bltArgsOfSize', () => {
  it('gives the arguments of a buildable BLT of those sizes, the rest of the released variant', async () => {
    await tf.setBackend('cpu');
    const args = bltArgsOfSize({ dimGlobal: 64, dimLocal: 32, layersGlobal: 2, seqLen: 48, hashVocab: 128 });
    const resolved = resolveBltArgs(args);
    expect(resolved).toMatchObject({ vocabSize: 260 });
    expect(args).toMatchObject({
      n_heads_global: 2,
      n_heads_local_encoder: 1,
      n_layers_local_encoder: 1,
      n_layers_local_decoder: 1,
      local_attention_window_len: 48,
      encoder_hash_byte_group_vocab: 128,
      cross_attn_k: 2,
    });
    expect('patching_mode' in args).toBe(false);
    expect(bltArgsOfSize({ dimGlobal: 64, dimLocal: 32, layersGlobal: 1, seqLen: 16, patchingMode: 'space' }).patching_mode).toBe('space');
    const model = new ByteLatentTransformer(args, 0);
    try {
      const logits = model.forward([Int32Array.of(1, 70, 71, 72)], [Int32Array.of(1, 3)]);
      expect(logits.shape).toEqual([1, 4, 260]);
      logits.dispose();
    } finally {
      model.dispose();
    }
  });
});
