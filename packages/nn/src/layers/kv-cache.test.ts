import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { CrossAttention } from './attention.js';
import { NnError } from '../errors.js';
import { seededUniform } from './init.js';
import { KvCache, type LayerKv } from './kv-cache.js';
import { causalMask, documentIds, groupMask, maskTensors } from './masks.js';
import { ParameterRegistry, ParameterScope } from './parameters.js';
import { RotaryEmbedding } from './rotary.js';
import { TransformerBlock } from './transformer-block.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

function randomTensor(shape: number[], seed: number): tf.Tensor {
  const r = seededUniform(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(
    Float32Array.from({ length: n }, () => r() * 2 - 1),
    shape,
  );
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Two blocks with grouped-query attention (4 query heads, 2 key/value heads) and RoPE. */
function stack(reg: ParameterRegistry): TransformerBlock[] {
  const random = seededUniform(1);
  return [0, 1].map(
    (i) =>
      new TransformerBlock(
        new ParameterScope(reg, `layers.${i}`),
        { dim: 16, nHeads: 4, nKvHeads: 2, multipleOf: 16 },
        { random, layerIndex: i, nLayers: 2, factor: 'current_depth' },
      ),
  );
}

/** The stack over the whole row at once, with the windowed, document-split causal mask. */
function fullForward(
  blocks: TransformerBlock[],
  x: tf.Tensor,
  tokens: number[],
  window: number | undefined,
  rope: RotaryEmbedding,
): tf.Tensor {
  const n = tokens.length;
  const mask = maskTensors(causalMask(1, n, { window, documents: [documentIds(tokens)] }), 1, n, n);
  const tables = rope.tables(0, n);
  const out = tf.tidy(() => blocks.reduce((h, b) => b.apply(h, mask, tables), x));
  tf.dispose([mask.bias, mask.rowValid ?? [], tables.cos, tables.sin]);
  return out;
}

/** The same row in steps of the given sizes through a cache. */
function cachedForward(
  blocks: TransformerBlock[],
  x: tf.Tensor,
  tokens: number[],
  window: number | undefined,
  rope: RotaryEmbedding,
  pieces: number[],
): { out: tf.Tensor; maxHeld: number } {
  const cache = new KvCache({ nLayers: blocks.length, window, eosId: 2 });
  const outs: tf.Tensor[] = [];
  let maxHeld = 0;
  let at = 0;
  for (let i = 0; at < tokens.length; i++) {
    const s = Math.min(pieces[i % pieces.length]!, tokens.length - at);
    const ids = tokens.slice(at, at + s);
    outs.push(
      tf.tidy(() => {
        const step = cache.plan(ids, rope);
        if (s === 1) expect(step.mask).toBeNull(); // a single position sees exactly the held keys
        let h = tf.slice(x, [0, at, 0], [1, s, -1]);
        const kvs = blocks.map((b, l) => {
          const r = b.applyCached(h, step, cache.layer(l));
          h = r.out;
          return r.kv;
        });
        cache.commit(ids, kvs);
        return h;
      }),
    );
    at += s;
    maxHeld = Math.max(maxHeld, cache.held);
    expect(cache.position).toBe(at);
  }
  cache.dispose();
  const out = tf.concat(outs, 1);
  tf.dispose(outs);
  return { out, maxHeld };
}

describe('KvCache', () => {
  // EOS (2) at positions 6, 7 and 13: documents split after each.
  const tokens = [1, 9, 8, 7, 9, 8, 2, 2, 5, 6, 7, 8, 9, 2, 4, 5, 6, 7, 8, 9, 10, 11];

  it('gives, step by step, what the stack gives over the whole row: any step sizes, windows and documents', async () => {
    const reg = new ParameterRegistry();
    const blocks = stack(reg);
    const rope = new RotaryEmbedding(4, 10000, 64);
    const x = randomTensor([1, tokens.length, 16], 2);
    const before = tf.memory().numTensors;
    for (const window of [undefined, 1, 3, 5]) {
      const full = fullForward(blocks, x, tokens, window, rope);
      const expected = await full.data();
      for (const pieces of [[1], [3], [5, 1, 2], [tokens.length]]) {
        const { out, maxHeld } = cachedForward(blocks, x, tokens, window, rope, pieces);
        expect(maxDiff(await out.data(), expected)).toBeLessThan(1e-5);
        // Never more than the window (minus the new position) is held.
        if (window !== undefined) expect(maxHeld).toBeLessThanOrEqual(window - 1);
        out.dispose();
      }
      full.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    reg.dispose();
  });

  it('holds nothing right after an EOS, and restarts on reset', () => {
    const reg = new ParameterRegistry();
    const blocks = stack(reg);
    const rope = new RotaryEmbedding(4, 10000, 16);
    const cache = new KvCache({ nLayers: 2, eosId: 2 });
    const run = (ids: number[]) =>
      tf.tidy(() => {
        const step = cache.plan(ids, rope);
        let h = randomTensor([1, ids.length, 16], ids.length);
        const kvs = blocks.map((b, l) => {
          const r = b.applyCached(h, step, cache.layer(l));
          h = r.out;
          return r.kv;
        });
        cache.commit(ids, kvs);
      });
    const before = tf.memory().numTensors;
    run([1, 5, 6]);
    expect([cache.position, cache.held]).toEqual([3, 3]);
    run([2]);
    expect([cache.position, cache.held, cache.layer(0)]).toEqual([4, 0, null]);
    run([7, 8]);
    expect([cache.position, cache.held]).toEqual([6, 2]);
    expect(tf.memory().numTensors).toBe(before + 4); // k and v of two layers
    cache.reset();
    expect([cache.position, cache.held]).toEqual([0, 0]);
    expect(tf.memory().numTensors).toBe(before);
    reg.dispose();
  });

  it('refuses bad options, empty steps, positions past the RoPE table and mismatched commits (unchanged)', () => {
    expect(() => new KvCache({ nLayers: 0 })).toThrow(NnError);
    expect(() => new KvCache({ nLayers: 1, window: 0 })).toThrow(NnError);
    const cache = new KvCache({ nLayers: 1 });
    expect(() => tf.tidy(() => void cache.plan([], null))).toThrow(NnError);
    expect(() => tf.tidy(() => void cache.plan([1, 2, 3], new RotaryEmbedding(4, 10000, 2)))).toThrow(NnError);
    const kv: LayerKv = { k: tf.zeros([1, 2, 2, 4]), v: tf.zeros([1, 2, 2, 4]) };
    expect(() => cache.commit([1], [kv])).toThrow(/holds 2 positions, expected 1/);
    expect(() => cache.commit([1, 1], [kv, kv])).toThrow(/expected 1 layers/);
    expect([cache.position, cache.layer(0)]).toEqual([0, null]);
    expect(() => cache.layer(1)).toThrow(NnError);
    tf.dispose([kv.k, kv.v]);
  });
});

describe('CrossAttention.projectKv / attend', () => {
  it('equal apply, with and without a mask', async () => {
    const reg = new ParameterRegistry();
    const cross = new CrossAttention(new ParameterScope(reg, 'c'), { dim: 8, nHeads: 2 }, { std: 0.3, random: seededUniform(4) });
    const x = randomTensor([1, 3, 8], 5);
    const kv = randomTensor([1, 4, 8], 6);
    const mask = maskTensors(groupMask([Int32Array.of(0, 1, 1)], [Int32Array.of(0, 0, 1, 1)]), 1, 3, 4);
    const all = maskTensors(new Uint8Array(12).fill(1), 1, 3, 4);
    const projected = cross.projectKv(kv);
    expect(maxDiff(await cross.attend(x, projected, mask).data(), await cross.apply(x, kv, mask).data())).toBe(0);
    expect(maxDiff(await cross.attend(x, projected, null).data(), await cross.apply(x, kv, all).data())).toBeLessThan(1e-6);
    reg.dispose();
  });
});
