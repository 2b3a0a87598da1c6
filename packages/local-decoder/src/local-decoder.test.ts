import * as tf from '@tensorflow/tfjs-core';
import { BltError, disposeMask, localSelfAttentionMask } from '@bytelatent/nn';
import { ParameterRegistry, ParameterScope, initBackend, seededUniform } from '@bytelatent/nn';
import { beforeAll, describe, expect, it } from 'vitest';
import { LocalDecoder, type LocalDecoderConfig } from './local-decoder.js';

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
});

const CONFIG: LocalDecoderConfig = {
  dim: 16,
  nLayers: 2,
  nHeads: 2,
  ropeTheta: 500000,
  maxSeqLen: 64,
  vocabSize: 260,
  dimPatchEmb: 24,
  crossAttnK: 2,
  crossAttnNHeads: 2,
  crossAttnAllLayers: true,
  initStdFactor: 'current_depth',
};

function build(config: LocalDecoderConfig = CONFIG): { model: LocalDecoder; registry: ParameterRegistry } {
  const registry = new ParameterRegistry();
  const model = new LocalDecoder(new ParameterScope(registry).child('local_decoder'), config, seededUniform(5));
  return { model, registry };
}

function errorOf(f: () => unknown): BltError {
  try {
    f();
  } catch (e) {
    return e as BltError;
  }
  throw new Error('expected an error');
}

const tokens = [1, 40, 41, 42, 43, 44];
const decoderIds = Int32Array.from([0, 0, 1, 1, 1, 2]);

describe('LocalDecoder', () => {
  it('names its weights as the reference', () => {
    const { registry } = build();
    const names = registry.list().map((p) => p.name);
    for (const n of [
      'local_decoder.layers.1.attention.wo.weight',
      'local_decoder.cross_attn_layers.1.cross_attn_norm_q.weight',
      'local_decoder.patch_embedding_projection.weight',
      'local_decoder.norm.weight',
      'local_decoder.output.weight',
    ]) {
      expect(names).toContain(n);
    }
    expect(registry.get('local_decoder.patch_embedding_projection.weight').referenceShape).toEqual([32, 24]);
    expect(registry.get('local_decoder.output.weight').referenceShape).toEqual([260, 16]);
    registry.dispose();
    const one = build({ ...CONFIG, crossAttnAllLayers: false });
    expect(one.registry.list().some((p) => p.name.startsWith('local_decoder.cross_attn_layers.1.'))).toBe(false);
    one.registry.dispose();
  });

  it('adds the cross-attention residual twice (architecture §7.2): with wo = 0 the first block reads 2·h', async () => {
    const { model, registry } = build();
    for (const layer of model.crossAttnLayers) layer.wo.weight.assign(tf.zerosLike(layer.wo.weight));
    const h = tf.randomNormal([1, 6, 16], 0, 1, 'float32', 1) as tf.Tensor3D;
    const patches = tf.randomNormal([1, 3, 24], 0, 1, 'float32', 2) as tf.Tensor3D;
    const mask = localSelfAttentionMask([tokens], 6, { window: 4 });
    const taps = new Map<string, tf.Tensor>();
    const logits = model.forward(h, patches, mask, [decoderIds], (p, v) => taps.set(p, tf.keep(tf.clone(v))));
    expect(logits.shape).toEqual([1, 6, 260]);
    const rope = model.rope.tables(0, 6);
    const expected = model.layers[0]!.apply(tf.mul(h, 2), mask, rope);
    const diff = await tf.max(tf.abs(tf.sub(expected, taps.get('local_decoder.layers.0')!))).data();
    expect(diff[0]).toBeLessThan(1e-5);
    expect(taps.get('local_decoder.patch_embedding_projection')!.shape).toEqual([1, 3, 32]);
    tf.dispose([h, patches, logits, expected, rope.cos, rope.sin, ...taps.values()]);
    disposeMask(mask);
    registry.dispose();
  });

  it('lets each byte read only the rows of its decoder patch', async () => {
    const { model, registry } = build();
    const h = tf.randomNormal([1, 6, 16], 0, 1, 'float32', 1) as tf.Tensor3D;
    const patches = tf.randomNormal([1, 3, 24], 0, 1, 'float32', 2) as tf.Tensor3D;
    const mask = localSelfAttentionMask([tokens], 6);
    const a = await model.forward(h, patches, mask, [decoderIds]).data();
    // Changing patch 2 (read only by byte 5) leaves bytes 0..4 unchanged.
    const other = tf.concat([tf.slice(patches, [0, 0, 0], [1, 2, 24]), tf.ones([1, 1, 24])], 1) as tf.Tensor3D;
    const b = await model.forward(h, other, mask, [decoderIds]).data();
    const v = 260;
    expect(Array.from(a.subarray(0, 5 * v))).toEqual(Array.from(b.subarray(0, 5 * v)));
    expect(Array.from(a.subarray(5 * v)).some((x, i) => x !== b[5 * v + i])).toBe(true);
    disposeMask(mask);
    registry.dispose();
  });

  it('rejects unsupported configurations and bad inputs', () => {
    expect(errorOf(() => build({ ...CONFIG, dimPatchEmb: 16 })).code).toBe('CONFIG_MISMATCH');
    expect(errorOf(() => build({ ...CONFIG, vocabSize: 0 })).code).toBe('CONFIG_MISMATCH');
    const { model, registry } = build();
    const mask = localSelfAttentionMask([tokens], 6);
    const h = tf.zeros([1, 6, 16]) as tf.Tensor3D;
    expect(errorOf(() => model.forward(h, tf.zeros([1, 3, 16]) as tf.Tensor3D, mask, [decoderIds])).code).toBe('SHAPE_MISMATCH');
    expect(errorOf(() => model.forward(h, tf.zeros([1, 2, 24]) as tf.Tensor3D, mask, [decoderIds])).code).toBe('INVALID_ARGUMENT');
    disposeMask(mask);
    registry.dispose();
  });
});

describe('LocalDecoder.forwardCached', () => {
  it('gives, byte by byte, the logits of forward, reading pre-projected patch keys/values', async () => {
    const { model, registry } = build({ ...CONFIG, crossAttnWindow: 2 });
    const row = [1, 40, 41, 2, 43, 44, 45, 46];
    const decIds = Int32Array.of(0, 0, 1, 1, 2, 2, 3, 3);
    const h = tf.randomUniform([1, row.length, 16], -1, 1, 'float32', 3) as tf.Tensor3D;
    const patches = tf.randomUniform([1, 4, 24], -1, 1, 'float32', 4) as tf.Tensor3D;
    const mask = localSelfAttentionMask([row], row.length, { window: 3 });
    const expected = await model.forward(h, patches, mask, [decIds]).data();
    disposeMask(mask);
    const kv = model.patchKv(patches);
    const cache = model.createCache({ window: 3 });
    const got: number[] = [];
    // Two bytes at once (a cross mask over all patches), then one by one (exactly the visible patches, no mask).
    const crossMask = model.crossMask([decIds.subarray(0, 2)], 0, 4);
    got.push(
      ...(await model.forwardCached(tf.slice(h, [0, 0, 0], [1, 2, -1]) as tf.Tensor3D, kv, crossMask, row.slice(0, 2), cache).data()),
    );
    disposeMask(crossMask);
    for (let t = 2; t < row.length; t++) {
      const { first, count } = model.visiblePatches(decIds[t]!);
      const rowsKv = tf.tidy(() =>
        kv.map((l) => ({
          k: tf.slice(l.k, [0, 0, first * 2, 0], [-1, -1, count * 2, -1]),
          v: tf.slice(l.v, [0, 0, first * 2, 0], [-1, -1, count * 2, -1]),
        })),
      );
      got.push(...(await model.forwardCached(tf.slice(h, [0, t, 0], [1, 1, -1]) as tf.Tensor3D, rowsKv, null, [row[t]!], cache).data()));
      tf.dispose(rowsKv.flatMap((l) => [l.k, l.v]));
    }
    let max = 0;
    got.forEach((v, i) => (max = Math.max(max, Math.abs(v - expected[i]!))));
    expect(max).toBeLessThan(1e-5);
    expect(model.visiblePatches(0)).toEqual({ first: 0, count: 1 });
    cache.dispose();
    registry.dispose();
  });
});
