import * as tf from '@tensorflow/tfjs-core';
// tfjs's own cpu kernel (the package has no exports map), to compare against.
import { unsortedSegmentSumConfig as tfjsCpuKernel } from '@tensorflow/tfjs-backend-cpu/dist/kernels/UnsortedSegmentSum.js';
import { beforeAll, describe, expect, it } from 'vitest';
import '../register-gradients.js';
import { seededUniform } from '../layers/init.js';
import { registerCpuKernels } from './cpu-kernels.js';

beforeAll(async () => {
  expect(await tf.setBackend('cpu')).toBe(true);
});

/** Runs `fn` with tfjs's own cpu UnsortedSegmentSum registered, then ours again. */
function withTfjsKernel<T>(fn: () => T): T {
  const ours = tf.getKernel('UnsortedSegmentSum', 'cpu')!;
  tf.unregisterKernel('UnsortedSegmentSum', 'cpu');
  tf.registerKernel(tfjsCpuKernel);
  try {
    return fn();
  } finally {
    tf.unregisterKernel('UnsortedSegmentSum', 'cpu');
    tf.registerKernel(ours);
  }
}

function randomFloats(n: number, seed: number): Float32Array {
  const random = seededUniform(seed);
  return Float32Array.from({ length: n }, () => random() * 2 - 1);
}

describe('UnsortedSegmentSum on cpu (linear-time replacement)', () => {
  it("is registered in place of tfjs-backend-cpu's kernel, idempotently", () => {
    const ours = tf.getKernel('UnsortedSegmentSum', 'cpu');
    expect(ours).not.toBe(tfjsCpuKernel);
    registerCpuKernels();
    expect(tf.getKernel('UnsortedSegmentSum', 'cpu')).toBe(ours);
  });

  it('computes the right sums, ignoring ids outside [0, numSegments)', async () => {
    const x = tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8], [4, 2]);
    const out = tf.unsortedSegmentSum(x, tf.tensor1d([2, 0, 2, 7], 'int32'), 3);
    expect(Array.from(await out.data())).toEqual([3, 4, 0, 0, 6, 8]);
  });

  for (const [name, positions, inner, segments, dtype] of [
    ['embedding gradient', 200, 32, 100, 'float32'],
    ['repeated ids, few segments', 200, 3, 4, 'float32'],
    ['int32 values (float32 output)', 50, 5, 7, 'int32'],
  ] as const) {
    it(`equals tfjs's own cpu kernel bit for bit: ${name}`, async () => {
      const random = seededUniform(positions);
      const ids = Int32Array.from({ length: positions }, () => Math.floor(random() * (segments + 2)) - 1); // some out of range
      const values =
        dtype === 'int32'
          ? Int32Array.from(randomFloats(positions * inner, 3), (v) => Math.round(v * 1000))
          : randomFloats(positions * inner, 3);
      const run = () =>
        tf.tidy(() => tf.unsortedSegmentSum(tf.tensor2d(values, [positions, inner], dtype), tf.tensor1d(ids, 'int32'), segments));
      const ours = run();
      const theirs = withTfjsKernel(run);
      expect(ours.dtype).toBe(theirs.dtype);
      expect(ours.shape).toEqual(theirs.shape);
      expect(Array.from(await ours.data())).toEqual(Array.from(await theirs.data()));
      tf.dispose([ours, theirs]);
    });
  }

  it("the gradient of an embedding lookup equals the one through tfjs's kernel", async () => {
    const table = tf.variable(tf.tensor2d(randomFloats(40 * 8, 5), [40, 8]));
    const ids = tf.tensor1d([3, 3, 39, 0, 7, 3], 'int32');
    const weights = tf.tensor2d(randomFloats(6 * 8, 6), [6, 8]);
    const grad = () => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, ids), weights)))(table);
    const ours = grad();
    const theirs = withTfjsKernel(grad);
    expect(Array.from(await ours.data())).toEqual(Array.from(await theirs.data()));
    tf.dispose([table, ids, weights, ours, theirs]);
  });

  it('rejects bad inputs with NnError', () => {
    const x = tf.zeros([3, 2]);
    expect(() => tf.unsortedSegmentSum(x, tf.tensor1d([0, 1], 'int32'), 2)).toThrow(
      expect.objectContaining({ name: 'NnError', code: 'INVALID_ARGUMENT' }),
    );
    x.dispose();
  });

  it('leaks no tensor', () => {
    const x = tf.tensor2d(randomFloats(20, 7), [10, 2]);
    const ids = tf.tensor1d([0, 1, 1, 2, 9, -1, 0, 2, 2, 1], 'int32');
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) tf.dispose(tf.unsortedSegmentSum(x, ids, 3));
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, ids]);
  });
});

describe('cpu Slice fast path', () => {
  it('equals the backend slice on non-contiguous slices of float32 and int32, any rank', async () => {
    const { initBackend } = await import('./select-backend.js');
    await initBackend({ backend: 'cpu' });
    const cases: Array<[number[], number[], number[]]> = [
      [
        [1, 16, 46, 8],
        [0, 0, 3, 0],
        [1, 16, 40, 8],
      ],
      [
        [2, 3, 5, 4],
        [1, 1, 2, 1],
        [1, 2, 3, 2],
      ],
      [
        [4, 6],
        [1, 2],
        [2, 3],
      ],
      [
        [2, 3, 4, 5, 6],
        [0, 1, 0, 2, 1],
        [2, 2, 4, 3, 5],
      ],
    ];
    for (const [shape, begin, size] of cases) {
      for (const dtype of ['float32', 'int32'] as const) {
        const n = shape.reduce((a, b) => a * b, 1);
        const x = tf.tensor(
          Array.from({ length: n }, (_, i) => i * 3 - 7),
          shape,
          dtype,
        );
        const got = tf.slice(x, begin, size);
        // By hand: every element of the slice from the flat input.
        const want: number[] = [];
        const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
        const total = size.reduce((a, b) => a * b, 1);
        for (let flat = 0; flat < total; flat++) {
          let rest = flat;
          let src = 0;
          for (let i = size.length - 1; i >= 0; i--) {
            src += ((rest % size[i]!) + begin[i]!) * strides[i]!;
            rest = Math.floor(rest / size[i]!);
          }
          want.push(src * 3 - 7);
        }
        expect(got.shape).toEqual(size);
        expect(got.dtype).toBe(dtype);
        expect(Array.from(await got.data())).toEqual(want);
        tf.dispose([x, got]);
      }
    }
  });
});
