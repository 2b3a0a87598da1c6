import * as tf from '@tensorflow/tfjs-core';
import { BltError } from '@bytelatent/nn';
import { ParameterRegistry, ParameterScope, initBackend, seededUniform } from '@bytelatent/nn';
import { beforeAll, describe, expect, it } from 'vitest';
import { GlobalTransformer, type GlobalTransformerConfig, patchTokens } from './latent-transformer.js';

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
});

const CONFIG: GlobalTransformerConfig = {
  dim: 32,
  nLayers: 2,
  nHeads: 4,
  ropeTheta: 500000,
  maxSeqLen: 16,
  dimTokenEmb: 32,
  splitDocuments: true,
  initStdFactor: 'current_depth',
};

function build(config: GlobalTransformerConfig = CONFIG): { model: GlobalTransformer; registry: ParameterRegistry } {
  const registry = new ParameterRegistry();
  const model = new GlobalTransformer(new ParameterScope(registry).child('global_transformer'), config, seededUniform(3));
  return { model, registry };
}

async function rows(t: tf.Tensor): Promise<number[][]> {
  const [, p, d] = t.shape as [number, number, number];
  const data = await t.data();
  return Array.from({ length: p }, (_, i) => Array.from(data.subarray(i * d, (i + 1) * d)));
}

function closeRows(a: number[], b: number[], tol = 1e-5): boolean {
  return a.length === b.length && a.every((v, i) => Math.abs(v - b[i]!) <= tol);
}

describe('patchTokens', () => {
  it('marks every patch holding an EOS, BOE elsewhere', () => {
    // patches: [1] [10 2 1] [11] [2] — the EOS at 3 is in patch 1, the one at 5 in patch 3
    expect(Array.from(patchTokens([1, 10, 2, 1, 11, 2], [0, 1, 1, 1, 2, 3], 5))).toEqual([0, 2, 0, 2, 0]);
    expect(Array.from(patchTokens([1, 2], [0, -1], 2))).toEqual([0, 0]);
  });
});

describe('GlobalTransformer', () => {
  it('names its weights as the reference and adds token_embedding_projection only when widths differ', () => {
    const a = build();
    expect(a.model.tokenEmbeddingProjection).toBeNull();
    expect(a.registry.list().map((p) => p.name)).toContain('global_transformer.layers.1.attention.wq.weight');
    a.registry.dispose();
    const b = build({ ...CONFIG, dimTokenEmb: 40 });
    expect(b.registry.get('global_transformer.token_embedding_projection.weight').referenceShape).toEqual([32, 40]);
    const out = b.model.forward(tf.ones([1, 3, 40]) as tf.Tensor3D, [[0, 0, 0]]);
    expect(out.shape).toEqual([1, 3, 32]);
    out.dispose();
    b.registry.dispose();
  });

  it('is causal over patches and splits documents after a patch holding an EOS', async () => {
    const { model, registry } = build();
    const x = tf.randomNormal([1, 5, 32], 0, 1, 'float32', 7) as tf.Tensor3D;
    const tokens = [[0, 2, 0, 0, 0]];
    const full = await rows(model.forward(x, tokens));
    // Changing the last patch does not change the earlier ones.
    const changed = tf.concat([tf.slice(x, [0, 0, 0], [1, 4, 32]), tf.zeros([1, 1, 32])], 1) as tf.Tensor3D;
    const partial = await rows(model.forward(changed, tokens));
    for (let p = 0; p < 4; p++) expect(closeRows(full[p]!, partial[p]!)).toBe(true);
    // Patch 2 starts a new document: patches 2..4 give what they give alone (RoPE is relative).
    const second = await rows(model.forward(tf.slice(x, [0, 2, 0], [1, 3, 32]) as tf.Tensor3D, [[0, 0, 0]]));
    for (let p = 0; p < 3; p++) expect(closeRows(full[p + 2]!, second[p]!)).toBe(true);
    // With plain causal attention patch 2 sees patches 0 and 1.
    registry.dispose();
    const plain = build({ ...CONFIG, splitDocuments: false });
    const causal = await rows(plain.model.forward(x, tokens));
    const alone = await rows(plain.model.forward(tf.slice(x, [0, 2, 0], [1, 3, 32]) as tf.Tensor3D, [[0, 0, 0]]));
    expect(closeRows(causal[2]!, alone[0]!)).toBe(false);
    plain.registry.dispose();
  });

  it('reports every layer and its sub-modules through the tap', () => {
    const { model, registry } = build();
    const seen: string[] = [];
    tf.tidy(() => {
      model.forward(tf.ones([1, 2, 32]) as tf.Tensor3D, [[0, 0]], (p) => seen.push(p));
    });
    expect(seen).toContain('global_transformer.layers.0.attention.wk');
    expect(seen).toContain('global_transformer.layers.1.feed_forward.w3');
    expect(seen).toContain('global_transformer.layers.1');
    registry.dispose();
  });

  it('rejects bad sizes and inputs with typed errors', () => {
    expect(() => build({ ...CONFIG, nHeads: 0 })).toThrow(BltError);
    const { model, registry } = build();
    const x = tf.ones([1, 20, 32]) as tf.Tensor3D;
    try {
      model.forward(x, [new Array(20).fill(0)]);
      throw new Error('expected an error');
    } catch (e) {
      expect((e as BltError).code).toBe('INVALID_ARGUMENT');
    }
    x.dispose();
    registry.dispose();
  });
});

describe('GlobalTransformer.forwardCached', () => {
  it('gives, patch by patch, the outputs of forward (documents split after EOS patches, with a projection)', async () => {
    const { model, registry } = build({ ...CONFIG, dimTokenEmb: 24 });
    const embeds = tf.randomUniform([1, 7, 24], -1, 1, 'float32', 2) as tf.Tensor3D;
    const patchToks = [0, 0, 2, 0, 2, 0, 0];
    const full = await rows(model.forward(embeds, [patchToks]));
    const before = tf.memory().numTensors;
    const cache = model.createCache();
    const got: number[][] = [];
    for (const [a, b] of [
      [0, 2],
      [2, 3],
      [3, 7],
    ] as const) {
      const piece = tf.slice(embeds, [0, a, 0], [1, b - a, -1]) as tf.Tensor3D;
      const out = model.forwardCached(piece, patchToks.slice(a, b), cache);
      got.push(...(await rows(out)));
      tf.dispose([piece, out]);
    }
    got.forEach((r, i) => expect(closeRows(r, full[i]!)).toBe(true));
    const tooMany = tf.zeros([1, 10, 24]) as tf.Tensor3D;
    expect(() => model.forwardCached(tooMany, new Array(10).fill(0), cache)).toThrow(BltError); // past max_seqlen 16
    tooMany.dispose();
    expect(tf.memory().numTensors).toBe(before + 2 * 2); // k and v of each layer, held by the cache
    cache.dispose();
    expect(tf.memory().numTensors).toBe(before);
    registry.dispose();
  });
});
