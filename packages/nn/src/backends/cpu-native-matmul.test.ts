import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../register-gradients.js';
import { disableNativeCpuMatMul, enableNativeCpuMatMul, nativeCpuMatMulActive } from './cpu-native-matmul.js';
import type { NativeSgemmLike } from './matmul-plan.js';
import { initBackend } from './select-backend.js';

// The OpenBLAS kernels need the optional @bytelatent/native-sgemm addon. Where it is missing or not
// built, the comparisons are skipped and the reason is logged (as the wasm native tests do).
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
if (native.sgemm === undefined) console.warn(`cpu native matmul tests skipped: ${native.reason}`);

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

/** Largest |x − y| relative to the largest |y| (summation order only changes float32 rounding). */
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

interface Result {
  shape: number[];
  dtype: string;
  values: Float32Array | Int32Array;
}

/** Selects the cpu backend with its matmuls on OpenBLAS (`native`) or its own kernels. */
async function useCpu(nativeKernels: boolean): Promise<void> {
  const info = await initBackend({ backend: 'cpu', nativeMatMul: nativeKernels ? 'auto' : 'off' });
  expect(info.name).toBe('cpu');
  expect(info.nativeMatMul?.active).toBe(nativeKernels);
  expect(nativeCpuMatMulActive()).toBe(nativeKernels);
}

/** `fn`'s single output (everything disposed) with the native or the cpu backend's own kernels. */
async function run(nativeKernels: boolean, fn: () => tf.Tensor): Promise<Result> {
  await useCpu(nativeKernels);
  const out = tf.tidy(fn);
  const result = { shape: out.shape.slice(), dtype: out.dtype, values: out.dataSync() as Float32Array | Int32Array };
  out.dispose();
  return result;
}

/**
 * Native equals the cpu backend's own kernel (on `reference`, default `fn` itself): same shape and
 * dtype, values within `tol` relative.
 */
async function expectSame(fn: () => tf.Tensor, tol = 1e-5, reference: () => tf.Tensor = fn): Promise<Result> {
  const got = await run(true, fn);
  const want = await run(false, reference);
  expect(got.shape).toEqual(want.shape);
  expect(got.dtype).toBe(want.dtype);
  expect(relativeError(got.values, want.values)).toBeLessThanOrEqual(tol);
  return got;
}

/** The message `fn` throws (or 'no error'). */
function messageOf(fn: () => unknown): string {
  try {
    tf.dispose(fn() as tf.Tensor);
    return 'no error';
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

function liveCounts(): { tensors: number; dataIds: number; bytes: number } {
  return { tensors: tf.memory().numTensors, dataIds: tf.engine().backend.numDataIds(), bytes: tf.memory().numBytes };
}

/** Runs `fn` with the native kernels calling a recording wrapper of OpenBLAS; returns the calls. */
async function recordCalls(fn: () => void): Promise<string[]> {
  // Leave initBackend's state consistent: 'off' selected, then our wrapper enabled by hand.
  await useCpu(false);
  const sgemm = native.sgemm!;
  const calls: string[] = [];
  enableNativeCpuMatMul({
    sgemm: (...args: Parameters<NativeSgemmLike['sgemm']>) => {
      calls.push(`sgemm ${args[0] ? 'T' : 'N'}${args[1] ? 'T' : 'N'} ${args[2]}x${args[3]}x${args[4]}`);
      sgemm.sgemm(...args);
    },
    sgemmBatched: (...args: Parameters<NativeSgemmLike['sgemmBatched']>) => {
      const stride = (x: number | Int32Array) => (typeof x === 'number' ? String(x) : `[${Array.from(x).join(',')}]`);
      calls.push(
        `batched ${args[0] ? 'T' : 'N'}${args[1] ? 'T' : 'N'} ${args[2]}x${args[3]}x${args[4]} x${args[19]} strides ${stride(args[8])} ${stride(args[12])}`,
      );
      sgemm.sgemmBatched(...args);
    },
  });
  try {
    fn();
  } finally {
    disableNativeCpuMatMul();
  }
  return calls;
}

const flags: Array<[boolean, boolean]> = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];

describe.skipIf(native.sgemm === undefined)('OpenBLAS BatchMatMul on the cpu backend', () => {
  beforeAll(async () => {
    await useCpu(true);
  });
  afterAll(async () => {
    await useCpu(false);
  });

  it("is registered by initBackend({ backend: 'cpu' }), and nativeMatMul: 'off' restores the cpu kernels", async () => {
    await useCpu(true);
    const nativeKernel = tf.getKernel('BatchMatMul', 'cpu');
    const nativeFused = tf.getKernel('_FusedMatMul', 'cpu');
    await useCpu(false);
    const own = tf.getKernel('BatchMatMul', 'cpu');
    expect(own).not.toBe(nativeKernel);
    expect(tf.getKernel('_FusedMatMul', 'cpu')).not.toBe(nativeFused);
    // Disabling twice is harmless; enabling again replaces the kernels, keeping the originals.
    disableNativeCpuMatMul();
    expect(tf.getKernel('BatchMatMul', 'cpu')).toBe(own);
    await useCpu(true);
    await useCpu(false);
    expect(tf.getKernel('BatchMatMul', 'cpu')).toBe(own);
  });

  it('runs products as single OpenBLAS calls (transposes as flags, folds, strides and offsets)', async () => {
    const calls = await recordCalls(() =>
      tf.tidy(() => {
        tf.matMul(operand([7, 5], 1), operand([3, 7], 2), true, true);
        tf.matMul(operand([4, 5, 7], 1), operand([4, 3, 7], 2), false, true);
        tf.matMul(operand([2, 3, 5, 7], 1), operand([7, 4], 2));
        tf.matMul(operand([2, 7, 5], 1), operand([7, 4], 2), true, false);
        tf.matMul(operand([2, 1, 5, 7], 1), operand([1, 3, 7, 4], 2));
        tf.matMul(operand([5, 7], 1), operand([3, 7, 4], 2));
        tf.fused.matMul({ a: operand([2, 5, 7], 1), b: operand([4, 7], 2), transposeB: true });
      }),
    );
    expect(calls).toEqual([
      'sgemm TT 5x3x7',
      'batched NT 5x3x7 x4 strides 35 21',
      'sgemm NN 30x4x7',
      'batched TN 5x4x7 x2 strides 35 0',
      'batched NN 5x4x7 x6 strides [0,0,0,35,35,35] [0,28,56,0,28,56]',
      'batched NN 5x4x7 x3 strides 0 28',
      'sgemm NT 10x4x7',
    ]);
  });

  it('leaves int32 operands, fused bias and activations to the cpu kernels (no OpenBLAS call)', async () => {
    const calls = await recordCalls(() =>
      tf.tidy(() => {
        tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32'), tf.tensor2d([1, 0, 2, 1], [2, 2], 'int32'));
        tf.fused.matMul({ a: operand([3, 4], 1), b: operand([4, 2], 2), bias: operand([2], 3) });
        tf.fused.matMul({ a: operand([3, 4], 1), b: operand([4, 2], 2), activation: 'relu' });
        // An empty product needs no call either.
        tf.matMul(tf.zeros([0, 4]), operand([4, 3], 4));
      }),
    );
    expect(calls).toEqual([]);
  });

  const dims: Array<[number, number, number]> = [
    [1, 1, 1],
    [5, 7, 3],
    [33, 17, 65],
    [96, 64, 80],
  ];
  for (const [m, k, n] of dims) {
    for (const [ta, tb] of flags) {
      it(`2-D ${m}x${k}x${n}, transposeA=${ta}, transposeB=${tb}`, async () => {
        const a = ta ? [k, m] : [m, k];
        const b = tb ? [n, k] : [k, n];
        const out = await expectSame(() => tf.matMul(operand(a, m + k), operand(b, n + 7), ta, tb));
        expect(out.shape).toEqual([m, n]);
      });
    }
  }

  const [M, K, N] = [6, 9, 5];
  // `cpuRight`: tfjs's own cpu kernel computes these right; it gets batch shapes that broadcast on
  // both sides wrong (e.g. [2, 1] against [1, 3]: it indexes each operand's batch modulo its size,
  // and even returns fewer values than its output shape holds), so those are compared with the cpu
  // kernel on operands broadcast explicitly (tf.broadcastTo) to the output's batch shape.
  const batches: Array<{ name: string; a: number[]; b: number[]; out: number[]; cpuRight: boolean }> = [
    { name: '[4] x [4] (equal batches)', a: [4], b: [4], out: [4], cpuRight: true },
    { name: '[2, 3] x [2, 3]', a: [2, 3], b: [2, 3], out: [2, 3], cpuRight: true },
    { name: '[1] x [4]', a: [1], b: [4], out: [4], cpuRight: true },
    { name: '[4] x [1]', a: [4], b: [1], out: [4], cpuRight: true },
    { name: '[2, 3] x none (b folded)', a: [2, 3], b: [], out: [2, 3], cpuRight: true },
    { name: 'none x [2, 3]', a: [], b: [2, 3], out: [2, 3], cpuRight: true },
    { name: '[2, 1] x [1, 3] (both broadcast)', a: [2, 1], b: [1, 3], out: [2, 3], cpuRight: false },
    { name: '[2, 3, 4] x [3, 1]', a: [2, 3, 4], b: [3, 1], out: [2, 3, 4], cpuRight: false },
    { name: '[3, 1] x [2, 1, 4]', a: [3, 1], b: [2, 1, 4], out: [2, 3, 4], cpuRight: false },
    { name: '[1, 1] x [1, 1] (one batch, rank 4)', a: [1, 1], b: [1, 1], out: [1, 1], cpuRight: true },
  ];
  for (const batch of batches) {
    for (const [ta, tb] of flags) {
      it(`batched ${batch.name}, transposeA=${ta}, transposeB=${tb}`, async () => {
        const a = [...batch.a, ...(ta ? [K, M] : [M, K])];
        const b = [...batch.b, ...(tb ? [N, K] : [K, N])];
        const product = () => tf.matMul(operand(a, 3), operand(b, 4), ta, tb);
        // The same product on operands with every batch written out: a case the cpu kernel gets right.
        const explicit = () =>
          tf.matMul(
            tf.broadcastTo(operand(a, 3), [...batch.out, ...a.slice(-2)]),
            tf.broadcastTo(operand(b, 4), [...batch.out, ...b.slice(-2)]),
            ta,
            tb,
          );
        const out = await expectSame(product, 1e-5, explicit);
        expect(out.shape).toEqual([...batch.out, M, N]);
        if (batch.cpuRight) await expectSame(product);
      });
    }
  }

  it("documents tfjs's cpu kernel on batches broadcast on both sides: wrong there, where the native kernel is right", async () => {
    const product = () => tf.matMul(operand([2, 1, M, K], 3), operand([1, 3, K, N], 4));
    const own = await run(false, product);
    const nat = await run(true, product);
    expect(nat.values.length).toBe(2 * 3 * M * N);
    expect(own.shape).toEqual([2, 3, M, N]);
    // tfjs 4.22's cpu kernel returns half the values its shape says (kept as a canary: if tfjs
    // fixes it, this expectation fails and the cpuRight flags above can be revisited).
    expect(own.values.length).not.toBe(2 * 3 * M * N);
  });

  it('attention-sized batched products', async () => {
    const q = [2, 4, 64, 32];
    const k = [2, 4, 96, 32];
    await expectSame(() => tf.matMul(operand(q, 5), operand(k, 6), false, true));
    await expectSame(() => tf.matMul(operand([2, 4, 64, 96], 7), operand(k, 8)));
    await expectSame(() => tf.matMul(operand([2, 4, 64, 96], 9), operand(q, 10), true, false));
  });

  it('reads operands that are views of other tensors (reshape, slice, clone) and tensors made from a user array', async () => {
    const data = randomFloats(4 * 6 * 5, 61);
    await expectSame(() => tf.matMul(tf.reshape(tf.tensor1d(data), [4, 6, 5]), operand([5, 3], 62)));
    await expectSame(() => tf.matMul(tf.slice(tf.tensor3d(data, [4, 6, 5]), [1, 0, 0], [2, 6, 5]), operand([2, 5, 3], 63)));
    await expectSame(() => tf.matMul(tf.clone(tf.tensor2d(data.subarray(0, 30), [6, 5])), tf.transpose(operand([3, 5], 64))));
    // The result of one native product feeds the next.
    await expectSame(() => tf.matMul(tf.matMul(operand([6, 5], 65), operand([5, 4], 66)), operand([4, 3], 67)));
  });

  it('empty products: zero rows, columns, batches, and a zero inner size giving exact zeros', async () => {
    for (const [a, b, out, ta, tb] of [
      [[0, 4], [4, 3], [0, 3], false, false],
      [[2, 4], [4, 0], [2, 0], false, false],
      [[0, 2, 4], [0, 4, 3], [0, 2, 3], false, false],
      [[3, 0], [0, 5], [3, 5], false, false],
      [[0, 3], [0, 5], [3, 5], true, false],
      [[3, 0], [5, 0], [3, 5], false, true],
      [[0, 3], [5, 0], [3, 5], true, true],
      [[2, 3, 0], [0, 5], [2, 3, 5], false, false],
      [[2, 3, 0], [2, 0, 5], [2, 3, 5], false, false],
      [[64, 0], [0, 64], [64, 64], false, false],
    ] as Array<[number[], number[], number[], boolean, boolean]>) {
      const got = await run(true, () => tf.matMul(tf.ones(a), tf.ones(b), ta, tb));
      const want = await run(false, () => tf.matMul(tf.ones(a), tf.ones(b), ta, tb));
      expect(got.shape, `${a} x ${b}`).toEqual(out);
      expect(want.shape).toEqual(out);
      expect(got.values.every((v) => v === 0)).toBe(true);
      expect(Array.from(got.values)).toEqual(Array.from(want.values));
    }
    // Both batches broadcast, inner size 0 (the cpu kernel is wrong on such batches, see above).
    const got = await run(true, () => tf.matMul(tf.ones([2, 1, 3, 0]), tf.ones([1, 2, 0, 5])));
    expect(got.shape).toEqual([2, 2, 3, 5]);
    expect(got.values.length).toBe(60);
    expect(got.values.every((v) => v === 0)).toBe(true);
  });

  it('int32 operands fall back: the same int32 result (or the same error) as the cpu kernel', async () => {
    const product = () => tf.matMul(tf.tensor3d([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2], 'int32'), tf.tensor2d([1, 0, 2, 1], [2, 2], 'int32'));
    await useCpu(true);
    const nativeMessage = messageOf(() => tf.tidy(product));
    await useCpu(false);
    const ownMessage = messageOf(() => tf.tidy(product));
    expect(nativeMessage).toBe(ownMessage);
    if (nativeMessage === 'no error') {
      const got = await run(true, product);
      const want = await run(false, product);
      expect(got.dtype).toBe(want.dtype);
      expect(got.shape).toEqual(want.shape);
      expect(Array.from(got.values)).toEqual(Array.from(want.values));
    }
    // Mixed float32 × int32 as well (tfjs casts or refuses: the same either way).
    const mixed = () => tf.matMul(operand([2, 3], 1), tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2], 'int32'));
    await useCpu(true);
    const mixedNative = messageOf(() => tf.tidy(mixed));
    await useCpu(false);
    expect(mixedNative).toBe(messageOf(() => tf.tidy(mixed)));
  });

  it("mismatched shapes give tfjs's error, leaking nothing (through tf.matMul and straight to the kernel)", async () => {
    const cases: Array<{ a: number[]; b: number[]; ta?: boolean; tb?: boolean }> = [
      { a: [3, 16, 32], b: [3, 31, 40] },
      { a: [4, 5], b: [6, 7] },
      { a: [4, 5], b: [4, 7], ta: false, tb: true },
      { a: [2, 4, 5], b: [3, 5, 7] }, // batches that do not broadcast
      { a: [2, 1, 4, 5], b: [3, 2, 5, 7] },
    ];
    for (const c of cases) {
      const messages: string[][] = [];
      for (const nativeKernels of [true, false]) {
        await useCpu(nativeKernels);
        const a = operand(c.a, 21);
        const b = operand(c.b, 22);
        const before = liveCounts();
        const viaOp = messageOf(() => tf.matMul(a, b, c.ta, c.tb));
        const viaKernel = messageOf(() =>
          tf.engine().runKernel('BatchMatMul', { a, b }, { transposeA: c.ta ?? false, transposeB: c.tb ?? false }),
        );
        expect(liveCounts()).toEqual(before);
        tf.dispose([a, b]);
        messages.push([viaOp, viaKernel]);
      }
      expect(messages[0]![0], `${c.a} x ${c.b}`).not.toBe('no error');
      expect(messages[0]).toEqual(messages[1]);
    }
  });

  it('gradients through tf.matMul (every transpose, batched and broadcast) equal those with the cpu kernels', async () => {
    const cases: Array<{ a: number[]; b: number[]; ta: boolean; tb: boolean }> = [
      { a: [6, 5], b: [5, 4], ta: false, tb: false },
      { a: [5, 6], b: [5, 4], ta: true, tb: false },
      { a: [6, 5], b: [4, 5], ta: false, tb: true },
      { a: [5, 6], b: [4, 5], ta: true, tb: true },
      { a: [3, 6, 5], b: [3, 5, 4], ta: false, tb: false },
      { a: [3, 5, 6], b: [3, 4, 5], ta: true, tb: true },
      { a: [2, 3, 6, 5], b: [2, 3, 4, 5], ta: false, tb: true },
    ];
    for (const c of cases) {
      const grads = async (nativeKernels: boolean) => {
        await useCpu(nativeKernels);
        return tf.tidy(() => {
          const a = operand(c.a, 31);
          const b = operand(c.b, 32);
          const w = operand(tf.matMul(tf.zeros(c.a), tf.zeros(c.b), c.ta, c.tb).shape, 33);
          const f = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.square(tf.matMul(x, y, c.ta, c.tb)), w));
          return tf
            .grads(f)([a, b])
            .map((g) => ({ shape: g.shape, values: g.dataSync() as Float32Array }));
        });
      };
      const got = await grads(true);
      const want = await grads(false);
      for (let i = 0; i < 2; i++) {
        expect(got[i]!.shape, `${c.a} x ${c.b} grad ${i}`).toEqual(want[i]!.shape);
        expect(relativeError(got[i]!.values, want[i]!.values), `${c.a} x ${c.b} grad ${i}`).toBeLessThanOrEqual(1e-5);
      }
    }
  });

  it('the gradients of a small attention + MLP model equal those with the cpu kernels', async () => {
    const [batch, seq, dim, hidden, heads] = [2, 12, 24, 40, 3];
    const headDim = dim / heads;
    const x = randomFloats(batch * seq * dim, 51);
    const grads = async (nativeKernels: boolean) => {
      await useCpu(nativeKernels);
      return tf.tidy(() => {
        const params = [
          operand([dim, dim], 52),
          operand([dim, dim], 53),
          operand([dim, hidden], 54),
          operand([hidden], 55),
          operand([hidden, dim], 56),
        ];
        const loss = (wq: tf.Tensor, wk: tf.Tensor, w1: tf.Tensor, b1: tf.Tensor, w2: tf.Tensor) => {
          const input = tf.tensor2d(x, [batch * seq, dim]);
          const split = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [batch, seq, heads, headDim]), [0, 2, 1, 3]);
          const q = split(tf.matMul(input, wq));
          const k = split(tf.matMul(input, wk));
          const probs = tf.softmax(tf.div(tf.matMul(q, k, false, true), Math.sqrt(headDim)));
          const context = tf.reshape(tf.transpose(tf.matMul(probs, k), [0, 2, 1, 3]), [batch * seq, dim]);
          const h = tf.fused.matMul({ a: context, b: w1, bias: b1, activation: 'relu' });
          return tf.mean(tf.square(tf.fused.matMul({ a: h, b: w2 })));
        };
        return tf
          .grads(loss as (...args: tf.Tensor[]) => tf.Tensor)(params)
          .map((g) => g.dataSync() as Float32Array);
      });
    };
    const got = await grads(true);
    const want = await grads(false);
    got.forEach((g, i) => expect(relativeError(g, want[i]!), `param ${i}`).toBeLessThanOrEqual(1e-4));
  });

  const activations = ['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu', 'prelu'] as const;
  const fusedCases: Array<{ name: string; a: number[]; b: number[]; bias?: number[]; ta?: boolean }> = [
    { name: '2-D, [N] bias', a: [M, K], b: [N, K], bias: [N] },
    { name: '2-D transposeA, [N] bias', a: [K, M], b: [N, K], bias: [N], ta: true },
    { name: 'a batched, b not, [N] bias', a: [3, M, K], b: [N, K], bias: [N] },
    { name: 'both batched, [1] bias', a: [3, M, K], b: [3, N, K], bias: [1] },
    { name: 'a batch of 1 against 3, [M, N] bias', a: [1, M, K], b: [3, N, K], bias: [M, N] },
    { name: 'no bias', a: [4, M, K], b: [4, N, K] },
  ];
  for (const c of fusedCases) {
    for (const activation of activations) {
      it(`tf.fused.matMul ${c.name}, ${activation}`, async () => {
        await expectSame(() =>
          tf.fused.matMul({
            a: operand(c.a, 11),
            b: operand(c.b, 12),
            transposeA: c.ta ?? false,
            transposeB: true,
            bias: c.bias === undefined ? undefined : operand(c.bias, 13),
            activation,
            preluActivationWeights: activation === 'prelu' ? operand([N], 14) : undefined,
            leakyreluAlpha: 0.2,
          }),
        );
      });
    }
  }

  it('gradients through tf.fused.matMul with a bias and relu equal those with the cpu kernels', async () => {
    const grads = async (nativeKernels: boolean) => {
      await useCpu(nativeKernels);
      return tf.tidy(() => {
        const f = (a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor) =>
          tf.sum(tf.square(tf.fused.matMul({ a, b, bias, activation: 'relu', transposeB: true })));
        return tf
          .grads(f)([operand([M, K], 71), operand([N, K], 72), operand([N], 73)])
          .map((g) => g.dataSync() as Float32Array);
      });
    };
    const got = await grads(true);
    const want = await grads(false);
    got.forEach((g, i) => expect(relativeError(g, want[i]!), `input ${i}`).toBeLessThanOrEqual(1e-5));
  });

  it('leaks no tensor and no backend data over repeated products, gradients and fallbacks', async () => {
    await useCpu(true);
    const a = operand([3, 8, 6], 81);
    const b = operand([6, 5], 82);
    const c = operand([2, 1, 8, 6], 83);
    const d = operand([1, 3, 6, 5], 84);
    const bias = operand([5], 85);
    const e = operand([3, 4, 6], 87);
    const once = () => {
      tf.matMul(a, b).dispose();
      tf.matMul(c, d).dispose();
      tf.matMul(a, b, false, false).dispose();
      tf.dispose(tf.tidy(() => tf.matMul(a, operand([3, 5, 6], 86), false, true)));
      tf.fused.matMul({ a, b, bias, activation: 'relu' }).dispose();
      tf.fused.matMul({ a, b }).dispose();
      tf.dispose(tf.tidy(() => tf.matMul(tf.zeros([0, 6]), b)));
      tf.dispose(tf.tidy(() => tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32'), tf.tensor2d([1, 0, 2, 1], [2, 2], 'int32'))));
      tf.dispose(tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.matMul(x, y, false, true)))([a, e]));
      // A shape error in the middle of a tidy.
      expect(() => tf.tidy(() => tf.matMul(a, b, true, false))).toThrow();
    };
    once();
    const before = liveCounts();
    for (let i = 0; i < 5; i++) once();
    expect(liveCounts()).toEqual(before);
    tf.dispose([a, b, c, d, e, bias]);
  });
});
