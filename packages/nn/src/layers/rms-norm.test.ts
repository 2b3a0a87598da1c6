import * as tf from '@tensorflow/tfjs-core';
import '../backends/cpu-kernels.js';
import '../backends/wasm-kernels.js';
import '../register-gradients.js';
import { afterAll, describe, expect, it } from 'vitest';
import { FUSED_KERNELS } from '../kernel-names.js';
import { maxAbsDiff, randomTensor } from '../test-fixtures.js';
import { rmsNorm } from './rms-norm.js';

/** The composite op (what webgpu runs), whatever kernels are registered. */
function composite(x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor {
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), weight);
}

afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('rmsNorm (fused kernel on cpu and wasm)', () => {
  for (const backend of ['cpu', 'wasm'] as const) {
    for (const [name, shape, scale] of [
      ['[2, 37, 32]', [2, 37, 32], 1],
      ['[513, 64], large values', [513, 64], 100],
      ['[5, 3], tiny values (eps dominates)', [5, 3], 1e-4],
    ] as const) {
      it(`${backend} ${name}: values and both gradients equal the composite op`, async () => {
        await tf.setBackend(backend);
        const d = shape[shape.length - 1]!;
        const x = randomTensor([...shape], 1, scale);
        const weight = randomTensor([d], 2);
        const upstream = randomTensor([...shape], 3);
        const loss = (f: typeof rmsNorm) => (a: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(f(a, w, 1e-5), upstream));
        const ours = tf.grads(loss(rmsNorm))([x, weight]);
        const theirs = tf.grads(loss(composite))([x, weight]);
        expect(maxAbsDiff(await rmsNorm(x, weight, 1e-5).data(), await composite(x, weight, 1e-5).data())).toBeLessThan(2e-6);
        for (const i of [0, 1]) {
          const expected = await theirs[i]!.data();
          const largest = Math.max(...Array.from(expected, Math.abs));
          expect(maxAbsDiff(await ours[i]!.data(), expected) / largest).toBeLessThan(1e-5); // relative to the gradient's size
        }
        tf.dispose([x, weight, upstream, ...ours, ...theirs]);
      });
    }

    it(`${backend}: runs as one kernel forward and one for both gradients`, async () => {
      await tf.setBackend(backend);
      const x = randomTensor([4, 8], 4);
      const weight = tf.variable(randomTensor([8], 5));
      const profile = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(() => tf.sum(rmsNorm(x, weight, 1e-5)), [weight]);
        tf.dispose([value, ...Object.values(grads)]);
      });
      const names = profile.kernels.map((k) => k.name);
      expect(names.filter((n) => n === FUSED_KERNELS.rmsNorm)).toHaveLength(1);
      expect(names.filter((n) => n === FUSED_KERNELS.rmsNormGrad)).toHaveLength(1);
      expect(names).not.toContain('Rsqrt');
      tf.dispose([x, weight]);
    });

    it(`${backend}: leaks no tensor over repeated forward and backward passes`, async () => {
      await tf.setBackend(backend);
      const x = randomTensor([6, 16], 6);
      const weight = randomTensor([16], 7);
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) {
        const g = tf.grads((a: tf.Tensor, w: tf.Tensor) => tf.sum(rmsNorm(a, w, 1e-5)))([x, weight]);
        tf.dispose([...g, rmsNorm(x, weight, 1e-5)]);
      }
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, weight]);
    });
  }

  it('falls back to the composite op for a broadcast weight', async () => {
    await tf.setBackend('cpu');
    const x = randomTensor([3, 4], 8);
    const w = tf.scalar(2);
    expect(maxAbsDiff(await rmsNorm(x, w, 1e-5).data(), await composite(x, w, 1e-5).data())).toBe(0);
    tf.dispose([x, w]);
  });
});
