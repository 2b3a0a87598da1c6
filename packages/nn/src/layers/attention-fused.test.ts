import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../register-gradients.js';
import { CPU_ONLY_FUSED_KERNELS, FUSED_KERNELS } from '../kernel-names.js';
import { initBackend } from '../backends/select-backend.js';
import { Attention, CrossAttention, scaledDotProductAttention } from './attention.js';
import { type LocalAttentionSpec, type MaskTensors, causalMask, documentIds, groupMask, maskTensors } from './masks.js';
import { ParameterRegistry, ParameterScope } from './parameters.js';
import { RotaryEmbedding } from './rotary.js';
import { seededUniform } from './init.js';
import { maxAbsDiff, randomTensor } from '../test-fixtures.js';

// The cpu backend registers two fused kernels of attention (masked softmax, head swap) that the
// wasm backend does not; attention falls back to the composite ops wherever they are missing. Here
// the fused path is compared with the composite one: on cpu with the two kernels unregistered (the
// composite code of attention.ts itself), by hand with tf ops, and on the wasm backend.

const CPU_FUSED = [FUSED_KERNELS.maskedSoftmax, FUSED_KERNELS.swapMiddleAxes];

beforeAll(async () => {
  const info = await initBackend({ backend: 'cpu', nativeMatMul: 'off' });
  expect(info.name).toBe('cpu');
});

function expectClose(got: tf.Tensor | Float32Array, want: tf.Tensor | Float32Array, tol: number, what = ''): void {
  if (got instanceof tf.Tensor && want instanceof tf.Tensor) expect(got.shape, what).toEqual(want.shape);
  const g = got instanceof tf.Tensor ? got.dataSync() : got;
  const w = want instanceof tf.Tensor ? want.dataSync() : want;
  expect(g.every(Number.isFinite), `${what}: finite`).toBe(true);
  expect(maxAbsDiff(g, w), what).toBeLessThanOrEqual(tol);
}

/** Runs `fn` with the cpu-only fused attention kernels unregistered (the composite path), then registers them again. */
function composite<T>(fn: () => T): T {
  const saved = CPU_FUSED.map((name) => tf.getKernel(name, 'cpu')!);
  expect(saved.every((k) => k !== undefined)).toBe(true);
  for (const name of CPU_FUSED) tf.unregisterKernel(name, 'cpu');
  try {
    return fn();
  } finally {
    for (const config of saved) tf.registerKernel(config);
  }
}

/** Counts the calls of the fused kernels while `fn` runs. */
function countFused<T>(fn: () => T): { result: T; calls: Record<string, number> } {
  const calls: Record<string, number> = Object.fromEntries(CPU_FUSED.map((n) => [n, 0]));
  const saved = CPU_FUSED.map((name) => tf.getKernel(name, 'cpu')!);
  for (const config of saved) {
    tf.unregisterKernel(config.kernelName, 'cpu');
    tf.registerKernel({ ...config, kernelFunc: (args) => (calls[config.kernelName]!++, config.kernelFunc(args)) });
  }
  try {
    return { result: fn(), calls };
  } finally {
    for (const config of saved) {
      tf.unregisterKernel(config.kernelName, 'cpu');
      tf.registerKernel(config);
    }
  }
}

/** softmax(x·scale + bias) · rowValid by hand. */
function softmaxByHand(x: tf.Tensor, scale: number, bias?: tf.Tensor, rowValid?: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    let z = tf.mul(x, scale);
    if (bias) z = tf.add(z, bias);
    const p = tf.softmax(z);
    return rowValid ? tf.mul(p, rowValid) : p;
  });
}

/** Attention by hand with tf ops: softmax(q·kᵀ/√D + bias)·rowValid · v. */
function attentionByHand(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: MaskTensors | null): tf.Tensor {
  return tf.tidy(() =>
    tf.matMul(softmaxByHand(tf.matMul(q, k, false, true), 1 / Math.sqrt(q.shape[q.rank - 1]!), mask?.bias, mask?.rowValid ?? undefined), v),
  );
}

/** The kernel takes both mask inputs (a zero bias `[1, ..., K]` and a rowValid of ones stand for none). */
function runMaskedSoftmax(x: tf.Tensor, scale: number, bias?: tf.Tensor, rowValid?: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const ones = new Array<number>(x.rank).fill(1);
    const inputs: tf.NamedTensorMap = {
      x,
      bias: bias ?? tf.zeros([...ones.slice(1), x.shape[x.rank - 1]!]),
      rowValid: rowValid ?? tf.ones(ones),
    };
    return tf.engine().runKernel(FUSED_KERNELS.maskedSoftmax, inputs, { scale }) as tf.Tensor;
  });
}

/** A random 0/1 mask `[B, Q, K]` where rows `emptyRows` (flat b·Q + q) see nothing. */
function randomMask(b: number, q: number, k: number, seed: number, emptyRows: readonly number[] = []): Uint8Array {
  const r = seededUniform(seed);
  const mask = Uint8Array.from({ length: b * q * k }, () => (r() < 0.6 ? 1 : 0));
  for (let row = 0; row < b * q; row++) mask[row * k + Math.floor(r() * k)] = 1;
  for (const row of emptyRows) mask.fill(0, row * k, (row + 1) * k);
  return mask;
}

function disposeMask(mask: MaskTensors): void {
  tf.dispose([mask.bias, ...(mask.rowValid ? [mask.rowValid] : [])]);
}

describe('registration', () => {
  it('the cpu backend has both kernels (and the shared ones); both are listed as cpu-only', () => {
    expect(FUSED_KERNELS.maskedSoftmax).toBe('BytelatentMaskedSoftmax');
    expect(FUSED_KERNELS.swapMiddleAxes).toBe('BytelatentSwapMiddleAxes');
    expect(CPU_ONLY_FUSED_KERNELS).toEqual(expect.arrayContaining(CPU_FUSED));
    for (const name of [FUSED_KERNELS.rmsNorm, FUSED_KERNELS.rmsNormGrad, FUSED_KERNELS.rotary, FUSED_KERNELS.rotaryGrad, ...CPU_FUSED]) {
      expect(tf.getKernel(name, 'cpu'), name).toBeDefined();
    }
  });

  it('scaledDotProductAttention on cpu runs the fused softmax; Attention runs the head swap', () => {
    const q = randomTensor([2, 2, 5, 4], 1);
    const mask = maskTensors(causalMask(2, 5), 2, 5, 5);
    const { calls } = countFused(() => tf.dispose(scaledDotProductAttention(q, q, q, mask)));
    expect(calls[FUSED_KERNELS.maskedSoftmax]).toBe(1);
    const reg = new ParameterRegistry();
    const attn = new Attention(new ParameterScope(reg), { dim: 8, nHeads: 2 }, { std: 0.3, random: seededUniform(2) });
    const x = randomTensor([2, 5, 8], 3);
    const swaps = countFused(() => tf.dispose(attn.apply(x, mask, null)));
    // q, k, v split and one merge.
    expect(swaps.calls[FUSED_KERNELS.swapMiddleAxes]).toBe(4);
    expect(swaps.calls[FUSED_KERNELS.maskedSoftmax]).toBe(1);
    tf.dispose([q, x]);
    disposeMask(mask);
    reg.dispose();
  });
});

describe('BytelatentMaskedSoftmax kernel', () => {
  const [B, H, Q, K] = [2, 3, 5, 7];
  const cases: Array<{ name: string; x: number[]; bias?: number[]; rowValid?: number[] }> = [
    { name: 'no bias', x: [B, H, Q, K] },
    { name: 'bias [1, 1, Q, K]', x: [B, H, Q, K], bias: [1, 1, Q, K] },
    { name: 'bias [B, 1, Q, K]', x: [B, H, Q, K], bias: [B, 1, Q, K] },
    { name: 'bias [B, H, Q, K]', x: [B, H, Q, K], bias: [B, H, Q, K] },
    { name: 'bias [1, H, 1, K]', x: [B, H, Q, K], bias: [1, H, 1, K] },
    { name: 'bias [B, 1, Q, K], rowValid [B, 1, Q, 1]', x: [B, H, Q, K], bias: [B, 1, Q, K], rowValid: [B, 1, Q, 1] },
    { name: 'rowValid [B, H, Q, 1]', x: [B, H, Q, K], bias: [1, 1, Q, K], rowValid: [B, H, Q, 1] },
    {
      name: '5-D blocked, bias [B, 1, 3, Q, K], rowValid [B, 1, 3, Q, 1]',
      x: [B, H, 3, Q, K],
      bias: [B, 1, 3, Q, K],
      rowValid: [B, 1, 3, Q, 1],
    },
    { name: '5-D blocked, bias [1, 1, 3, Q, K]', x: [B, H, 3, Q, K], bias: [1, 1, 3, Q, K] },
    { name: '2-D', x: [Q, K], bias: [Q, K], rowValid: [Q, 1] },
    { name: 'K = 1', x: [B, H, Q, 1], bias: [B, 1, Q, 1], rowValid: [B, 1, Q, 1] },
  ];
  for (const c of cases) {
    it(`equals softmax(x·scale + bias)·rowValid by hand, values and gradient: ${c.name}`, () => {
      const scale = 0.37;
      const x = randomTensor(c.x, 11, 3);
      // A bias of 0 / −1e9, as masks give, with some rows entirely masked when rowValid is given.
      const bias = c.bias
        ? tf.tidy(() => {
            const keep = tf.greater(randomTensor(c.bias!, 12), -0.5);
            return tf.where(keep, tf.zerosLike(keep).toFloat(), tf.fill(c.bias!, -1e9));
          })
        : undefined;
      const rowValid = c.rowValid ? tf.tidy(() => tf.cast(tf.greater(randomTensor(c.rowValid!, 13), -0.4), 'float32')) : undefined;
      if (rowValid) expect(rowValid.dataSync().some((v) => v === 0)).toBe(true);
      const fused = runMaskedSoftmax(x, scale, bias, rowValid);
      const byHand = softmaxByHand(x, scale, bias, rowValid);
      expectClose(fused, byHand, 1e-6, 'values');
      // The gradient registered for the kernel (w.r.t. x) equals the composite's.
      const w = randomTensor(c.x, 14);
      const gFused = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(runMaskedSoftmax(t, scale, bias, rowValid), w)))(x);
      const gHand = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(softmaxByHand(t, scale, bias, rowValid), w)))(x);
      expectClose(gFused, gHand, 1e-6, 'gradient');
      tf.dispose([x, fused, byHand, w, gFused, gHand, ...(bias ? [bias] : []), ...(rowValid ? [rowValid] : [])]);
    });
  }

  it('rows with rowValid 0 are exact zeros (also where the whole row is masked), and so is their gradient', () => {
    const x = randomTensor([1, 2, 3, 4], 21);
    const bias = tf.tensor4d([0, 0, -1e9, 0, -1e9, -1e9, -1e9, -1e9, 0, -1e9, 0, 0], [1, 1, 3, 4]);
    const rowValid = tf.tensor4d([1, 0, 1], [1, 1, 3, 1]);
    const y = runMaskedSoftmax(x, 1, bias, rowValid).dataSync() as Float32Array;
    for (const h of [0, 1]) {
      expect(Array.from(y.subarray(h * 12 + 4, h * 12 + 8))).toEqual([0, 0, 0, 0]);
      expect(y[h * 12 + 2]).toBe(0);
      expect(y[h * 12 + 9]).toBe(0);
      // Each valid row sums to 1.
      expect(Math.abs(y.subarray(h * 12, h * 12 + 4).reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-6);
    }
    const g = tf
      .grad((t: tf.Tensor) => tf.sum(tf.square(runMaskedSoftmax(t, 1, bias, rowValid))))(x)
      .dataSync();
    for (const h of [0, 1]) expect(Array.from(g.subarray(h * 12 + 4, h * 12 + 8))).toEqual([0, 0, 0, 0]);
    tf.dispose([x, bias, rowValid]);
  });

  it('a gradient through the mask inputs (bias, rowValid on the tape) has their shapes, as RoPE tables get zerosLike', () => {
    // attention.ts says the mask's gradients are zeros "as RoPE's tables'": RoPE returns
    // tf.zerosLike(cos); the masked softmax returns tf.zeros([1]), which tfjs rejects ("The gradient
    // of input 'bias' has shape '1', which does not match the shape of the input") as soon as the
    // bias or rowValid is on the gradient path. The composite (wasm, webgpu) differentiates it fine.
    const x = randomTensor([2, 2, 3, 4], 22);
    const bias = randomTensor([2, 1, 3, 4], 23);
    const rowValid = tf.ones([2, 1, 3, 1]);
    let gBias: tf.Tensor | undefined;
    let gValid: tf.Tensor | undefined;
    expect(() => {
      gBias = tf.grad((b: tf.Tensor) => tf.sum(tf.square(runMaskedSoftmax(x, 0.5, b, rowValid))))(bias);
    }).not.toThrow();
    expect(gBias?.shape).toEqual([2, 1, 3, 4]);
    expect(() => {
      gValid = tf.grad((r: tf.Tensor) => tf.sum(tf.square(runMaskedSoftmax(x, 0.5, bias, r))))(rowValid);
    }).not.toThrow();
    expect(gValid?.shape).toEqual([2, 1, 3, 1]);
    // Through scaledDotProductAttention as well.
    const q = randomTensor([2, 2, 3, 4], 24);
    const scoresBias = randomTensor([2, 1, 3, 3], 25);
    expect(() =>
      tf.dispose(tf.grad((b: tf.Tensor) => tf.sum(scaledDotProductAttention(q, q, q, { bias: b, rowValid: null })))(scoresBias)),
    ).not.toThrow();
    tf.dispose([x, bias, rowValid, q, scoresBias, ...(gBias ? [gBias] : []), ...(gValid ? [gValid] : [])]);
  });

  it('large scores do not overflow (the row maximum is subtracted)', () => {
    const x = tf.tensor2d([1000, 999, 998, -1000, 0, 1000], [2, 3]);
    expectClose(runMaskedSoftmax(x, 1), softmaxByHand(x, 1), 1e-6);
    tf.dispose(x);
  });
});

describe('BytelatentSwapMiddleAxes kernel', () => {
  for (const shape of [
    [2, 3, 4, 5],
    [1, 1, 1, 1],
    [3, 1, 4, 2],
    [2, 5, 1, 3],
    [2, 0, 3, 4],
  ]) {
    it(`equals tf.transpose(x, [0, 2, 1, 3]) for [${shape}], gradient included`, () => {
      const x = randomTensor(shape, 31);
      const run = (t: tf.Tensor) => tf.engine().runKernel(FUSED_KERNELS.swapMiddleAxes, { x: t }) as tf.Tensor;
      const y = run(x);
      const want = tf.transpose(x, [0, 2, 1, 3]);
      expect(y.shape).toEqual(want.shape);
      expect(Array.from(y.dataSync())).toEqual(Array.from(want.dataSync()));
      const w = randomTensor(want.shape, 32);
      const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(run(t), w)))(x);
      const gWant = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.transpose(t, [0, 2, 1, 3]), w)))(x);
      expect(g.shape).toEqual(shape);
      expect(Array.from(g.dataSync())).toEqual(Array.from(gWant.dataSync()));
      tf.dispose([x, y, want, w, g, gWant]);
    });
  }
});

describe('scaledDotProductAttention: fused (cpu) against the composite', () => {
  const [B, H, Q, K, D] = [2, 3, 6, 9, 8];

  /** Values and the gradients of a weighted-square loss w.r.t. q, k and v. */
  function valuesAndGrads(
    q: tf.Tensor,
    k: tf.Tensor,
    v: tf.Tensor,
    mask: MaskTensors | LocalAttentionSpec | null,
  ): { out: Float32Array; grads: Float32Array[] } {
    return tf.tidy(() => {
      const out = scaledDotProductAttention(q, k, v, mask);
      const w = randomTensor(out.shape, 41);
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
        tf.sum(tf.mul(tf.square(scaledDotProductAttention(a, b, c, mask)), w)),
      )([q, k, v]);
      return { out: out.dataSync() as Float32Array, grads: grads.map((g) => g.dataSync() as Float32Array) };
    });
  }

  function compare(
    q: tf.Tensor,
    k: tf.Tensor,
    v: tf.Tensor,
    mask: MaskTensors | LocalAttentionSpec | null,
    tol = { values: 1e-6, grads: 1e-5 },
  ): void {
    const fused = valuesAndGrads(q, k, v, mask);
    const comp = composite(() => valuesAndGrads(q, k, v, mask));
    expectClose(fused.out, comp.out, tol.values, 'values');
    ['q', 'k', 'v'].forEach((name, i) => expectClose(fused.grads[i]!, comp.grads[i]!, tol.grads, `d${name}`));
    if (mask === null || !('kind' in mask)) {
      const hand = attentionByHand(q, k, v, mask);
      expectClose(fused.out, hand.dataSync() as Float32Array, tol.values, 'by hand');
      hand.dispose();
    }
  }

  it('no mask', () => {
    const [q, k, v] = [randomTensor([B, H, Q, D], 1), randomTensor([B, H, K, D], 2), randomTensor([B, H, K, D], 3)];
    compare(q, k, v, null);
    tf.dispose([q, k, v]);
  });

  it('a mask from maskTensors without empty rows (rowValid null)', () => {
    const [q, k, v] = [randomTensor([B, H, Q, D], 4), randomTensor([B, H, K, D], 5), randomTensor([B, H, K, D], 6)];
    const mask = maskTensors(randomMask(B, Q, K, 7), B, Q, K);
    expect(mask.rowValid).toBeNull();
    compare(q, k, v, mask);
    disposeMask(mask);
    tf.dispose([q, k, v]);
  });

  it('a mask with fully masked rows (rowValid): those rows are exact zeros, values and gradients as the composite', () => {
    const [q, k, v] = [randomTensor([B, H, Q, D], 8), randomTensor([B, H, K, D], 9), randomTensor([B, H, K, D], 10)];
    const empty = [0, 4, Q + 2, 2 * Q - 1];
    const mask = maskTensors(randomMask(B, Q, K, 11, empty), B, Q, K);
    expect(mask.rowValid).not.toBeNull();
    compare(q, k, v, mask);
    const out = scaledDotProductAttention(q, k, v, mask).dataSync();
    for (const row of empty) {
      const [b, i] = [Math.floor(row / Q), row % Q];
      for (let h = 0; h < H; h++) {
        const base = ((b * H + h) * Q + i) * D;
        expect(Array.from(out.subarray(base, base + D))).toEqual(new Array(D).fill(0));
      }
    }
    // The gradient w.r.t. the queries of empty rows is zero.
    const gq = tf
      .grad((t: tf.Tensor) => tf.sum(tf.square(scaledDotProductAttention(t, k, v, mask))))(q)
      .dataSync();
    const [b0, i0] = [0, 4];
    expect(Array.from(gq.subarray(((b0 * H + 1) * Q + i0) * D, ((b0 * H + 1) * Q + i0 + 1) * D))).toEqual(new Array(D).fill(0));
    disposeMask(mask);
    tf.dispose([q, k, v]);
  });

  for (const biasShape of [
    [1, 1, Q, K],
    [B, 1, Q, K],
    [B, H, Q, K],
  ]) {
    it(`an additive bias of shape [${biasShape}] with a rowValid [B, 1, Q, 1]`, () => {
      const [q, k, v] = [randomTensor([B, H, Q, D], 12), randomTensor([B, H, K, D], 13), randomTensor([B, H, K, D], 14)];
      const bias = tf.tidy(() =>
        tf.add(
          randomTensor(biasShape, 15, 2),
          tf.where(tf.greater(randomTensor(biasShape, 16), 0.3), tf.fill(biasShape, -1e9), tf.zeros(biasShape)),
        ),
      );
      const rowValid = tf.tensor4d(
        Float32Array.from({ length: B * Q }, (_, i) => (i % 4 === 1 ? 0 : 1)),
        [B, 1, Q, 1],
      );
      const masks: MaskTensors[] = [
        { bias, rowValid: null },
        { bias, rowValid },
      ];
      for (const mask of masks) {
        // Some rows may be entirely masked without rowValid: keep them finite by an unmasked first key.
        const fixed = mask.rowValid
          ? mask
          : {
              bias: tf.tidy(() =>
                tf.concat([tf.slice(bias, [0, 0, 0, 0], [-1, -1, -1, 1]).mul(0), tf.slice(bias, [0, 0, 0, 1], [-1, -1, -1, -1])], 3),
              ),
              rowValid: null,
            };
        compare(q, k, v, fixed);
        if (fixed !== mask) fixed.bias.dispose();
      }
      tf.dispose([q, k, v, bias, rowValid]);
    });
  }

  it('a bias that the fused kernel does not take (rank 3, or [B, 1, Q, 1]) goes to the composite with the same result', () => {
    const [q, k, v] = [randomTensor([B, H, Q, D], 17), randomTensor([B, H, K, D], 18), randomTensor([B, H, K, D], 19)];
    for (const shape of [
      [Q, K],
      [1, Q, K],
      [B, 1, Q, 1],
    ]) {
      const bias = randomTensor(shape, 20);
      const mask: MaskTensors = { bias, rowValid: null };
      const { result, calls } = countFused(() => scaledDotProductAttention(q, k, v, mask));
      expect(calls[FUSED_KERNELS.maskedSoftmax], `${shape}`).toBe(0);
      const hand = attentionByHand(q, k, v, mask);
      expectClose(result, hand, 1e-6, `${shape}`);
      compare(q, k, v, mask);
      tf.dispose([bias, result, hand]);
    }
    tf.dispose([q, k, v]);
  });

  it('zero queries or zero keys give the composite result (no fused call for an empty score)', () => {
    const q0 = randomTensor([B, H, 0, D], 21);
    const k = randomTensor([B, H, K, D], 22);
    const { result, calls } = countFused(() => scaledDotProductAttention(q0, k, k, null));
    expect(result.shape).toEqual([B, H, 0, D]);
    expect(calls[FUSED_KERNELS.maskedSoftmax]).toBe(0);
    tf.dispose([q0, k, result]);
  });

  it('the blocked local attention path (5-D scores) equals its composite and the dense mask, gradients included', () => {
    const [b, h, s, d] = [2, 2, 23, 4];
    const q = randomTensor([b, h, s, d], 23);
    const k = randomTensor([b, h, s, d], 24);
    const v = randomTensor([b, h, s, d], 25);
    const documents = [
      documentIds([1, 5, 6, 2, 1, 7, 8, 9, 2, 1, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2, 1, 5]),
      documentIds(new Array(s).fill(5)),
    ];
    for (const window of [1, 3, 8, 100]) {
      for (const blockSize of [1, 4, 7, 23, 64]) {
        const spec: LocalAttentionSpec = { kind: 'local', batch: b, seqLen: s, window, documents, blockSize };
        const { calls } = countFused(() => tf.dispose(scaledDotProductAttention(q, k, v, spec)));
        expect(calls[FUSED_KERNELS.maskedSoftmax]).toBe(1);
        compare(q, k, v, spec);
        const dense = maskTensors(causalMask(b, s, { window, documents }), b, s, s);
        const blocked = scaledDotProductAttention(q, k, v, spec);
        const full = composite(() => scaledDotProductAttention(q, k, v, dense));
        expectClose(blocked, full, 1e-6, `window ${window} block ${blockSize}`);
        tf.dispose([blocked, full]);
        disposeMask(dense);
      }
    }
    // A spec for one row broadcasting over a batch of one.
    const spec1: LocalAttentionSpec = { kind: 'local', batch: 1, seqLen: s, window: 5, blockSize: 6 };
    const one = [q, k, v].map((t) => tf.slice(t, [0, 0, 0, 0], [1, -1, -1, -1]));
    compare(one[0]!, one[1]!, one[2]!, spec1);
    tf.dispose([q, k, v, ...one]);
  });

  it('leaks no tensor over repeated forward and backward passes (dense with rowValid, blocked)', () => {
    const [q, k, v] = [randomTensor([B, H, Q, D], 26), randomTensor([B, H, K, D], 27), randomTensor([B, H, K, D], 28)];
    const mask = maskTensors(randomMask(B, Q, K, 29, [1, 7]), B, Q, K);
    const spec: LocalAttentionSpec = { kind: 'local', batch: B, seqLen: K, window: 3, blockSize: 4 };
    const once = () => {
      scaledDotProductAttention(q, k, v, mask).dispose();
      scaledDotProductAttention(k, k, v, spec).dispose();
      tf.dispose(tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(scaledDotProductAttention(a, b, c, mask)))([q, k, v]));
      tf.dispose(tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(scaledDotProductAttention(a, b, c, spec)))([k, k, v]));
      tf.dispose(tf.grad((t: tf.Tensor) => tf.sum(tf.engine().runKernel(FUSED_KERNELS.swapMiddleAxes, { x: t }) as tf.Tensor))(q));
    };
    once();
    const before = { tensors: tf.memory().numTensors, dataIds: tf.engine().backend.numDataIds() };
    for (let i = 0; i < 4; i++) once();
    expect({ tensors: tf.memory().numTensors, dataIds: tf.engine().backend.numDataIds() }).toEqual(before);
    disposeMask(mask);
    tf.dispose([q, k, v]);
  });
});

describe('Attention and CrossAttention layers: fused (cpu) against the composite', () => {
  const dim = 24;

  function attentionLayer(nKvHeads?: number): { attn: Attention; reg: ParameterRegistry } {
    const reg = new ParameterRegistry();
    const attn = new Attention(
      new ParameterScope(reg, 'attention'),
      { dim, nHeads: 4, ...(nKvHeads ? { nKvHeads } : {}) },
      { std: 0.2, random: seededUniform(51) },
    );
    return { attn, reg };
  }

  /** Output, taps, and the gradients w.r.t. the input and every weight. */
  function run(
    fn: (x: tf.Tensor, tap: (p: string, v: tf.Tensor) => void) => tf.Tensor,
    x: tf.Tensor,
    reg: ParameterRegistry,
  ): { out: Float32Array; taps: Map<string, Float32Array>; grads: Float32Array[] } {
    // A scope, not tf.tidy: the result holds a Map, which tidy does not take.
    tf.engine().startScope();
    try {
      const taps = new Map<string, Float32Array>();
      const out = fn(x, (p, v) => taps.set(p, v.dataSync() as Float32Array));
      const w = randomTensor(out.shape, 52);
      const loss = () => tf.sum(tf.mul(tf.square(fn(x, () => undefined)), w)) as tf.Scalar;
      const { grads } = tf.variableGrads(
        loss,
        reg.list().map((p) => p.variable),
      );
      const dx = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.square(fn(t, () => undefined)), w)))(x);
      return {
        out: out.dataSync() as Float32Array,
        taps,
        grads: [dx.dataSync() as Float32Array, ...reg.list().map((p) => grads[p.variable.name]!.dataSync() as Float32Array)],
      };
    } finally {
      tf.engine().endScope();
    }
  }

  function compareLayer(
    fn: (x: tf.Tensor, tap: (p: string, v: tf.Tensor) => void) => tf.Tensor,
    x: tf.Tensor,
    reg: ParameterRegistry,
  ): void {
    const fused = run(fn, x, reg);
    const comp = composite(() => run(fn, x, reg));
    expectClose(fused.out, comp.out, 1e-6, 'output');
    expect([...fused.taps.keys()]).toEqual([...comp.taps.keys()]);
    for (const [p, v] of fused.taps) expectClose(v, comp.taps.get(p)!, 1e-6, `tap ${p}`);
    expect(fused.grads.length).toBe(comp.grads.length);
    fused.grads.forEach((g, i) => expectClose(g, comp.grads[i]!, 1e-5, `gradient ${i}`));
  }

  for (const nKvHeads of [undefined, 2]) {
    it(`Attention (nKvHeads ${nKvHeads ?? 'default'}) with RoPE and a dense document mask`, () => {
      const { attn, reg } = attentionLayer(nKvHeads);
      const [b, s] = [2, 9];
      const x = randomTensor([b, s, dim], 53);
      const rope = new RotaryEmbedding(attn.headDim, 10000, 32).tables(0, s);
      const documents = [documentIds([1, 5, 2, 1, 6, 7, 8, 2, 1]), documentIds(new Array(s).fill(4))];
      const mask = maskTensors(causalMask(b, s, { window: 4, documents }), b, s, s);
      compareLayer((t, tap) => attn.apply(t, mask, rope, tap), x, reg);
      disposeMask(mask);
      tf.dispose([x, rope.cos, rope.sin]);
      reg.dispose();
    });
  }

  it('Attention with a blocked local attention spec (padding block), no RoPE', () => {
    const { attn, reg } = attentionLayer();
    const [b, s] = [2, 11];
    const x = randomTensor([b, s, dim], 54);
    const spec: LocalAttentionSpec = { kind: 'local', batch: b, seqLen: s, window: 3, blockSize: 4 };
    compareLayer((t, tap) => attn.apply(t, spec, null, tap), x, reg);
    tf.dispose(x);
    reg.dispose();
  });

  it('CrossAttention with empty query rows (rowValid): those rows return x unchanged', () => {
    const reg = new ParameterRegistry();
    const ca = new CrossAttention(new ParameterScope(reg, 'cross'), { dim, nHeads: 3 }, { std: 0.2, random: seededUniform(55) });
    const [b, qn, kn] = [2, 4, 7];
    const kv = randomTensor([b, kn, dim], 56);
    const x = randomTensor([b, qn, dim], 57);
    // Query groups 0, 1, 2, −1 (padding); key groups: no key in group 2 in row 1.
    const mask = maskTensors(
      groupMask(
        [Int32Array.of(0, 1, 2, -1), Int32Array.of(0, 1, 2, -1)],
        [Int32Array.of(0, 0, 1, 1, 2, 2, -1), Int32Array.of(0, 1, 1, 1, 0, -1, -1)],
      ),
      b,
      qn,
      kn,
    );
    expect(mask.rowValid).not.toBeNull();
    compareLayer((t, tap) => ca.apply(t, kv, mask, tap), x, reg);
    const out = ca.apply(x, kv, mask).dataSync();
    const xs = x.dataSync();
    for (const [row, q] of [
      [0, 3],
      [1, 2],
      [1, 3],
    ]) {
      const base = (row! * qn + q!) * dim;
      expect(Array.from(out.subarray(base, base + dim))).toEqual(Array.from(xs.subarray(base, base + dim)));
    }
    // The KV-projected path (projectKv + attend, null mask) too.
    compareLayer(
      (t, tap) => {
        const projected = ca.projectKv(kv, tap);
        return ca.attend(t, projected, null, tap);
      },
      x,
      reg,
    );
    disposeMask(mask);
    tf.dispose([kv, x]);
    reg.dispose();
  });

  it('Attention.applyCached equals apply on the same positions', () => {
    // Not the subject here, but runs the fused kernels with a null mask on a cache step.
    const { attn, reg } = attentionLayer();
    const s = 6;
    const x = randomTensor([1, s, dim], 58);
    const mask = maskTensors(causalMask(1, s), 1, s, s);
    const full = attn.apply(x, mask, null);
    const fullComposite = composite(() => attn.apply(x, mask, null));
    expectClose(full, fullComposite, 1e-6);
    tf.dispose([x, full, fullComposite]);
    disposeMask(mask);
    reg.dispose();
  });

  it('layers leak no tensor over repeated forward and backward passes', () => {
    const { attn, reg } = attentionLayer(2);
    const x = randomTensor([2, 7, dim], 59);
    const mask = maskTensors(causalMask(2, 7, { window: 3 }), 2, 7, 7);
    const once = () => {
      attn.apply(x, mask, null).dispose();
      const { value, grads } = tf.variableGrads(() => tf.sum(attn.apply(x, mask, null)) as tf.Scalar);
      tf.dispose([value, ...Object.values(grads)]);
    };
    once();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) once();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(x);
    disposeMask(mask);
    reg.dispose();
  });
});

describe('on the wasm backend (no cpu-only kernels registered): the same values as the fused cpu path', () => {
  afterAll(async () => {
    await initBackend({ backend: 'cpu', nativeMatMul: 'off' });
  });

  it('registers the shared fused kernels on wasm but not the cpu-only ones, and gives the cpu results', async () => {
    const [b, h, q, k, d] = [2, 3, 5, 6, 4];
    const data = (shape: number[], seed: number) => randomTensor(shape, seed).dataSync() as Float32Array;
    const inputs = { q: data([b, h, q, d], 61), k: data([b, h, k, d], 62), v: data([b, h, k, d], 63) };
    const maskBits = randomMask(b, q, k, 64, [2, 6]);
    const compute = () =>
      tf.tidy(() => {
        const [tq, tk, tv] = [tf.tensor(inputs.q, [b, h, q, d]), tf.tensor(inputs.k, [b, h, k, d]), tf.tensor(inputs.v, [b, h, k, d])];
        const mask = maskTensors(maskBits, b, q, k);
        const out = scaledDotProductAttention(tq, tk, tv, mask);
        const grads = tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => tf.sum(tf.square(scaledDotProductAttention(x, y, z, mask))))([
          tq,
          tk,
          tv,
        ]);
        const reg = new ParameterRegistry();
        const attn = new Attention(new ParameterScope(reg), { dim: 12, nHeads: 3 }, { std: 0.3, random: seededUniform(65) });
        const x = tf.tensor(data([b, q, 12], 66), [b, q, 12]);
        const layerOut = attn.apply(x, { kind: 'local', batch: b, seqLen: q, window: 2, blockSize: 2 }, null).dataSync() as Float32Array;
        reg.dispose();
        return { out: out.dataSync() as Float32Array, grads: grads.map((g) => g.dataSync() as Float32Array), layerOut };
      });
    const onCpu = compute();
    const wasm = await initBackend({ backend: 'wasm', nativeMatMul: 'off' });
    expect(wasm.name).toBe('wasm');
    for (const name of CPU_ONLY_FUSED_KERNELS) expect(tf.getKernel(name, 'wasm'), name).toBeUndefined();
    expect(tf.getKernel(FUSED_KERNELS.rmsNorm, 'wasm')).toBeDefined();
    expect(tf.getKernel(FUSED_KERNELS.rotary, 'wasm')).toBeDefined();
    const onWasm = compute();
    expectClose(onCpu.out, onWasm.out, 1e-6, 'values');
    onCpu.grads.forEach((g, i) => expectClose(g, onWasm.grads[i]!, 1e-5, `gradient ${i}`));
    expectClose(onCpu.layerOut, onWasm.layerOut, 1e-6, 'Attention layer');
  });
});
