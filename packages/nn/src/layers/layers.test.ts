import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '../register-gradients.js'; // gradients: see that file
import { beforeAll, describe, expect, it } from 'vitest';
import { parseSafetensors, serializeSafetensors } from '../safetensors.js';
import { CrossAttention, scaledDotProductAttention } from './attention.js';
import { loadReferenceWeights, referenceStateDict } from './checkpoint.js';
import { NnError } from '../errors.js';
import { ffnHiddenDim } from './feed-forward.js';
import { seededUniform, truncatedNormal } from './init.js';
import { Linear } from './linear.js';
import { causalMask, causalMaskBlock, documentIds, groupMask, maskTensors } from './masks.js';
import { ParameterRegistry, ParameterScope } from './parameters.js';
import { RMSNorm } from './rms-norm.js';
import { RotaryEmbedding, applyRotary } from './rotary.js';
import { TransformerBlock } from './transformer-block.js';

const here = dirname(fileURLToPath(import.meta.url));
const GOLDEN = process.env['BYTELATENT_GOLDEN_DIR'] ?? resolve(here, '../../../../../shared/golden/tiny');
const hasGolden = existsSync(join(GOLDEN, 'index.json'));

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) => {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  expect(max).toBeLessThanOrEqual(tol);
};

function randomTensor(shape: number[], seed: number): tf.Tensor {
  const r = seededUniform(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(
    Float32Array.from({ length: n }, () => r() * 2 - 1),
    shape,
  );
}

describe('ffnHiddenDim', () => {
  it('follows the reference rule (architecture §5.1)', () => {
    expect([32, 768, 1024, 1280, 2048, 4096].map((d) => ffnHiddenDim(d, 256, 1.0))).toEqual([256, 2048, 2816, 3584, 5632, 11008]);
    expect(ffnHiddenDim(64, 32)).toBe(192); // int(512/3) = 170 → 6·32
  });
});

describe('RMSNorm', () => {
  it('computes x · rsqrt(mean(x²) + eps) · w', async () => {
    const reg = new ParameterRegistry();
    const norm = new RMSNorm(new ParameterScope(reg, 'n'), 3);
    norm.weight.assign(tf.tensor1d([1, 2, 0.5]));
    const out = await norm.apply(tf.tensor2d([[1, 2, 3]])).data();
    const s = 1 / Math.sqrt((1 + 4 + 9) / 3 + 1e-5);
    close(out, [1 * s, 2 * s * 2, 3 * s * 0.5], 1e-6);
    reg.dispose();
  });
});

describe('RotaryEmbedding', () => {
  it('rotates adjacent pairs by pos · theta^(-2i/d)', async () => {
    const rope = new RotaryEmbedding(4, 10000, 8);
    const { cos, sin } = rope.tables(3, 1);
    const x = tf.tensor4d([1, 2, 3, 4], [1, 1, 1, 4]);
    const out = await applyRotary(x, cos, sin).data();
    const a0 = 3;
    const a1 = 3 * 10000 ** -0.5;
    close(
      out,
      [
        Math.cos(a0) - 2 * Math.sin(a0),
        Math.sin(a0) + 2 * Math.cos(a0),
        3 * Math.cos(a1) - 4 * Math.sin(a1),
        3 * Math.sin(a1) + 4 * Math.cos(a1),
      ],
      1e-5,
    );
  });

  it.skipIf(!hasGolden)('equals the reference tables rope.entropy and rope.local', () => {
    const file = parseSafetensors(readFileSync(join(GOLDEN, 'cases', 'ascii.safetensors')));
    const config = JSON.parse(readFileSync(join(GOLDEN, 'config.json'), 'utf8'));
    for (const [name, theta] of [
      ['rope.entropy', config.entropy_model_args.rope_theta],
      ['rope.local', config.blt_args.rope_theta],
    ] as const) {
      const info = file.info(name); // [L, half, 2, 2] = [[cos, -sin], [sin, cos]]
      const [len, half] = info.shape as [number, number];
      const golden = file.toFloat32(name);
      const rope = new RotaryEmbedding(half * 2, theta, len);
      const ours = new Float32Array(golden.length);
      for (let p = 0; p < len; p++) {
        for (let i = 0; i < half; i++) {
          const c = rope.cos[p * half + i]!;
          const s = rope.sin[p * half + i]!;
          ours.set([c, -s, s, c], (p * half + i) * 4);
        }
      }
      close(ours, golden, 1e-5);
    }
  });

  it('refuses positions past its table', () => {
    expect(() => new RotaryEmbedding(4, 10000, 8).tables(5, 4)).toThrow(/exceed the RoPE table of 8/);
  });

  it('refuses tables that do not match x (half-width tables included) with SHAPE_MISMATCH', () => {
    const x = tf.zeros([1, 3, 2, 4]);
    const half = tf.zeros([3, 2]);
    const wrongLength = tf.zeros([2, 4]);
    for (const [cos, sin] of [
      [half, half],
      [wrongLength, wrongLength],
    ]) {
      expect(() => applyRotary(x, cos!, sin!)).toThrow(expect.objectContaining({ code: 'SHAPE_MISMATCH' }));
    }
    tf.dispose([x, half, wrongLength]);
  });

  it('computes rows on demand: a huge claimed context costs nothing until used, and values do not depend on growth', async () => {
    const t0 = performance.now();
    const huge = new RotaryEmbedding(64, 10000, 2 ** 31 - 1); // 2^31 positions: 1 TiB if built up front
    const lazy = new RotaryEmbedding(8, 500000, 300);
    expect(performance.now() - t0).toBeLessThan(1000);
    const a = huge.tables(5, 3);
    const grown = [lazy.tables(0, 2), lazy.tables(70, 10), lazy.tables(290, 10)];
    const eager = new RotaryEmbedding(8, 500000, 300);
    const full = eager.cos; // the whole table at once
    expect(full).toHaveLength(300 * 4);
    // tables() repeats each pair's value for both members: [cos0, cos0, cos1, cos1, ...].
    const widened = (t: Float32Array) => Array.from(t).flatMap((v) => [v, v]);
    expect(grown[1]!.cos.shape).toEqual([10, 8]);
    expect(Array.from(await grown[1]!.cos.data())).toEqual(widened(full.subarray(70 * 4, 80 * 4)));
    expect(Array.from(await grown[2]!.sin.data())).toEqual(widened(eager.sin.subarray(290 * 4, 300 * 4)));
    expect(Array.from(lazy.cos)).toEqual(Array.from(full));
    tf.dispose([a.cos, a.sin, ...grown.flatMap((g) => [g.cos, g.sin])]);
  });
});

describe('ParameterRegistry limit', () => {
  it('refuses a weight past maxParameters before computing or allocating it', () => {
    const reg = new ParameterRegistry({ maxParameters: 10 });
    const scope = new ParameterScope(reg);
    new RMSNorm(scope.child('a'), 4);
    let computed = false;
    let error: NnError | undefined;
    try {
      scope.variable('w', [2 ** 40, 2 ** 10], () => {
        computed = true;
        return new Float32Array(0);
      });
    } catch (e) {
      error = e as NnError;
    }
    expect(computed).toBe(false);
    expect(error).toBeInstanceOf(NnError);
    expect(error!.code).toBe('TOO_LARGE');
    expect(error!.message).toContain('parameter "w" of shape [1099511627776, 1024]');
    expect(error!.message).toContain('more than the limit of 10');
    // What fits still fits, up to the limit exactly.
    new RMSNorm(scope.child('b'), 6);
    expect(reg.count()).toBe(10);
    expect(() => new Linear(scope.child('c'), 1, 1, { std: 1, random: seededUniform(1) })).toThrow(/limit of 10/);
    expect(reg.list().map((p) => p.name)).toEqual(['a.weight', 'b.weight']);
    reg.dispose();
    expect(reg.count()).toBe(0);
    expect(() => new ParameterRegistry({ maxParameters: -1 })).toThrow(/maxParameters must be a non-negative integer/);
    expect(() => new ParameterRegistry({ maxParameters: 1.5 })).toThrow(NnError);
  });

  it('initialises exactly as before the limit existed (same random stream)', async () => {
    const a = new Linear(new ParameterScope(new ParameterRegistry()), 3, 5, { std: 0.02, random: seededUniform(7) });
    const expected = truncatedNormal(15, 0.02, seededUniform(7)); // [out=5, in=3], kept transposed
    const got = await tf.transpose(a.weight).data();
    expect(Array.from(got)).toEqual(Array.from(expected));
    a.weight.dispose();
  });
});

describe('masks', () => {
  it('builds windowed, document-split causal masks', () => {
    // tokens: BOS a EOS BOS b ; window 2
    const docs = documentIds([1, 70, 2, 1, 71]);
    expect(Array.from(docs)).toEqual([0, 0, 0, 1, 1]);
    const m = causalMask(1, 5, { window: 2, documents: [docs] });
    expect(Array.from(m)).toEqual([
      1,
      0,
      0,
      0,
      0,
      1,
      1,
      0,
      0,
      0,
      0,
      1,
      1,
      0,
      0, // window 2: position 2 sees 1..2
      0,
      0,
      0,
      1,
      0, // new document after EOS
      0,
      0,
      0,
      1,
      1,
    ]);
  });

  it('builds group masks (cross-attention), with an optional window', () => {
    const m = groupMask([Int32Array.from([0, 1, 2])], [Int32Array.from([0, 1, 1, 2])]);
    expect(Array.from(m)).toEqual([1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1]);
    const w = groupMask([Int32Array.from([1])], [Int32Array.from([0, 1, 2])], 2);
    expect(Array.from(w)).toEqual([1, 1, 0]);
  });

  it.skipIf(!hasGolden)('equals the reference masks entropy_self and local_self in every golden case', () => {
    const config = JSON.parse(readFileSync(join(GOLDEN, 'config.json'), 'utf8'));
    const index = JSON.parse(readFileSync(join(GOLDEN, 'index.json'), 'utf8'));
    for (const { name } of index.cases) {
      const file = parseSafetensors(readFileSync(join(GOLDEN, 'cases', `${name}.safetensors`)));
      const tokens = file.toInt32('tokens');
      const n = tokens.length;
      const docs = [documentIds(tokens)];
      expect(causalMask(1, n, { window: config.entropy_model_args.sliding_window, documents: docs })).toEqual(
        file.toInt32('mask.entropy_self').reduce((m, v, i) => ((m[i] = v), m), new Uint8Array(n * n)),
      );
      expect(causalMask(1, n, { window: config.blt_args.local_attention_window_len, documents: docs })).toEqual(
        file.toInt32('mask.local_self').reduce((m, v, i) => ((m[i] = v), m), new Uint8Array(n * n)),
      );
    }
  });
});

describe('scaledDotProductAttention', () => {
  it('equals a hand-written softmax attention and gives 0 for fully masked rows', async () => {
    const q = randomTensor([1, 1, 3, 2], 1);
    const k = randomTensor([1, 1, 4, 2], 2);
    const v = randomTensor([1, 1, 4, 2], 3);
    const allowed = Uint8Array.from([1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1]);
    const mask = maskTensors(allowed, 1, 3, 4);
    const out = await scaledDotProductAttention(q, k, v, mask).data();
    const [qa, ka, va] = [await q.data(), await k.data(), await v.data()];
    const expected: number[] = [];
    for (let i = 0; i < 3; i++) {
      const keys = [0, 1, 2, 3].filter((j) => allowed[i * 4 + j]);
      const s = keys.map((j) => (qa[i * 2]! * ka[j * 2]! + qa[i * 2 + 1]! * ka[j * 2 + 1]!) / Math.SQRT2);
      const m = Math.max(...s);
      const e = s.map((x) => Math.exp(x - m));
      const z = e.reduce((a, b) => a + b, 0);
      expected.push(...[0, 1].map((d) => keys.reduce((acc, j, n) => acc + (e[n]! / z) * va[j * 2 + d]!, 0)));
    }
    expect(expected.slice(2, 4)).toEqual([0, 0]);
    close(out, expected, 1e-6);
    expect(Array.from(out).every(Number.isFinite)).toBe(true);
  });
});

describe('CrossAttention', () => {
  it('returns x unchanged for queries with no key (empty patch)', async () => {
    const reg = new ParameterRegistry();
    const ca = new CrossAttention(new ParameterScope(reg, 'ca'), { dim: 4, nHeads: 2 }, { std: 0.5, random: seededUniform(1) });
    const x = randomTensor([1, 2, 4], 4);
    const kv = randomTensor([1, 3, 4], 5);
    const mask = maskTensors(Uint8Array.from([1, 1, 0, 0, 0, 0]), 1, 2, 3);
    const out = await ca.apply(x, kv, mask).data();
    const xs = await x.data();
    close(out.slice(4), xs.slice(4), 0);
    expect(Array.from(out.slice(0, 4))).not.toEqual(Array.from(xs.slice(0, 4)));
    reg.dispose();
  });
});

describe('TransformerBlock', () => {
  it('uses reference weight names and shapes', () => {
    const reg = new ParameterRegistry();
    new TransformerBlock(
      new ParameterScope(reg, 'layers.0'),
      { dim: 32, nHeads: 2 },
      { random: seededUniform(0), layerIndex: 0, nLayers: 1, factor: 'disabled' },
    );
    expect(reg.list().map((p) => `${p.name} [${p.referenceShape.join(',')}]`)).toEqual([
      'layers.0.attention_norm.weight [32]',
      'layers.0.attention.wq.weight [32,32]',
      'layers.0.attention.wk.weight [32,32]',
      'layers.0.attention.wv.weight [32,32]',
      'layers.0.attention.wo.weight [32,32]',
      'layers.0.ffn_norm.weight [32]',
      'layers.0.feed_forward.w1.weight [256,32]',
      'layers.0.feed_forward.w3.weight [256,32]',
      'layers.0.feed_forward.w2.weight [32,256]',
    ]);
    reg.dispose();
  });

  it('leaks no tensor over repeated calls and has gradients that match finite differences', () => {
    const reg = new ParameterRegistry();
    const block = new TransformerBlock(
      new ParameterScope(reg),
      { dim: 8, nHeads: 2, multipleOf: 8 },
      { random: seededUniform(3), layerIndex: 0, nLayers: 1, factor: 'current_depth' },
    );
    const rope = new RotaryEmbedding(4, 10000, 16);
    const x = randomTensor([2, 5, 8], 9);
    const mask = maskTensors(causalMask(2, 5, { window: 3 }), 2, 5, 5);
    const tables = rope.tables(0, 5);
    const loss = () => tf.sum(tf.square(block.apply(x, mask, tables))) as tf.Scalar;
    tf.dispose(tf.tidy(loss)); // tidy keeps its result: dispose it
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) tf.dispose(tf.tidy(loss));
    expect(tf.memory().numTensors).toBe(before);

    const w = block.attention.wq.weight;
    const { grads } = tf.variableGrads(loss, [w]);
    const g = grads[w.name]!.dataSync();
    const eps = 1e-2;
    for (const idx of [0, 7, 19]) {
      const orig = w.dataSync().slice();
      const plus = orig.slice();
      plus[idx]! += eps;
      w.assign(tf.tensor(plus, w.shape));
      const lp = tf.tidy(() => loss().dataSync()[0]!);
      const minus = orig.slice();
      minus[idx]! -= eps;
      w.assign(tf.tensor(minus, w.shape));
      const lm = tf.tidy(() => loss().dataSync()[0]!);
      w.assign(tf.tensor(orig, w.shape));
      expect(Math.abs((lp - lm) / (2 * eps) - g[idx]!)).toBeLessThan(2e-2 * Math.max(1, Math.abs(g[idx]!)));
    }
    tf.dispose([x, mask.bias, tables.cos, tables.sin, ...Object.values(grads)]);
    reg.dispose();
  });
});

describe('reference checkpoints', () => {
  function tiny(): { reg: ParameterRegistry; lin: Linear; norm: RMSNorm } {
    const reg = new ParameterRegistry();
    const scope = new ParameterScope(reg);
    return {
      reg,
      lin: new Linear(scope.child('proj'), 3, 2, { std: 0.1, random: seededUniform(1) }),
      norm: new RMSNorm(scope.child('norm'), 3),
    };
  }

  it('loads [out, in] Linear weights by name and computes x Wᵀ; saves them back in reference layout', async () => {
    const { reg, lin } = tiny();
    const w = Float32Array.from([1, 2, 3, 4, 5, 6]); // [out=2, in=3]
    const file = parseSafetensors(
      serializeSafetensors({
        'proj.weight': { dtype: 'F32', shape: [2, 3], data: w },
        'norm.weight': { dtype: 'F32', shape: [3], data: Float32Array.of(1, 1, 1) },
      }),
    );
    loadReferenceWeights(reg, file);
    close(await lin.apply(tf.tensor2d([[1, 0, -1]])).data(), [1 - 3, 4 - 6], 0);
    const saved = await referenceStateDict(reg);
    expect(Array.from(saved.get('proj.weight')!.data as Float32Array)).toEqual(Array.from(w));
    reg.dispose();
  });

  it('reports every problem at once and changes nothing', async () => {
    const { reg, lin } = tiny();
    const before = await lin.weight.data();
    const file = parseSafetensors(
      serializeSafetensors({
        'proj.weight': { dtype: 'F32', shape: [3, 2], data: new Float32Array(6) },
        'norm.weight': { dtype: 'F32', shape: [3], data: Float32Array.of(1, Number.NaN, 1) },
        'extra.weight': { dtype: 'F32', shape: [1], data: new Float32Array(1) },
      }),
    );
    let error: NnError | undefined;
    try {
      loadReferenceWeights(reg, file);
    } catch (e) {
      error = e as NnError;
    }
    expect(error?.code).toBe('INVALID_CHECKPOINT');
    expect(error?.message).toContain('"proj.weight" has shape [3, 2], expected [2, 3]');
    expect(error?.message).toContain('"norm.weight" holds a non-finite value (NaN)');
    expect(error?.message).toContain('unexpected "extra.weight"');
    expect(await lin.weight.data()).toEqual(before);
    const empty = parseSafetensors(serializeSafetensors({ x: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }));
    expect(() => loadReferenceWeights(reg, empty, { strict: false })).toThrow(/missing "proj.weight" \(expected shape \[2, 3\]\)/);
    reg.dispose();
  });

  it('lets two models with the same names coexist', () => {
    const a = tiny();
    const b = tiny();
    expect(a.lin.weight.name).not.toBe(b.lin.weight.name);
    a.reg.dispose();
    b.reg.dispose();
  });
});

describe('truncatedNormal', () => {
  it('cuts at ±3 std and is seeded', () => {
    const x = truncatedNormal(20000, 0.5, seededUniform(7));
    expect(Math.max(...x.map(Math.abs))).toBeLessThanOrEqual(1.5);
    const std = Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
    expect(std).toBeGreaterThan(0.47);
    expect(std).toBeLessThan(0.5);
    expect(truncatedNormal(5, 1, seededUniform(7))).toEqual(truncatedNormal(5, 1, seededUniform(7)));
  });
});

describe('blocked local attention', () => {
  it('equals the dense mask for any block size, window and document split, gradients included', async () => {
    const [b, h, s, d] = [2, 2, 23, 4];
    const q = randomTensor([b, h, s, d], 11);
    const k = randomTensor([b, h, s, d], 12);
    const v = randomTensor([b, h, s, d], 13);
    const documents = [
      documentIds([1, 5, 6, 2, 1, 7, 8, 9, 2, 1, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2, 1, 5]),
      documentIds(new Array(s).fill(5)),
    ];
    for (const window of [1, 3, 8, 100]) {
      const dense = maskTensors(causalMask(b, s, { window, documents }), b, s, s);
      const expected = await scaledDotProductAttention(q, k, v, dense).data();
      for (const blockSize of [1, 4, 7, 23, 64]) {
        const spec = { kind: 'local' as const, batch: b, seqLen: s, window, documents, blockSize };
        close(await scaledDotProductAttention(q, k, v, spec).data(), expected, 1e-6);
      }
      const loss = (mask: Parameters<typeof scaledDotProductAttention>[3]) => (x: tf.Tensor) =>
        tf.sum(tf.square(scaledDotProductAttention(x, k, v, mask)));
      const gDense = await tf.grad(loss(dense))(q).data();
      const gBlocked = await tf
        .grad(loss({ kind: 'local', batch: b, seqLen: s, window, documents, blockSize: 5 }))(q)
        .data();
      close(gBlocked, gDense, 1e-5);
      tf.dispose([dense.bias, dense.rowValid ?? []]);
    }
  });

  it('builds any block of the causal mask consistently with the full mask', () => {
    const docs = [documentIds([1, 5, 2, 1, 6, 7, 2, 1])];
    const full = causalMask(1, 8, { window: 3, documents: docs });
    const block = causalMaskBlock(1, { start: 5, length: 3 }, { start: 2, length: 6 }, { window: 3, documents: docs });
    for (let i = 0; i < 3; i++) for (let j = 0; j < 6; j++) expect(block[i * 6 + j]).toBe(full[(5 + i) * 8 + 2 + j]);
  });
});
