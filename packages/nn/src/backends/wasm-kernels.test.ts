import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import '../register-gradients.js';
import { WasmKernelError, registerWasmKernelFixes, withOriginalWasmKernels } from './wasm-kernels.js';

// Each case runs on cpu and on wasm with the same input data; tfjs backend state is per worker.
beforeAll(async () => {
  expect(await tf.setBackend('wasm')).toBe(true);
});

/** Deterministic uniform floats in [-1, 1) (mulberry32). */
function randomFloats(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

function randomInts(n: number, lo: number, hi: number, seed: number): Int32Array {
  const f = randomFloats(n, seed);
  return Int32Array.from(f, (v) => lo + Math.floor(((v + 1) / 2) * (hi - lo)));
}

const size = (shape: readonly number[]) => shape.reduce((p, d) => p * d, 1);

interface Result {
  readonly dtype: string;
  readonly shape: number[];
  readonly values: Float32Array | Int32Array | Uint8Array;
}

/** Runs `fn` on `backend`, returns every output's dtype, shape and values, disposing everything. */
async function on(backend: 'cpu' | 'wasm', fn: () => tf.Tensor | tf.Tensor[]): Promise<Result[]> {
  const previous = tf.getBackend();
  expect(await tf.setBackend(backend)).toBe(true);
  try {
    const outs = tf.tidy(fn);
    const list = Array.isArray(outs) ? outs : [outs];
    const results = list.map((t) => ({ dtype: t.dtype, shape: t.shape.slice(), values: t.dataSync() as Result['values'] }));
    tf.dispose(list);
    return results;
  } finally {
    await tf.setBackend(previous);
  }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** wasm and cpu give the same dtypes and shapes and values within `tol` (absolute). */
async function expectWasmMatchesCpu(fn: () => tf.Tensor | tf.Tensor[], tol: number): Promise<Result[]> {
  const cpu = await on('cpu', fn);
  const wasm = await on('wasm', fn);
  expect(wasm.length).toBe(cpu.length);
  cpu.forEach((c, i) => {
    const w = wasm[i]!;
    expect(w.dtype).toBe(c.dtype);
    expect(w.shape).toEqual(c.shape);
    if (tol === 0) expect(Array.from(w.values)).toEqual(Array.from(c.values));
    else expect(maxAbsDiff(w.values, c.values)).toBeLessThanOrEqual(tol);
  });
  return wasm;
}

/** Live tensors (engine) and live buffers on the wasm backend (which also counts kernel temporaries). */
function liveCounts(): { tensors: number; wasmBuffers: number } {
  return { tensors: tf.memory().numTensors, wasmBuffers: tf.engine().registry['wasm']!.numDataIds() };
}

describe('UnsortedSegmentSum on wasm', () => {
  const cases: Array<{ name: string; shape: number[]; ids: number[]; numSegments: number }> = [
    { name: '1-D data', shape: [12], ids: [0, 3, 3, 1, 0, 5, 2, 2, 2, 4, 1, 0], numSegments: 6 },
    { name: '2-D data, numSegments above the largest id', shape: [9, 5], ids: [1, 1, 1, 0, 2, 1, 0, 2, 2], numSegments: 7 },
    { name: '3-D data, repeated ids', shape: [10, 3, 4], ids: [4, 0, 4, 4, 2, 0, 2, 4, 1, 1], numSegments: 5 },
    {
      name: 'ids out of range (negative, == numSegments, far above) are ignored',
      shape: [8, 3],
      ids: [0, -1, 2, 3, 99, 1, -7, 2],
      numSegments: 3,
    },
    { name: 'empty segments and a single row', shape: [1, 6], ids: [2], numSegments: 4 },
  ];

  for (const [index, c] of cases.entries()) {
    it(`float32 equals cpu exactly: ${c.name}`, async () => {
      const data = randomFloats(size(c.shape), 100 + index);
      const [out] = await expectWasmMatchesCpu(
        () => tf.unsortedSegmentSum(tf.tensor(data, c.shape, 'float32'), tf.tensor1d(c.ids, 'int32'), c.numSegments),
        0,
      );
      expect(out!.shape).toEqual([c.numSegments, ...c.shape.slice(1)]);
    });

    it(`int32 equals cpu exactly (float32 output, as cpu): ${c.name}`, async () => {
      const data = randomInts(size(c.shape), -1000, 1000, 200 + index);
      const [out] = await expectWasmMatchesCpu(
        () => tf.unsortedSegmentSum(tf.tensor(data, c.shape, 'int32'), tf.tensor1d(c.ids, 'int32'), c.numSegments),
        0,
      );
      expect(out!.dtype).toBe('float32');
    });
  }

  it('computes the right sums (not only the same as cpu)', async () => {
    const [out] = await on('wasm', () =>
      tf.unsortedSegmentSum(tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [5, 2]), tf.tensor1d([2, 0, 2, -1, 5], 'int32'), 4),
    );
    expect(Array.from(out!.values)).toEqual([3, 4, 0, 0, 1 + 5, 2 + 6, 0, 0]);
  });

  it('int32 values above 2^24 are rounded to float32 before summing, as on cpu', async () => {
    // Rounded first: 16777216 + 1 and 16777220 + 3 (round to 16777216 and 16777224); summed exactly
    // first they would give 16777218 and 16777222.
    const big = [16777217, 1, 16777219, 3];
    const [out] = await expectWasmMatchesCpu(
      () => tf.unsortedSegmentSum(tf.tensor1d(big, 'int32'), tf.tensor1d([0, 0, 1, 1], 'int32'), 2),
      0,
    );
    expect(Array.from(out!.values)).toEqual([16777216, 16777224]);
  });

  it('sums in ascending position order, as cpu (order matters under cancellation)', async () => {
    // Ascending: (1e20 - 1e20) + 1 = 1; descending: (1 - 1e20) + 1e20 = 0.
    const huge = Math.fround(1e20);
    const [out] = await expectWasmMatchesCpu(
      () => tf.unsortedSegmentSum(tf.tensor1d([huge, -huge, 1, 5]), tf.tensor1d([0, 0, 0, 1], 'int32'), 2),
      0,
    );
    expect(Array.from(out!.values)).toEqual([1, 5]);
  });

  it('2-D segment ids sum over both id axes, as in TensorFlow (the cpu kernel mishandles k-D ids)', async () => {
    const data = randomFloats(6 * 4 * 3, 7);
    const ids = randomInts(6 * 4, -1, 5, 8);
    // tfjs types segmentIds as 1-D; the kernel accepts any prefix of x's shape, as TensorFlow does.
    const ids2d = () => tf.tensor2d(ids, [6, 4], 'int32') as unknown as tf.Tensor1D;
    const [out] = await on('wasm', () => tf.unsortedSegmentSum(tf.tensor3d(data, [6, 4, 3]), ids2d(), 5));
    expect(out!.shape).toEqual([5, 3]);
    // Same as the 1-D kernel on the flattened ids and data, and as a plain loop in float64.
    const [flat] = await expectWasmMatchesCpu(() => tf.unsortedSegmentSum(tf.tensor2d(data, [24, 3]), tf.tensor1d(ids, 'int32'), 5), 0);
    expect(Array.from(out!.values)).toEqual(Array.from(flat!.values));
    const expected = new Float64Array(5 * 3);
    ids.forEach((s, i) => {
      if (s >= 0) for (let k = 0; k < 3; k++) expected[s * 3 + k]! += data[i * 3 + k]!;
    });
    expect(Array.from(out!.values)).toEqual(Array.from(Float32Array.from(expected)));
  });

  it('a large random case equals cpu exactly', async () => {
    const rows = 1000;
    const data = randomFloats(rows * 16, 11);
    const ids = randomInts(rows, 0, 97, 12);
    await expectWasmMatchesCpu(() => tf.unsortedSegmentSum(tf.tensor2d(data, [rows, 16]), tf.tensor1d(ids, 'int32'), 100), 0);
  });

  it('keeps a NaN in its own segment (the cpu kernel spreads it to all segments)', async () => {
    const [out] = await on('wasm', () => tf.unsortedSegmentSum(tf.tensor1d([1, Number.NaN, 3]), tf.tensor1d([0, 1, 2], 'int32'), 3));
    expect(Array.from(out!.values)).toEqual([1, Number.NaN, 3]);
  });

  it('rejects segment ids whose shape is not a prefix of the data shape', async () => {
    await tf.setBackend('wasm');
    const x = tf.zeros([4, 2]);
    const ids = tf.zeros([3], 'int32') as tf.Tensor1D;
    expect(() => tf.unsortedSegmentSum(x, ids, 2)).toThrow(WasmKernelError);
    tf.dispose([x, ids]);
  });

  it('tf.grad through tf.gather (an embedding) equals the cpu gradient, with repeated ids', async () => {
    const vocab = 37;
    const dim = 8;
    const table = randomFloats(vocab * dim, 21);
    const ids = [3, 3, 0, 36, 5, 3, 12, 0, 0, 36, 7, 3];
    const w = randomFloats(ids.length * dim, 22);
    const [grad] = await expectWasmMatchesCpu(() => {
      const loss = (t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, tf.tensor1d(ids, 'int32')), tf.tensor2d(w, [ids.length, dim])));
      return tf.grad(loss)(tf.tensor2d(table, [vocab, dim]));
    }, 1e-6);
    // Row 3 appears four times: its gradient is the sum of the four matching rows of w.
    const expected = [0, 1, 5, 11]
      .map((r) => w.subarray(r * dim, (r + 1) * dim))
      .reduce((acc, row) => acc.map((v, k) => v + row[k]!), new Array<number>(dim).fill(0));
    expect(maxAbsDiff(grad!.values.subarray(3 * dim, 4 * dim), expected)).toBeLessThan(1e-6);
  });

  it('leaks no tensor and no wasm buffer', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor2d(randomFloats(40, 1), [10, 4]);
    const ids = tf.tensor1d([0, 1, 1, 2, 9, -1, 0, 2, 2, 1], 'int32');
    const before = liveCounts();
    for (let i = 0; i < 5; i++) tf.dispose(tf.unsortedSegmentSum(x, ids, 3));
    expect(liveCounts()).toEqual(before);
    tf.dispose([x, ids]);
  });
});

describe('BatchMatMul and _FusedMatMul on wasm (explicit transposes)', () => {
  const [M, K, N] = [5, 7, 3];
  const flags: Array<[boolean, boolean]> = [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ];
  const operand = (shape: number[], seed: number) => tf.tensor(randomFloats(size(shape), seed), shape);
  const aShape = (batch: number[], ta: boolean) => [...batch, ...(ta ? [K, M] : [M, K])];
  const bShape = (batch: number[], tb: boolean) => [...batch, ...(tb ? [N, K] : [K, N])];
  // Batch shapes the wasm kernels support: equal, or one side without batch (broadcast).
  const batches: Array<{ name: string; a: number[]; b: number[]; out: number[] }> = [
    { name: '2-D', a: [], b: [], out: [M, N] },
    { name: '3-D', a: [4], b: [4], out: [4, M, N] },
    { name: '3-D broadcast over a batch of 1', a: [1], b: [4], out: [4, M, N] },
    { name: '4-D against 2-D (b broadcast)', a: [2, 3], b: [], out: [2, 3, M, N] },
  ];

  for (const batch of batches) {
    for (const [ta, tb] of flags) {
      it(`matMul ${batch.name}, transposeA=${ta}, transposeB=${tb}: equals cpu`, async () => {
        const [out] = await expectWasmMatchesCpu(
          () => tf.matMul(operand(aShape(batch.a, ta), 1), operand(bShape(batch.b, tb), 2), ta, tb),
          1e-4,
        );
        expect(out!.shape).toEqual(batch.out);
      });
    }
  }

  for (const [ta, tb] of flags) {
    it(`fused matMul with bias and relu, transposeA=${ta}, transposeB=${tb}: equals cpu`, async () => {
      const [out] = await expectWasmMatchesCpu(
        () =>
          tf.fused.matMul({
            a: operand(aShape([3], ta), 3),
            b: operand(bShape([3], tb), 4),
            transposeA: ta,
            transposeB: tb,
            bias: operand([N], 5),
            activation: 'relu',
          }),
        1e-4,
      );
      expect(out!.shape).toEqual([3, M, N]);
      // relu really ran: some outputs are clamped to 0, none negative.
      expect(Math.min(...out!.values)).toBe(0);
    });
  }

  // The original wasm _FusedMatMul applies the bias wrongly on batched inputs; the replacement folds
  // the batch into the rows when b has no batch, and adds bias and activation separately otherwise.
  const activations = ['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu', 'prelu'] as const;
  const fusedBatches = [
    { name: 'a batched, b not (folded)', a: [2, 3], b: [], out: [2, 3, M, N] },
    { name: 'both batched', a: [4], b: [4], out: [4, M, N] },
    { name: 'a batch of 1, b batched', a: [1], b: [4], out: [4, M, N] },
  ];
  for (const batch of fusedBatches) {
    for (const activation of activations) {
      it(`fused matMul with bias, ${batch.name}, ${activation}, transposeB: equals cpu`, async () => {
        const [out] = await expectWasmMatchesCpu(
          () =>
            tf.fused.matMul({
              a: operand(aShape(batch.a, false), 11),
              b: operand(bShape(batch.b, true), 12),
              transposeB: true,
              bias: operand([N], 13),
              activation,
              preluActivationWeights: activation === 'prelu' ? operand([N], 14) : undefined,
              leakyreluAlpha: 0.3,
            }),
          1e-4,
        );
        expect(out!.shape).toEqual(batch.out);
      });
    }
  }

  const biasShapes: Array<{ name: string; a: number[]; b: number[]; bias: number[] }> = [
    { name: '[1] bias, 2-D', a: [], b: [], bias: [1] },
    { name: '[1] bias, a batched (foldable shapes)', a: [3], b: [], bias: [1] },
    { name: '[1] bias, both batched', a: [3], b: [3], bias: [1] },
    { name: '[rows, columns] bias, a batched', a: [3], b: [], bias: [M, N] },
  ];
  for (const c of biasShapes) {
    it(`fused matMul with a ${c.name}, transposeA, relu: equals cpu`, async () => {
      await expectWasmMatchesCpu(
        () =>
          tf.fused.matMul({
            a: operand(aShape(c.a, true), 21),
            b: operand(bShape(c.b, false), 22),
            transposeA: true,
            bias: operand(c.bias, 23),
            activation: 'relu',
          }),
        1e-4,
      );
    });
  }

  it('the original wasm _FusedMatMul gets a batched bias wrong (the bug worked around here)', async () => {
    const run = () => tf.fused.matMul({ a: operand([3, M, K], 15), b: operand([K, N], 16), bias: operand([N], 17) });
    const [cpu] = await on('cpu', run);
    await tf.setBackend('wasm');
    const original = withOriginalWasmKernels(run);
    // If this fails, tfjs fixed the bug and the workaround in fixedFusedMatMul can go.
    expect(maxAbsDiff(original.dataSync(), cpu!.values)).toBeGreaterThan(0.01);
    original.dispose();
  });

  it('the fixed kernels equal the original wasm kernels to float rounding', async () => {
    await tf.setBackend('wasm');
    for (const [ta, tb] of flags) {
      const a = operand(aShape([2], ta), 6);
      const b = operand(bShape([2], tb), 7);
      const fixed = tf.matMul(a, b, ta, tb);
      const original = withOriginalWasmKernels(() => tf.matMul(a, b, ta, tb));
      const fusedFixed = tf.fused.matMul({ a, b, transposeA: ta, transposeB: tb, activation: 'relu' });
      const fusedOriginal = withOriginalWasmKernels(() => tf.fused.matMul({ a, b, transposeA: ta, transposeB: tb, activation: 'relu' }));
      expect(maxAbsDiff(fixed.dataSync(), original.dataSync())).toBeLessThan(1e-5);
      expect(maxAbsDiff(fusedFixed.dataSync(), fusedOriginal.dataSync())).toBeLessThan(1e-5);
      tf.dispose([a, b, fixed, original, fusedFixed, fusedOriginal]);
    }
  });

  it('really transposes explicitly: one wasm Transpose per transposed operand', async () => {
    await tf.setBackend('wasm');
    const transpose = tf.getKernel('Transpose', 'wasm')!;
    const spy = vi.fn(transpose.kernelFunc);
    tf.unregisterKernel('Transpose', 'wasm');
    tf.registerKernel({ ...transpose, kernelFunc: spy });
    try {
      const a = operand([K, M], 8);
      const b = operand([N, K], 9);
      tf.dispose(tf.matMul(a, b, true, true));
      expect(spy).toHaveBeenCalledTimes(2);
      spy.mockClear();
      tf.dispose(tf.tidy(() => tf.fused.matMul({ a, b: tf.transpose(b), transposeA: true })));
      expect(spy).toHaveBeenCalledTimes(2); // tf.transpose(b) and the fused kernel's own
      spy.mockClear();
      tf.dispose(withOriginalWasmKernels(() => tf.matMul(a, b, true, true)));
      expect(spy).not.toHaveBeenCalled();
      tf.dispose([a, b]);
    } finally {
      tf.unregisterKernel('Transpose', 'wasm');
      tf.registerKernel(transpose);
    }
  });

  it('the gradient of a small matmul chain equals cpu', async () => {
    const x = randomFloats(6 * 4, 31);
    const w1 = randomFloats(4 * 8, 32);
    const b1 = randomFloats(8, 33);
    const w2 = randomFloats(8 * 3, 34);
    await expectWasmMatchesCpu(() => {
      const f = (...[w1t, b1t, w2t]: tf.Tensor[]) => {
        const h = tf.fused.matMul({ a: tf.tensor2d(x, [6, 4]), b: w1t as tf.Tensor2D, bias: b1t, activation: 'relu' });
        const y = tf.matMul(h, w2t as tf.Tensor2D);
        return tf.sum(tf.square(tf.matMul(y, y, false, true)));
      };
      return tf.grads(f)([tf.tensor2d(w1, [4, 8]), tf.tensor1d(b1), tf.tensor2d(w2, [8, 3])]);
    }, 1e-4);
  });

  it('leaks no tensor and no wasm buffer (the transposed copies are freed)', async () => {
    await tf.setBackend('wasm');
    const a = operand([2, K, M], 41);
    const b = operand([2, N, K], 42);
    const bias = operand([N], 43);
    const before = liveCounts();
    for (let i = 0; i < 5; i++) {
      tf.dispose(tf.matMul(a, b, true, true));
      tf.dispose(tf.tidy(() => tf.matMul(a, tf.transpose(b, [0, 2, 1]), true, false)));
      tf.dispose(tf.fused.matMul({ a, b, transposeA: true, transposeB: true, bias, activation: 'relu' }));
      tf.dispose(tf.tidy(() => tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.matMul(p, q, true, true)))([a, b])));
    }
    expect(liveCounts()).toEqual(before);
    tf.dispose([a, b, bias]);
  });
});

describe('batched BatchMatMul and _FusedMatMul on wasm (one batch-1 product per batch element)', () => {
  const operand = (shape: number[], seed: number) => tf.tensor(randomFloats(size(shape), seed), shape);
  const maxAbs = (v: ArrayLike<number>) => Array.from(v).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

  /** wasm equals cpu within `rel` of the largest cpu output (float rounding of long dot products). */
  async function expectWasmMatchesCpuRelative(fn: () => tf.Tensor | tf.Tensor[], rel = 1e-5): Promise<Result[]> {
    const cpu = await on('cpu', fn);
    const wasm = await on('wasm', fn);
    expect(wasm.length).toBe(cpu.length);
    cpu.forEach((c, i) => {
      const w = wasm[i]!;
      expect(w.shape).toEqual(c.shape);
      expect(maxAbsDiff(w.values, c.values)).toBeLessThanOrEqual(rel * Math.max(1, maxAbs(c.values)));
    });
    return wasm;
  }

  /** Operand shapes for `rows x inner x columns` products, stored transposed where the flags say. */
  const shapeA = (batch: number[], m: number, k: number, ta: boolean) => [...batch, ...(ta ? [k, m] : [m, k])];
  const shapeB = (batch: number[], k: number, n: number, tb: boolean) => [...batch, ...(tb ? [n, k] : [k, n])];
  const flags: Array<[boolean, boolean]> = [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ];

  /** Counts the views (tensors over another tensor's memory) the kernels make while `fn` runs. */
  function countViews(fn: () => void): number {
    const backend = tf.backend() as unknown as { makeOutput: (...args: unknown[]) => unknown };
    const spy = vi.spyOn(backend, 'makeOutput');
    try {
      fn();
      return spy.mock.calls.filter((call) => call[2] !== undefined).length;
    } finally {
      spy.mockRestore();
    }
  }

  for (let batch = 2; batch <= 8; batch++) {
    it(`batch ${batch}, [${batch}, 24, 40] x [${batch}, 40, 19]: equals cpu`, async () => {
      const [out] = await expectWasmMatchesCpuRelative(() =>
        tf.matMul(operand([batch, 24, 40], batch), operand([batch, 40, 19], 10 + batch)),
      );
      expect(out!.shape).toEqual([batch, 24, 19]);
    });
  }

  // Attention: scores q·kᵀ ([B, H, Q, D] x [B, H, K, D]ᵀ) and context p·v ([B, H, Q, K] x [B, H, K, D]).
  const [B, H, Q, D, K] = [2, 3, 16, 32, 37];
  for (const [ta, tb] of flags) {
    it(`4-D [B, H, Q, D] x [B, H, D, K], transposeA=${ta}, transposeB=${tb}: equals cpu`, async () => {
      const [out] = await expectWasmMatchesCpuRelative(() =>
        tf.matMul(operand(shapeA([B, H], Q, D, ta), 51), operand(shapeB([B, H], D, K, tb), 52), ta, tb),
      );
      expect(out!.shape).toEqual([B, H, Q, K]);
    });
  }

  for (const [ta, tb] of flags) {
    it(`odd sizes [4, 256, 32] x [4, 32, 767] (767 keys), transposeA=${ta}, transposeB=${tb}: equals cpu`, async () => {
      const [out] = await expectWasmMatchesCpuRelative(() =>
        tf.matMul(operand(shapeA([4], 256, 32, ta), 53), operand(shapeB([4], 32, 767, tb), 54), ta, tb),
      );
      expect(out!.shape).toEqual([4, 256, 767]);
    });
  }

  it('odd sizes [2, 2, 33, 767] x [2, 2, 767, 31] (inner 767): equals cpu', async () => {
    await expectWasmMatchesCpuRelative(() => tf.matMul(operand([2, 2, 33, 767], 55), operand([2, 2, 767, 31], 56)));
  });

  const broadcasts: Array<{ name: string; a: number[]; b: number[]; out: number[] }> = [
    { name: '[1, H] against [B, H]', a: [1, H], b: [B, H], out: [B, H] },
    { name: '[B, H] against [1, H]', a: [B, H], b: [1, H], out: [B, H] },
    { name: '[H] against [B, H] (lower rank)', a: [H], b: [B, H], out: [B, H] },
    { name: 'a batch of 1 against [4]', a: [1], b: [4], out: [4] },
    { name: '2-D a against [B, H]', a: [], b: [B, H], out: [B, H] },
    { name: '[B, H] against a batch of 1 (folded)', a: [B, H], b: [1], out: [B, H] },
    { name: '[B, H] against 2-D b (folded)', a: [B, H], b: [], out: [B, H] },
  ];
  for (const c of broadcasts) {
    for (const [ta, tb] of [flags[0]!, flags[2]!, flags[3]!]) {
      it(`broadcast ${c.name}, transposeA=${ta}, transposeB=${tb}: equals cpu`, async () => {
        const [out] = await expectWasmMatchesCpuRelative(() =>
          tf.matMul(operand(shapeA(c.a, Q, D, ta), 61), operand(shapeB(c.b, D, K, tb), 62), ta, tb),
        );
        expect(out!.shape).toEqual([...c.out, Q, K]);
      });
    }
  }

  it('broadcast [2, 1] against [1, 3] (which the cpu kernel gets wrong) equals cpu on broadcast operands', async () => {
    const a = randomFloats(2 * Q * D, 63);
    const b = randomFloats(3 * D * K, 64);
    const [expected] = await on('cpu', () =>
      tf.matMul(tf.broadcastTo(tf.tensor(a, [2, 1, Q, D]), [2, 3, Q, D]), tf.broadcastTo(tf.tensor(b, [1, 3, D, K]), [2, 3, D, K])),
    );
    for (const size of [Q, 2]) {
      // Both sizes: the loop (large) and the small products that the original would get wrong.
      const [out] = await on('wasm', () =>
        tf.matMul(tf.tensor(a, [2, 1, Q, D]).slice([0, 0, 0, 0], [2, 1, size, D]), tf.tensor(b, [1, 3, D, K])),
      );
      expect(out!.shape).toEqual([2, 3, size, K]);
      const want = tf.tidy(() => tf.tensor(expected!.values, expected!.shape).slice([0, 0, 0, 0], [2, 3, size, K]).dataSync());
      expect(maxAbsDiff(out!.values, want)).toBeLessThanOrEqual(1e-5 * Math.max(1, maxAbs(want)));
    }
  });

  it('small products keep the original batched kernel and still equal cpu', async () => {
    for (const [ta, tb] of flags) {
      await expectWasmMatchesCpuRelative(() =>
        tf.matMul(operand(shapeA([2, 3], 4, 5, ta), 65), operand(shapeB([2, 3], 5, 6, tb), 66), ta, tb),
      );
      await expectWasmMatchesCpuRelative(() =>
        tf.matMul(operand(shapeA([5], 2, 64, ta), 67), operand(shapeB([5], 64, 256, tb), 68), ta, tb),
      );
    }
  });

  it('takes the planned path: a loop on views for attention, a fold for a batch-less b, the original when small', async () => {
    await tf.setBackend('wasm');
    const q = operand([B, H, Q, D], 71);
    const k = operand([B, H, K, D], 72);
    const w = operand([D, K], 73);
    const small = operand([B, H, 4, 5], 74);
    const smallB = operand([B, H, 5, 6], 75);
    // One view of each operand per batch element: B·H products.
    expect(countViews(() => tf.dispose(tf.matMul(q, k, false, true)))).toBe(2 * B * H);
    // b broadcast over B: one view per head of b, shared by the B products that read it (so
    // XNNPACK packs it once).
    expect(countViews(() => tf.dispose(tf.tidy(() => tf.matMul(q, tf.slice(k, [0, 0, 0, 0], [1, H, K, D]), false, true))))).toBe(B * H + H);
    // b with one batch (or none): folded into a single product, no views.
    expect(countViews(() => tf.dispose(tf.tidy(() => tf.matMul(q, tf.slice(k, [0, 0, 0, 0], [1, 1, K, D]), false, true))))).toBe(0);
    expect(countViews(() => tf.dispose(tf.matMul(q, w)))).toBe(0);
    expect(countViews(() => tf.dispose(tf.matMul(small, smallB)))).toBe(0);
    expect(countViews(() => tf.dispose(tf.fused.matMul({ a: q, b: k, transposeB: true, activation: 'relu' })))).toBe(2 * B * H);
    tf.dispose([q, k, w, small, smallB]);
  });

  it('small batched products keep their transpose flags (no explicit Transpose), large ones transpose once', async () => {
    await tf.setBackend('wasm');
    const transpose = tf.getKernel('Transpose', 'wasm')!;
    const spy = vi.fn(transpose.kernelFunc);
    tf.unregisterKernel('Transpose', 'wasm');
    tf.registerKernel({ ...transpose, kernelFunc: spy });
    try {
      const small = operand([6, 5, 4], 76);
      const smallB = operand([6, 3, 5], 79);
      tf.dispose(tf.matMul(small, smallB, true, true));
      tf.dispose(tf.fused.matMul({ a: small, b: smallB, transposeA: true, transposeB: true, activation: 'relu' }));
      expect(spy).not.toHaveBeenCalled();
      const q = operand([B, H, Q, D], 77);
      const k = operand([B, H, K, D], 78);
      tf.dispose(tf.matMul(q, k, false, true));
      expect(spy).toHaveBeenCalledTimes(1);
      tf.dispose([small, smallB, q, k]);
    } finally {
      tf.unregisterKernel('Transpose', 'wasm');
      tf.registerKernel(transpose);
    }
  });

  it('the fixed kernel equals the original batched kernel to float rounding', async () => {
    await tf.setBackend('wasm');
    for (const [ta, tb] of flags) {
      const a = operand(shapeA([4], 256, 32, ta), 81);
      const b = operand(shapeB([4], 32, 767, tb), 82);
      const fixed = tf.matMul(a, b, ta, tb);
      const original = withOriginalWasmKernels(() => tf.matMul(a, b, ta, tb));
      const expected = original.dataSync();
      expect(maxAbsDiff(fixed.dataSync(), expected)).toBeLessThanOrEqual(1e-5 * maxAbs(expected));
      tf.dispose([a, b, fixed, original]);
    }
  });

  const activations = ['linear', 'relu', 'elu', 'prelu'] as const;
  for (const activation of activations) {
    for (const bias of [undefined, [K], [1], [Q, K]]) {
      it(`fused matMul, [B, H] batches on both sides, ${activation}, bias ${bias === undefined ? 'none' : `[${bias.join(', ')}]`}: equals cpu`, async () => {
        const [out] = await expectWasmMatchesCpuRelative(() =>
          tf.fused.matMul({
            a: operand([B * H, Q, D], 91),
            b: operand([B * H, K, D], 92),
            transposeB: true,
            bias: bias === undefined ? undefined : operand(bias, 93),
            activation,
            preluActivationWeights: activation === 'prelu' ? operand([K], 94) : undefined,
          }),
        );
        expect(out!.shape).toEqual([B * H, Q, K]);
      });
    }
  }

  it('fused matMul without bias, a batched and b not (folded), prelu: equals cpu', async () => {
    await expectWasmMatchesCpuRelative(() =>
      tf.fused.matMul({
        a: operand([B, H, Q, D], 95),
        b: operand([D, K], 96),
        activation: 'prelu',
        preluActivationWeights: operand([K], 97),
      }),
    );
  });

  it('the gradient of batched attention softmax(q kᵀ / √d) v equals cpu', async () => {
    const [b, h, n, m, d] = [2, 2, 32, 40, 16];
    const q = randomFloats(b * h * n * d, 101);
    const k = randomFloats(b * h * m * d, 102);
    const v = randomFloats(b * h * m * d, 103);
    const w = randomFloats(b * h * n * d, 104);
    await expectWasmMatchesCpuRelative(() => {
      const f = (qt: tf.Tensor, kt: tf.Tensor, vt: tf.Tensor) => {
        const scores = tf.div(tf.matMul(qt, kt, false, true), Math.sqrt(d));
        const context = tf.matMul(tf.softmax(scores), vt);
        return tf.sum(tf.mul(context, tf.tensor(w, [b, h, n, d])));
      };
      return tf.grads(f)([tf.tensor(q, [b, h, n, d]), tf.tensor(k, [b, h, m, d]), tf.tensor(v, [b, h, m, d])]);
    }, 1e-4);
  });

  it("inner shapes that do not match still throw tfjs's error", async () => {
    await tf.setBackend('wasm');
    const a = operand([3, 16, 32], 111);
    const b = operand([3, 31, 40], 112);
    const before = liveCounts();
    expect(() => tf.matMul(a, b)).toThrow(/inner shapes/);
    expect(liveCounts()).toEqual(before);
    tf.dispose([a, b]);
  });

  it('leaks no tensor, no byte and no wasm buffer (views and partial products are freed)', async () => {
    await tf.setBackend('wasm');
    const q = operand([B, H, Q, D], 121);
    const k = operand([B, H, K, D], 122);
    const v = operand([B, H, K, D], 123);
    const bias = operand([1], 124);
    const bytes = () => tf.memory().numBytes;
    const before = { ...liveCounts(), bytes: bytes() };
    for (let i = 0; i < 3; i++) {
      tf.dispose(tf.matMul(q, k, false, true));
      tf.dispose(tf.matMul(q, q, true, false));
      tf.dispose(tf.tidy(() => tf.matMul(tf.slice(q, [0, 0, 0, 0], [1, H, Q, D]), k, false, true)));
      tf.dispose(tf.tidy(() => tf.matMul(q, tf.reshape(tf.slice(k, [0, 0, 0, 0], [1, 1, K, D]), [K, D]), false, true)));
      tf.dispose(tf.fused.matMul({ a: q, b: k, transposeB: true, bias, activation: 'relu' }));
      tf.dispose(
        tf.tidy(() =>
          tf.grads((qt: tf.Tensor, kt: tf.Tensor, vt: tf.Tensor) => tf.sum(tf.matMul(tf.softmax(tf.matMul(qt, kt, false, true)), vt)))([
            q,
            k,
            v,
          ]),
        ),
      );
    }
    expect({ ...liveCounts(), bytes: bytes() }).toEqual(before);
    tf.dispose([q, k, v, bias]);
  });
});

describe('GatherV2 on wasm (row copies)', () => {
  const cases: { name: string; shape: number[]; ids: number[]; idShape?: number[]; axis: number }[] = [
    { name: 'embedding rows [10, 4], repeated ids', shape: [10, 4], ids: [3, 0, 9, 3, 3, 1], axis: 0 },
    { name: 'long rows [6, 100] (typed-array copies)', shape: [6, 100], ids: [5, 0, 2], axis: 0 },
    { name: 'axis 1 of [3, 7, 5]', shape: [3, 7, 5], ids: [6, 0, 6, 2], axis: 1 },
    { name: 'last axis of [4, 6]', shape: [4, 6], ids: [5, 1], axis: -1 },
    { name: '2-D ids [2, 3] into [8, 3]', shape: [8, 3], ids: [7, 0, 1, 1, 2, 6], idShape: [2, 3], axis: 0 },
  ];
  for (const c of cases) {
    it(`float32 and int32 equal cpu exactly: ${c.name}`, async () => {
      const values = randomFloats(size(c.shape), 11);
      const ids = () => tf.tensor(c.ids, c.idShape ?? [c.ids.length], 'int32');
      await expectWasmMatchesCpu(() => tf.gather(tf.tensor(values, c.shape), ids(), c.axis), 0);
      await expectWasmMatchesCpu(
        () => tf.gather(tf.tensor(randomInts(size(c.shape), -1000, 1000, 12), c.shape, 'int32'), ids(), c.axis),
        0,
      );
    });
  }

  it('batchDims > 0 and empty ids still equal cpu (the original kernel runs them)', async () => {
    const x = randomFloats(2 * 5 * 3, 13);
    await expectWasmMatchesCpu(
      () =>
        tf.gather(
          tf.tensor(x, [2, 5, 3]),
          tf.tensor2d(
            [
              [4, 0],
              [1, 1],
            ],
            [2, 2],
            'int32',
          ),
          1,
          1,
        ),
      0,
    );
    await expectWasmMatchesCpu(() => tf.gather(tf.tensor(x, [10, 3]), tf.tensor1d([], 'int32')), 0);
  });

  it('is registered: the GatherV2 kernel is the row-copy one', async () => {
    await tf.setBackend('wasm');
    const config = tf.getKernel('GatherV2', 'wasm');
    expect(config?.kernelFunc.toString()).toContain('typedArrayFromHeap');
  });

  it('throws a WasmKernelError for an index outside the table (the original reads past it)', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor2d(randomFloats(12, 14), [4, 3]);
    const before = liveCounts();
    for (const bad of [4, -1]) {
      const ids = tf.tensor1d([0, bad], 'int32');
      expect(() => tf.gather(x, ids)).toThrow(
        expect.objectContaining({
          name: 'WasmKernelError',
          code: 'INVALID_ARGUMENT',
          message: expect.stringContaining(`${bad} is not in [0, 3]`),
        }),
      );
      ids.dispose();
    }
    expect(liveCounts()).toEqual(before);
    x.dispose();
  });

  it('leaks no tensor and no wasm buffer', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor2d(randomFloats(400, 15), [100, 4]);
    const ids = tf.tensor1d([0, 99, 5, 5], 'int32');
    const before = liveCounts();
    for (let i = 0; i < 5; i++) tf.dispose(tf.gather(x, ids));
    expect(liveCounts()).toEqual(before);
    tf.dispose([x, ids]);
  });
});

describe('Equal on wasm (JavaScript loop)', () => {
  const shapes: [string, number[], number[]][] = [
    ['same shape', [3, 4, 5], [3, 4, 5]],
    ['max-gradient broadcast [1, 7, 5, 6] vs [1, 7, 1, 6]', [1, 7, 5, 6], [1, 7, 1, 6]],
    ['both sides broadcast [4, 1] vs [1, 3]', [4, 1], [1, 3]],
    ['lower rank [2, 3, 4] vs [4]', [2, 3, 4], [4]],
    ['scalar', [5], []],
  ];
  for (const [name, aShape, bShape] of shapes) {
    it(`float32 and int32 equal cpu exactly: ${name}`, async () => {
      // Few distinct values, so that many pairs are equal.
      const ints = (shape: number[], seed: number) => randomInts(size(shape), 0, 3, seed);
      await expectWasmMatchesCpu(
        () => tf.equal(tf.tensor(ints(aShape, 21), aShape, 'int32'), tf.tensor(ints(bShape, 22), bShape, 'int32')),
        0,
      );
      await expectWasmMatchesCpu(
        () => tf.equal(tf.tensor(Float32Array.from(ints(aShape, 23)), aShape), tf.tensor(Float32Array.from(ints(bShape, 24)), bShape)),
        0,
      );
    });
  }

  it('NaN equals nothing, -0 equals 0', async () => {
    await expectWasmMatchesCpu(() => tf.equal(tf.tensor1d([Number.NaN, 0, -0, 1]), tf.tensor1d([Number.NaN, -0, 0, 2])), 0);
    const values = await on('wasm', () => tf.equal(tf.tensor1d([Number.NaN, 0, -0, 1]), tf.tensor1d([Number.NaN, -0, 0, 2])));
    expect(Array.from(values[0]!.values)).toEqual([0, 1, 1, 0]);
  });

  it('the gradient of tf.max (which compares with a broadcast) equals cpu', async () => {
    const x = randomInts(2 * 6 * 4, 0, 5, 25); // ties included
    await expectWasmMatchesCpu(() => tf.grad((t: tf.Tensor) => tf.sum(tf.max(t, 1)))(tf.tensor(Float32Array.from(x), [2, 6, 4])), 0);
  });

  it('leaks no tensor and no wasm buffer', async () => {
    await tf.setBackend('wasm');
    const a = tf.tensor3d(randomFloats(24, 26), [2, 3, 4]);
    const b = tf.max(a, 1, true);
    const before = liveCounts();
    for (let i = 0; i < 5; i++) tf.dispose(tf.equal(a, b));
    expect(liveCounts()).toEqual(before);
    tf.dispose([a, b]);
  });
});

describe('Identity on wasm (shared memory)', () => {
  it('tf.clone shares the buffer, outlives its source, and frees it with the last reference', async () => {
    await tf.setBackend('wasm');
    const before = liveCounts();
    const x = tf.tensor2d(randomFloats(12, 31), [3, 4]);
    const expected = Array.from(await x.data());
    const copy = tf.clone(x);
    expect(liveCounts()).toEqual({ tensors: before.tensors + 2, wasmBuffers: before.wasmBuffers + 1 });
    x.dispose();
    expect(Array.from(await copy.data())).toEqual(expected);
    copy.dispose();
    expect(liveCounts()).toEqual(before);
  });

  it('a variable assigned after a clone leaves the clone unchanged', async () => {
    await tf.setBackend('wasm');
    const v = tf.variable(tf.tensor1d([1, 2, 3]));
    const copy = tf.clone(v);
    v.assign(tf.tensor1d([7, 8, 9]));
    expect(Array.from(await copy.data())).toEqual([1, 2, 3]);
    expect(Array.from(await v.data())).toEqual([7, 8, 9]);
    tf.dispose([v, copy]);
  });

  it('training steps with Adam equal cpu, and repeated steps leak nothing', async () => {
    const train = (steps: number, checkLeaks = false) => {
      const w = tf.variable(tf.tensor2d(randomFloats(12, 32), [4, 3]));
      const x = tf.tensor2d(randomFloats(20, 33), [5, 4]);
      const optimizer = tf.train.adam(0.1);
      const step = () => optimizer.minimize(() => tf.sum(tf.square(tf.matMul(x, w))));
      step(); // Adam creates its moments on the first step
      const before = liveCounts();
      for (let i = 1; i < steps; i++) step();
      if (checkLeaks) expect(liveCounts()).toEqual(before);
      const out = tf.clone(w);
      tf.dispose([w, x]);
      optimizer.dispose();
      return out;
    };
    await expectWasmMatchesCpu(() => train(3), 1e-5);
    await tf.setBackend('wasm');
    tf.dispose(train(5, true));
  });
});

describe('registration', () => {
  it('is idempotent, also for a second copy of the module evaluated after the backend started', async () => {
    const names = ['BatchMatMul', '_FusedMatMul', 'UnsortedSegmentSum', 'GatherV2', 'Equal', 'Identity', 'BytelatentRmsNorm'];
    const kernels = names.map((name) => tf.getKernel(name, 'wasm'));
    expect(kernels.every((k) => k !== undefined)).toBe(true);
    expect(() => registerWasmKernelFixes()).not.toThrow();
    vi.resetModules();
    const copy = await import('./wasm-kernels.js');
    expect(copy.registerWasmKernelFixes).not.toBe(registerWasmKernelFixes);
    copy.registerWasmKernelFixes();
    // Still the same configs: not wrapped a second time.
    expect(names.map((name) => tf.getKernel(name, 'wasm'))).toEqual(kernels);
    for (const [i, name] of names.entries()) expect(tf.getKernel(name, 'wasm')).toBe(kernels[i]);
  });

  it('withOriginalWasmKernels restores the fixes, even when fn throws, and refuses async fns', async () => {
    const fixed = tf.getKernel('BatchMatMul', 'wasm');
    let inside: unknown;
    expect(() =>
      withOriginalWasmKernels(() => {
        inside = tf.getKernel('BatchMatMul', 'wasm');
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(inside).not.toBe(fixed);
    expect(tf.getKernel('BatchMatMul', 'wasm')).toBe(fixed);
    expect(() => withOriginalWasmKernels(async () => 1)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(tf.getKernel('BatchMatMul', 'wasm')).toBe(fixed);
  });
});
