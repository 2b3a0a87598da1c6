import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@bytelatent/nn';
import { describe, expect, it } from 'vitest';
import { BltError } from '@bytelatent/nn';
import type { TensorSource } from '@bytelatent/nn';
import { backendThatHolds } from './pretrained.js';

/** A source that only describes its tensors (the choice reads nothing else). */
function describedSource(tensors: Record<string, number[]>): TensorSource {
  return {
    description: 'stub/model.safetensors',
    names: () => Object.keys(tensors),
    has: (name) => name in tensors,
    info: (name) => ({ name, dtype: 'BF16', shape: tensors[name]!, byteLength: tensors[name]!.reduce((a, b) => a * b, 1) * 2 }),
    readBytes: () => {
      throw new Error('not read');
    },
  };
}

// blt-1b's shapes in brief: 5.4 GiB of float32 weights besides 6 hash tables of 500,002 × 1,024.
const released = describedSource({
  'global_transformer.layers.0.feed_forward.w1.weight': [1_460_000_000, 1],
  ...Object.fromEntries(Array.from({ length: 6 }, (_, t) => [`encoder_hash_tok_embedding.${t}.weight`, [500_002, 1024]])),
});
const small = describedSource({ 'local_encoder.tok_embeddings.weight': [260, 64], 'encoder_hash_tok_embedding.0.weight': [1000, 64] });

describe('backendThatHolds (loadPretrained: a model too large for the wasm heap)', () => {
  it('moves a model past the wasm heap to cpu when the backend was left open, and says why', async () => {
    await initBackend({ backend: 'wasm' });
    const auto = await backendThatHolds(released, 'source', { backend: 'auto' }, undefined);
    expect(auto?.name).toBe('cpu');
    expect(auto?.reason).toMatch(/5\.4 GiB of float32 weights exceed the wasm heap \(4 GiB\)/);
    expect(tf.getBackend()).toBe('cpu');
    await initBackend({ backend: 'wasm' });
    expect((await backendThatHolds(released, 'source', {}, undefined))?.name).toBe('cpu');
  });

  it('refuses it when wasm was asked for, naming the file and the size', async () => {
    const wasm = await initBackend({ backend: 'wasm' });
    await expect(backendThatHolds(released, 'source', { backend: 'wasm' }, wasm)).rejects.toThrow(BltError);
    await expect(backendThatHolds(released, 'source', { backend: 'wasm' }, wasm)).rejects.toThrow(
      /stub\/model\.safetensors: the model's 5\.4 GiB .* backend 'cpu'/,
    );
    expect(tf.getBackend()).toBe('wasm');
  });

  it('counts the hash tables only when they become tensors, and leaves small models and other backends alone', async () => {
    const wasm = await initBackend({ backend: 'wasm' });
    expect(await backendThatHolds(small, 'source', { backend: 'wasm' }, wasm)).toBe(wasm);
    expect(await backendThatHolds(small, 'tensors', {}, undefined)).toBeUndefined();
    // The tables as float32 tensors (12.3 GB) alone are past the heap.
    const tablesOnly = describedSource(
      Object.fromEntries(Array.from({ length: 6 }, (_, t) => [`encoder_hash_tok_embedding.${t}.weight`, [500_002, 1024]])),
    );
    expect(await backendThatHolds(tablesOnly, 'source', {}, undefined)).toBeUndefined();
    expect((await backendThatHolds(tablesOnly, 'tensors', {}, undefined))?.name).toBe('cpu');
    const cpu = await initBackend({ backend: 'cpu' });
    expect(await backendThatHolds(released, 'source', { backend: 'cpu' }, cpu)).toBe(cpu);
  });
});
