import * as tf from '@tensorflow/tfjs-core';
import {
  BltError,
  ParameterRegistry,
  ParameterScope,
  causalMask,
  checkPositiveInts,
  disposeMask,
  groupCrossMask,
  initBackend,
  localSelfAttentionMask,
  maskTensors,
  patchRowGroups,
  seededUniform,
} from '@bytelatent/nn';
import { beforeAll, describe, expect, it } from 'vitest';
import { LocalEncoder, type LocalEncoderConfig, maxPoolPatches } from './local-encoder.js';

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
});

const CONFIG: LocalEncoderConfig = {
  dim: 16,
  nLayers: 2,
  nHeads: 2,
  ropeTheta: 500000,
  maxSeqLen: 64,
  vocabSize: 260,
  crossAttnK: 2,
  crossAttnNHeads: 2,
  crossAttnAllLayers: false,
  hash: { groupSizes: [3, 4], numFunctions: 2, vocabSize: 50 },
  initStdFactor: 'current_depth',
};

function build(config: LocalEncoderConfig = CONFIG): { encoder: LocalEncoder; registry: ParameterRegistry } {
  const registry = new ParameterRegistry();
  const root = new ParameterScope(registry);
  const encoder = new LocalEncoder(
    { encoder: root.child('local_encoder'), hashEmbeddings: root.child('encoder_hash_tok_embedding') },
    config,
    seededUniform(1),
  );
  return { encoder, registry };
}

function errorOf(f: () => unknown): BltError {
  try {
    f();
  } catch (e) {
    return e as BltError;
  }
  throw new Error('expected an error');
}

describe('LocalEncoder weights', () => {
  it('creates the reference state_dict names, hash tables at the model root', () => {
    const { registry } = build();
    const names = registry.list().map((p) => p.name);
    expect(names).toContain('local_encoder.tok_embeddings.weight');
    expect(names).toContain('local_encoder.layers.1.feed_forward.w2.weight');
    expect(names).toContain('local_encoder.patch_embedding_projection.weight');
    expect(names).toContain('local_encoder.cross_attn_layers.0.cross_attn_norm_kv.weight');
    expect(names).not.toContain('local_encoder.cross_attn_layers.1.wq.weight');
    // 2 functions × 2 sizes: tables 0..3, outside local_encoder.
    expect(names.filter((n) => n.startsWith('encoder_hash_tok_embedding.'))).toEqual(
      [0, 1, 2, 3].map((t) => `encoder_hash_tok_embedding.${t}.weight`),
    );
    expect(registry.get('local_encoder.patch_embedding_projection.weight').referenceShape).toEqual([32, 16]);
    expect(registry.get('encoder_hash_tok_embedding.3.weight').referenceShape).toEqual([50, 16]);
    registry.dispose();
  });

  it('has one cross-attention per layer with cross_attn_all_layers_encoder', () => {
    const { registry } = build({ ...CONFIG, crossAttnAllLayers: true });
    expect(registry.list().some((p) => p.name === 'local_encoder.cross_attn_layers.1.wo.weight')).toBe(true);
    registry.dispose();
  });

  it('rejects invalid sizes with CONFIG_MISMATCH', () => {
    expect(errorOf(() => build({ ...CONFIG, nLayers: 0 })).code).toBe('CONFIG_MISMATCH');
    expect(errorOf(() => build({ ...CONFIG, crossAttnNHeads: 3 })).code).toBe('CONFIG_MISMATCH');
    expect(errorOf(() => build({ ...CONFIG, hash: { groupSizes: [], numFunctions: 1, vocabSize: 10 } })).code).toBe('CONFIG_MISMATCH');
  });
});

describe('maxPoolPatches', () => {
  it('takes the elementwise max per patch, gives 0 to an empty patch and ignores padding', async () => {
    // One row, 5 positions, d = 2; patches: 0 ← {0}, 1 ← {1, 2}, 2 ← {} , 3 ← {3}; position 4 is padding.
    const h = tf.tensor3d([
      [
        [-1, -2],
        [3, -4],
        [-5, 6],
        [-7, -8],
        [100, 100],
      ],
    ]);
    const pooled = maxPoolPatches(h, [Int32Array.from([0, 1, 1, 3, -1])], 4);
    expect(pooled.shape).toEqual([1, 4, 2]);
    expect(Array.from(await pooled.data())).toEqual([-1, -2, 3, 6, 0, 0, -7, -8]);
    tf.dispose([h, pooled]);
  });
});

describe('masks', () => {
  it('groupCrossMask matches groups, honours a window and hides negative groups', async () => {
    const exact = groupCrossMask([patchRowGroups(2, 2)], [Int32Array.from([0, 1, 1, -1])]);
    // bias 0 = visible
    const bias = Array.from(await exact.bias.data()).map((v) => (v === 0 ? 1 : 0));
    expect(bias).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0]);
    disposeMask(exact);
    const windowed = groupCrossMask([Int32Array.from([0, 1, 2])], [Int32Array.from([0, 1, 2, -1])], 2);
    const wb = Array.from(await windowed.bias.data()).map((v) => (v === 0 ? 1 : 0));
    // key group g is visible to query group q iff g <= q < g + 2
    expect(wb).toEqual([1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0]);
    disposeMask(windowed);
  });

  it('localSelfAttentionMask is causal, windowed and split after EOS; long rows go block-wise', async () => {
    const mask = localSelfAttentionMask([[5, 2, 6, 7]], 4, { window: 2, eosId: 2 });
    if ('kind' in mask) throw new Error('expected tensors');
    const visible = Array.from(await mask.bias.data()).map((v) => (v === 0 ? 1 : 0));
    expect(visible).toEqual([1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1]);
    disposeMask(mask);
    const spec = localSelfAttentionMask([new Int32Array(10)], 10, { window: 3, blockSize: 4 });
    expect('kind' in spec && spec.kind).toBe('local');
  });
});

describe('LocalEncoder forward', () => {
  const tokens = Int32Array.from([1, 76, 105, 2, 1, 120, 121]);
  const lengths = [1, 3, 0, 2, 2]; // sums to N + 1 = 8; patch 2 is empty
  const patchIds = Int32Array.from([0, 1, 1, 1, 3, 3, 4]);

  it('returns byte states [B, N, d] and k rows per patch, empty patches at 0 after cross-attention', async () => {
    const { encoder, registry } = build();
    const selfMask = localSelfAttentionMask([tokens], tokens.length, { window: 4 });
    const embeds = encoder.embed(tokens, 1, tokens.length);
    const { h, patchEmbeds } = encoder.forward(embeds, selfMask, { patchIds: [patchIds], numPatches: lengths.length });
    expect(h.shape).toEqual([1, 7, 16]);
    expect(patchEmbeds.shape).toEqual([1, 10, 16]);
    const pe = await patchEmbeds.data();
    expect(Array.from(pe.subarray(4 * 16, 6 * 16)).every((v) => v === 0)).toBe(true);
    expect(Array.from(pe.subarray(0, 16)).some((v) => v !== 0)).toBe(true);
    tf.dispose([embeds, h, patchEmbeds]);
    disposeMask(selfMask);
    registry.dispose();
  });

  it('adds the cross-attention residual twice (architecture §5.2): with wo = 0, patch rows are 2·projection', async () => {
    const { encoder, registry } = build();
    const wo = encoder.crossAttnLayers[0]!.wo.weight;
    wo.assign(tf.zerosLike(wo));
    const selfMask = localSelfAttentionMask([tokens], tokens.length, { window: 4 });
    const taps = new Map<string, tf.Tensor>();
    const embeds = encoder.embed(tokens, 1, tokens.length, (p, v) => taps.set(p, tf.keep(tf.clone(v))));
    const { h, patchEmbeds } = encoder.forward(embeds, selfMask, { patchIds: [patchIds], numPatches: lengths.length }, (p, v) =>
      taps.set(p, tf.keep(tf.clone(v))),
    );
    const projected = taps.get('local_encoder.patch_embedding_projection')!;
    const expected = await tf.mul(projected, 2).data();
    const actual = await patchEmbeds.data();
    expect(Array.from(actual)).toEqual(Array.from(expected));
    // the byte embedding is tok_embeddings plus every hash table
    const sum = tf.addN([
      taps.get('local_encoder.tok_embeddings')!,
      ...[0, 1, 2, 3].map((t) => taps.get(`encoder_hash_tok_embedding.${t}`)!),
    ]);
    const diff = await tf.max(tf.abs(tf.sub(sum, embeds))).data();
    expect(diff[0]).toBeLessThan(1e-6);
    expect(taps.has('local_encoder.layers.1.attention.wq')).toBe(true);
    expect(taps.has('local_encoder.cross_attn_layers.0.cross_attn_norm_q')).toBe(true);
    tf.dispose([embeds, h, patchEmbeds, sum, ...taps.values()]);
    disposeMask(selfMask);
    registry.dispose();
  });

  it('gives the same byte states with or without a tap', async () => {
    const { encoder, registry } = build();
    const selfMask = maskTensors(causalMask(1, tokens.length), 1, tokens.length, tokens.length);
    const embeds = encoder.embed(tokens, 1, tokens.length);
    const a = encoder.forward(embeds, selfMask, { patchIds: [patchIds], numPatches: 5 });
    const b = encoder.forward(embeds, selfMask, { patchIds: [patchIds], numPatches: 5 }, () => undefined);
    expect(Array.from(await a.h.data())).toEqual(Array.from(await b.h.data()));
    expect(Array.from(await a.patchEmbeds.data())).toEqual(Array.from(await b.patchEmbeds.data()));
    tf.dispose([embeds, a.h, a.patchEmbeds, b.h, b.patchEmbeds]);
    disposeMask(selfMask);
    registry.dispose();
  });

  it('rejects bad token ids and inconsistent patch ids', () => {
    const { encoder, registry } = build();
    expect(errorOf(() => encoder.embed(Int32Array.from([1, 300]), 1, 2)).code).toBe('INVALID_ARGUMENT');
    const selfMask = localSelfAttentionMask([tokens], tokens.length);
    const embeds = encoder.embed(tokens, 1, tokens.length);
    expect(errorOf(() => encoder.forward(embeds, selfMask, { patchIds: [patchIds], numPatches: 3 })).code).toBe('INVALID_ARGUMENT');
    expect(errorOf(() => encoder.forward(embeds, selfMask, { patchIds: [patchIds.subarray(1)], numPatches: 5 })).code).toBe(
      'SHAPE_MISMATCH',
    );
    tf.dispose(embeds);
    disposeMask(selfMask);
    registry.dispose();
  });
});

describe('checkPositiveInts', () => {
  it('names the component, field and value; checks optional fields only when set', async () => {
    expect(() => checkPositiveInts('local decoder', { dim: 0 }, ['dim'])).toThrow('local decoder: dim must be an integer >= 1, got 0');
    expect(() => checkPositiveInts('x', { dim: 2.5 }, ['dim'])).toThrow(/dim must be an integer >= 1, got 2.5/);
    expect(() => checkPositiveInts('x', { dim: 4, window: undefined as number | undefined }, ['dim'], ['window'])).not.toThrow();
    expect(() => checkPositiveInts('x', { dim: 4, window: 0 }, ['dim'], ['window'])).toThrow(/window must be/);
  });
});

describe('LocalEncoder incremental use', () => {
  it('embedRange, forwardCached and encodePatches give the rows of embed and forward', async () => {
    for (const config of [CONFIG, { ...CONFIG, crossAttnAllLayers: true, crossAttnWindow: 2 }]) {
      const { encoder, registry } = build(config);
      const row = [1, 40, 41, 42, 2, 43, 44, 45, 46, 47];
      const patchIds = Int32Array.of(0, 1, 1, 1, 2, 2, 3, 3, 3, 4);
      const embeds = encoder.embed(Int32Array.from(row), 1, row.length);
      const mask = localSelfAttentionMask([row], row.length, { window: 3 });
      const full = encoder.forward(embeds, mask, { patchIds: [patchIds], numPatches: 5 });
      disposeMask(mask);
      const cache = encoder.createCache({ window: 3 });
      const hs: tf.Tensor[] = [];
      const states: tf.Tensor[][] = [];
      for (const [a, b] of [
        [0, 4],
        [4, 5],
        [5, 10],
      ] as const) {
        const e = encoder.embedRange(row, a, b);
        expect(Array.from(await e.data())).toEqual(Array.from(await tf.slice(embeds, [0, a, 0], [1, b - a, -1]).data()));
        const out = encoder.forwardCached(e, row.slice(a, b), cache);
        hs.push(out.h);
        states.push(out.states);
      }
      const close = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).every((v, i) => Math.abs(v - b[i]!) < 1e-5);
      expect(close(await tf.concat(hs, 1).data(), await full.h.data())).toBe(true);
      // Patches 2..3 from the bytes of patches 1..3 (the window of 2 reaches patch 1).
      const layerStates = states[0]!.map((_, l) =>
        tf.slice(
          tf.concat(
            states.map((s) => s[l]!),
            1,
          ),
          [0, 1, 0],
          [1, 8, -1],
        ),
      );
      const two = encoder.encodePatches(layerStates, [patchIds.subarray(1, 9)], 2, 2);
      expect(close(await two.data(), await tf.slice(full.patchEmbeds, [0, 4, 0], [1, 4, -1]).data())).toBe(true);
      cache.dispose();
      registry.dispose();
    }
  });
});
