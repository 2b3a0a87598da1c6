import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../register-gradients.js';
import { activeWasmMatMul, withWasmMatMul, type WasmMatMulKind } from './wasm-kernels.js';
import { disableNativeWasmMatMul, enableNativeWasmMatMul, type NativeSgemmLike } from './wasm-native-matmul.js';

// The OpenBLAS kernels need the optional @bytelatent/native-sgemm addon. Where it is missing or not
// built (no compiler or OpenBLAS), these tests are skipped and the reason is logged.
async function loadNative(): Promise<{ sgemm?: NativeSgemmLike; reason: string }> {
  try {
    const pkg = await import('@bytelatent/native-sgemm');
    const sgemm = pkg.loadNativeSgemm();
    return sgemm === undefined ? { reason: pkg.nativeSgemmUnavailableReason() ?? 'unavailable' } : { sgemm, reason: sgemm.config };
  } catch (e) {
    return { reason: `@bytelatent/native-sgemm could not be imported: ${e instanceof Error ? e.message : String(e)}` };
  }
}
const native = await loadNative();
if (native.sgemm === undefined) console.warn(`native matmul tests skipped: ${native.reason}`);

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

const size = (shape: readonly number[]) => shape.reduce((p, d) => p * d, 1);
const operand = (shape: number[], seed: number) => tf.tensor(randomFloats(size(shape), seed), shape);

/** Shape and values of `fn`'s single output with the given kernels (everything disposed). */
function run(kind: WasmMatMulKind, fn: () => tf.Tensor): { shape: number[]; values: Float32Array } {
  return withWasmMatMul(kind, () => {
    const out = tf.tidy(fn);
    const result = { shape: out.shape.slice(), values: out.dataSync() as Float32Array };
    out.dispose();
    return result;
  });
}

/**
 * Largest |x - y| relative to the largest |y| (float32 products differ by summation order only, so
 * the error scales with the output's magnitude rather than each element's).
 */
function relativeError(x: ArrayLike<number>, y: ArrayLike<number>): number {
  expect(x.length).toBe(y.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < y.length; i++) {
    diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
    scale = Math.max(scale, Math.abs(y[i]!));
  }
  return scale === 0 ? diff : diff / scale;
}

/** native equals `reference` kernels: same shape, values within `tol` relative. */
function expectNativeMatches(
  fn: () => tf.Tensor,
  reference: Exclude<WasmMatMulKind, 'native'>,
  tol = 1e-5,
): { shape: number[]; values: Float32Array } {
  const got = run('native', fn);
  const want = run(reference, fn);
  expect(got.shape).toEqual(want.shape);
  expect(relativeError(got.values, want.values)).toBeLessThanOrEqual(tol);
  return got;
}

function liveCounts(): { tensors: number; wasmBuffers: number; bytes: number } {
  return { tensors: tf.memory().numTensors, wasmBuffers: tf.engine().registry['wasm']!.numDataIds(), bytes: tf.memory().numBytes };
}

describe.skipIf(native.sgemm === undefined)('native (OpenBLAS) BatchMatMul and _FusedMatMul on wasm', () => {
  beforeAll(async () => {
    expect(await tf.setBackend('wasm')).toBe(true);
    enableNativeWasmMatMul(native.sgemm!);
  });
  afterAll(() => disableNativeWasmMatMul());

  it('is registered, and withWasmMatMul swaps and restores it', () => {
    expect(activeWasmMatMul()).toBe('native');
    const nativeKernel = tf.getKernel('BatchMatMul', 'wasm');
    const inside = withWasmMatMul('fixed', () => tf.getKernel('BatchMatMul', 'wasm'));
    expect(inside).not.toBe(nativeKernel);
    expect(withWasmMatMul('original', () => withWasmMatMul('native', () => tf.getKernel('BatchMatMul', 'wasm')))).toBe(nativeKernel);
    expect(tf.getKernel('BatchMatMul', 'wasm')).toBe(nativeKernel);
  });

  it('runs every product in one OpenBLAS call, transposes as flags, no wasm Transpose', () => {
    const calls: string[] = [];
    const sgemm = native.sgemm!;
    enableNativeWasmMatMul({
      sgemm: (...args: Parameters<NativeSgemmLike['sgemm']>) => {
        calls.push(`sgemm ${args[0] ? 'T' : 'N'}${args[1] ? 'T' : 'N'} ${args[2]}x${args[3]}x${args[4]}`);
        sgemm.sgemm(...args);
      },
      sgemmBatched: (...args: Parameters<NativeSgemmLike['sgemmBatched']>) => {
        calls.push(
          `batched ${args[0] ? 'T' : 'N'}${args[1] ? 'T' : 'N'} ${args[2]}x${args[3]}x${args[4]} x${args[19]} strides ${[args[8], args[12]].map((x) => (typeof x === 'number' ? x : `[${x.join(',')}]`)).join(' ')}`,
        );
        sgemm.sgemmBatched(...args);
      },
    });
    const transpose = tf.getKernel('Transpose', 'wasm')!;
    let transposes = 0;
    tf.unregisterKernel('Transpose', 'wasm');
    tf.registerKernel({ ...transpose, kernelFunc: (args) => (transposes++, transpose.kernelFunc(args)) });
    try {
      tf.tidy(() => {
        tf.matMul(operand([7, 5], 1), operand([3, 7], 2), true, true);
        tf.matMul(operand([4, 5, 7], 1), operand([4, 3, 7], 2), false, true);
        tf.matMul(operand([2, 3, 5, 7], 1), operand([7, 4], 2));
        tf.matMul(operand([2, 7, 5], 1), operand([7, 4], 2), true, false);
        tf.matMul(operand([2, 1, 5, 7], 1), operand([1, 3, 7, 4], 2));
        tf.fused.matMul({ a: operand([2, 5, 7], 1), b: operand([4, 7], 2), transposeB: true, bias: operand([4], 3), activation: 'relu' });
      });
    } finally {
      tf.unregisterKernel('Transpose', 'wasm');
      tf.registerKernel(transpose);
      enableNativeWasmMatMul(sgemm);
    }
    expect(transposes).toBe(0);
    expect(calls).toEqual([
      'sgemm TT 5x3x7',
      'batched NT 5x3x7 x4 strides 35 21',
      'sgemm NN 30x4x7', // [2, 3] batches folded into the rows
      'batched TN 5x4x7 x2 strides 35 0', // a transposed cannot fold: b broadcast with stride 0
      'batched NN 5x4x7 x6 strides [0,0,0,35,35,35] [0,28,56,0,28,56]',
      'sgemm NT 10x4x7',
    ]);
  });

  // Random products against tfjs's own wasm kernels (XNNPACK), which are right for these shapes.
  const flags: Array<[boolean, boolean]> = [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ];
  const dims: Array<[number, number, number]> = [
    [1, 1, 1],
    [5, 7, 3],
    [33, 17, 65],
    [128, 96, 64],
  ];
  for (const [m, k, n] of dims) {
    for (const [ta, tb] of flags) {
      it(`2-D ${m}x${k}x${n}, transposeA=${ta}, transposeB=${tb}: equals the original wasm kernel`, () => {
        const a = ta ? [k, m] : [m, k];
        const b = tb ? [n, k] : [k, n];
        const out = expectNativeMatches(() => tf.matMul(operand(a, m + k), operand(b, n + 7), ta, tb), 'original');
        expect(out.shape).toEqual([m, n]);
      });
    }
  }

  // Batch shapes: equal, broadcast from 1 on either side, missing on either side, broadcast on both
  // sides (which the original kernel gets wrong: compared with the fixed kernels, exact to cpu).
  const [M, K, N] = [6, 9, 5];
  const batches: Array<{ name: string; a: number[]; b: number[]; originalRight: boolean }> = [
    { name: '[4] x [4]', a: [4], b: [4], originalRight: true },
    { name: '[1] x [4]', a: [1], b: [4], originalRight: true },
    { name: '[4] x [1]', a: [4], b: [1], originalRight: true },
    { name: '[2, 3] x none (b folded)', a: [2, 3], b: [], originalRight: true },
    { name: 'none x [2, 3]', a: [], b: [2, 3], originalRight: true },
    { name: '[2, 1] x [1, 3] (both broadcast)', a: [2, 1], b: [1, 3], originalRight: false },
    { name: '[2, 3, 4] x [3, 1]', a: [2, 3, 4], b: [3, 1], originalRight: false },
  ];
  for (const batch of batches) {
    for (const [ta, tb] of flags) {
      it(`batched ${batch.name}, transposeA=${ta}, transposeB=${tb}: equals the ${batch.originalRight ? 'original' : 'fixed'} kernel`, () => {
        const a = [...batch.a, ...(ta ? [K, M] : [M, K])];
        const b = [...batch.b, ...(tb ? [N, K] : [K, N])];
        expectNativeMatches(() => tf.matMul(operand(a, 3), operand(b, 4), ta, tb), batch.originalRight ? 'original' : 'fixed');
      });
    }
  }

  it('attention-sized batched products equal the original kernel', () => {
    const q = [2, 4, 64, 32];
    const k = [2, 4, 96, 32];
    expectNativeMatches(() => tf.matMul(operand(q, 5), operand(k, 6), false, true), 'original');
    expectNativeMatches(() => tf.matMul(operand([2, 4, 64, 96], 7), operand(k, 8)), 'original');
    expectNativeMatches(() => tf.matMul(operand([2, 4, 64, 96], 9), operand(q, 10), true, false), 'original');
  });

  it('empty products: zero rows, zero columns, an empty batch, and zero inner size (all zeros)', () => {
    // An inner size of 0 must give exact zeros, not uninitialised memory (the original wasm kernel
    // returns garbage for [3, 0] x [0, 5]).
    for (const [a, b, out] of [
      [
        [0, 4],
        [4, 3],
        [0, 3],
      ],
      [
        [2, 4],
        [4, 0],
        [2, 0],
      ],
      [
        [0, 2, 4],
        [0, 4, 3],
        [0, 2, 3],
      ],
      [
        [3, 0],
        [0, 5],
        [3, 5],
      ],
      [
        [2, 3, 0],
        [0, 5],
        [2, 3, 5],
      ],
      [
        [64, 0],
        [0, 64],
        [64, 64],
      ],
    ] as Array<[number[], number[], number[]]>) {
      const got = run('native', () => tf.matMul(tf.ones(a), tf.ones(b)));
      expect(got.shape).toEqual(out);
      expect(got.values.every((v) => v === 0)).toBe(true);
    }
  });

  // _FusedMatMul: the bias and activation run with the fixed kernels' code; compared with the fixed
  // kernels (the original gets batched and broadcast biases wrong).
  const activations = ['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu', 'prelu'] as const;
  const fusedCases: Array<{ name: string; a: number[]; b: number[]; bias?: number[] }> = [
    { name: '2-D, [N] bias', a: [M, K], b: [N, K], bias: [N] },
    { name: 'a batched, b not, [N] bias', a: [3, M, K], b: [N, K], bias: [N] },
    { name: 'both batched, [1] bias', a: [3, M, K], b: [3, N, K], bias: [1] },
    { name: 'a batch of 1 against 3, [M, N] bias', a: [1, M, K], b: [3, N, K], bias: [M, N] },
    { name: 'no bias', a: [4, M, K], b: [4, N, K] },
  ];
  for (const c of fusedCases) {
    for (const activation of activations) {
      it(`fused ${c.name}, ${activation}, transposeB: equals the fixed kernel`, () => {
        expectNativeMatches(
          () =>
            tf.fused.matMul({
              a: operand(c.a, 11),
              b: operand(c.b, 12),
              transposeB: true,
              bias: c.bias === undefined ? undefined : operand(c.bias, 13),
              activation,
              preluActivationWeights: activation === 'prelu' ? operand([N], 14) : undefined,
              leakyreluAlpha: 0.2,
            }),
          'fixed',
        );
      });
    }
  }

  it('fused 2-D with transposeA and a [N] bias, relu: equals the fixed kernel (and the original without bias)', () => {
    // The original gets this one wrong (errors of order 1 with the bias; the fixed kernel
    // transposes explicitly and is right): compared with it only without bias.
    const out = expectNativeMatches(
      () =>
        tf.fused.matMul({ a: operand([K, M], 15), b: operand([K, N], 16), transposeA: true, bias: operand([N], 17), activation: 'relu' }),
      'fixed',
    );
    expect(Math.min(...out.values)).toBe(0);
    expectNativeMatches(
      () => tf.fused.matMul({ a: operand([K, M], 15), b: operand([K, N], 16), transposeA: true, activation: 'relu' }),
      'original',
    );
  });

  it('int32 operands go to the wasm kernels, with their error', () => {
    const product = () => tf.tidy(() => tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32'), tf.tensor2d([1, 0, 2, 1], [2, 2], 'int32')));
    const message = (kind: WasmMatMulKind) => {
      try {
        withWasmMatMul(kind, product).dispose();
        return 'no error';
      } catch (e) {
        return e instanceof Error ? e.message : String(e);
      }
    };
    expect(message('native')).toBe(message('fixed'));
  });

  it("inner shapes that do not match still throw tfjs's error, leaking nothing", () => {
    const a = operand([3, 16, 32], 21);
    const b = operand([3, 31, 40], 22);
    const before = liveCounts();
    expect(() => tf.matMul(a, b)).toThrow(/inner shapes/);
    expect(liveCounts()).toEqual(before);
    tf.dispose([a, b]);
  });

  it('stays right when an output allocation grows the wasm memory (the heap view is taken after it)', () => {
    const backend = tf.engine().registry['wasm'] as unknown as { wasm: { HEAPU8: Uint8Array } };
    const startBytes = backend.wasm.HEAPU8.buffer.byteLength;
    const a = operand([256, 64], 31);
    const b = operand([64, 256], 32);
    const expected = run('original', () => tf.matMul(a, b));
    // Products with ever larger outputs until the memory has grown at least once.
    let grown = false;
    const keep: tf.Tensor[] = [];
    for (let i = 0; i < 64 && !grown; i++) {
      keep.push(tf.matMul(operand([1024, 64], 40 + i), operand([64, 1024], 41)));
      grown = backend.wasm.HEAPU8.buffer.byteLength > startBytes;
      const got = tf.matMul(a, b);
      expect(relativeError(got.dataSync(), expected.values)).toBeLessThanOrEqual(1e-5);
      got.dispose();
    }
    expect(grown).toBe(true);
    // The last big product was computed into (and is readable from) the grown memory.
    const last = keep[keep.length - 1]!;
    expect(Number.isFinite(last.dataSync()[0])).toBe(true);
    tf.dispose(keep);
    tf.dispose([a, b]);
  });

  it('the gradients of a small model equal those with the wasm kernels (fixed and original)', () => {
    const [batch, seq, dim, hidden, heads] = [2, 16, 24, 40, 3];
    const headDim = dim / heads;
    const x = randomFloats(batch * seq * dim, 51);
    const weights = {
      wq: randomFloats(dim * dim, 52),
      wk: randomFloats(dim * dim, 53),
      w1: randomFloats(dim * hidden, 54),
      b1: randomFloats(hidden, 55),
      w2: randomFloats(hidden * dim, 56),
    };
    // Attention scores (batched, transposed), softmax, a context product, then an MLP with a fused
    // bias + relu: the gradients run every transposed and batched variant.
    const grads = () => {
      const loss = (wq: tf.Tensor, wk: tf.Tensor, w1: tf.Tensor, b1: tf.Tensor, w2: tf.Tensor) => {
        // 2-D projections: tfjs-core's matMul gradient does not reduce a broadcast (batch-less) b.
        const input = tf.tensor2d(x, [batch * seq, dim]);
        const split = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [batch, seq, heads, headDim]), [0, 2, 1, 3]);
        const q = split(tf.matMul(input, wq));
        const k = split(tf.matMul(input, wk));
        const probs = tf.softmax(tf.div(tf.matMul(q, k, false, true), Math.sqrt(headDim)));
        const context = tf.reshape(tf.transpose(tf.matMul(probs, k), [0, 2, 1, 3]), [batch * seq, dim]);
        const h = tf.fused.matMul({ a: context, b: w1, bias: b1, activation: 'relu' });
        return tf.mean(tf.square(tf.matMul(h, w2, false, false)));
      };
      const params = [
        tf.tensor2d(weights.wq, [dim, dim]),
        tf.tensor2d(weights.wk, [dim, dim]),
        tf.tensor2d(weights.w1, [dim, hidden]),
        tf.tensor1d(weights.b1),
        tf.tensor2d(weights.w2, [hidden, dim]),
      ];
      return tf.grads(loss as (...args: tf.Tensor[]) => tf.Tensor)(params);
    };
    const collect = (kind: WasmMatMulKind) =>
      withWasmMatMul(kind, () => {
        const gs = tf.tidy(grads);
        const values = gs.map((g) => g.dataSync() as Float32Array);
        tf.dispose(gs);
        return values;
      });
    const got = collect('native');
    for (const reference of ['fixed', 'original'] as const) {
      const want = collect(reference);
      got.forEach((g, i) => expect(relativeError(g, want[i]!), `${reference} gradient ${i}`).toBeLessThanOrEqual(1e-5));
    }
  });

  it('leaks no tensor, byte or wasm buffer', () => {
    const q = operand([2, 3, 16, 8], 61);
    const k = operand([2, 3, 20, 8], 62);
    const w = operand([8, 8], 63);
    const bias = operand([8], 64);
    const before = liveCounts();
    for (let i = 0; i < 3; i++) {
      tf.dispose(tf.matMul(q, k, false, true));
      tf.dispose(tf.matMul(q, q, true, false));
      tf.dispose(tf.matMul(q, w));
      tf.dispose(tf.fused.matMul({ a: q, b: w, transposeB: true, bias, activation: 'relu' }));
      tf.dispose(
        tf.tidy(() => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.matMul(tf.softmax(tf.matMul(a, b, false, true)), b)))([q, k])),
      );
    }
    expect(liveCounts()).toEqual(before);
    tf.dispose([q, k, w, bias]);
  });

  it('disableNativeWasmMatMul restores the fixed kernels', () => {
    const nativeKernel = tf.getKernel('BatchMatMul', 'wasm');
    disableNativeWasmMatMul();
    expect(activeWasmMatMul()).toBe('fixed');
    expect(tf.getKernel('BatchMatMul', 'wasm')).not.toBe(nativeKernel);
    expect(() => withWasmMatMul('native', () => 1)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    enableNativeWasmMatMul(native.sgemm!);
    expect(activeWasmMatMul()).toBe('native');
  });
});
