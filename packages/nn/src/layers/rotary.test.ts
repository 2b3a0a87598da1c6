import * as tf from '@tensorflow/tfjs-core';
import '../backends/cpu-kernels.js';
import '../backends/wasm-kernels.js';
import '../register-gradients.js';
import { afterAll, describe, expect, it } from 'vitest';
import { FUSED_KERNELS } from '../kernel-names.js';
import { maxAbsDiff, randomTensor } from '../test-fixtures.js';
import { RotaryEmbedding, applyRotary } from './rotary.js';

/** Runs `fn` with the fused rotary kernels unregistered: applyRotary's composite path (webgpu's). */
function composite<T>(fn: () => T): T {
  const backend = tf.getBackend();
  const saved = [FUSED_KERNELS.rotary, FUSED_KERNELS.rotaryGrad].map((name) => tf.getKernel(name, backend)!);
  for (const config of saved) tf.unregisterKernel(config.kernelName, backend);
  try {
    return fn();
  } finally {
    for (const config of saved) tf.registerKernel(config);
  }
}

afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('applyRotary (fused kernel on cpu and wasm)', () => {
  for (const backend of ['cpu', 'wasm'] as const) {
    it(`${backend}: values and the gradient equal the composite op`, async () => {
      await tf.setBackend(backend);
      const [b, s, h, d] = [2, 37, 3, 16];
      const { cos, sin } = new RotaryEmbedding(d, 10000, 64).tables(5, s);
      const x = randomTensor([b, s, h, d], 1);
      const upstream = randomTensor([b, s, h, d], 2);
      const run = () => {
        const y = applyRotary(x, cos, sin);
        const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(applyRotary(t, cos, sin), upstream)))(x);
        return [y, g];
      };
      const [ours, oursGrad] = run();
      const [theirs, theirsGrad] = composite(run);
      expect(maxAbsDiff(await ours!.data(), await theirs!.data())).toBeLessThan(1e-6);
      expect(maxAbsDiff(await oursGrad!.data(), await theirsGrad!.data())).toBeLessThan(1e-6);
      tf.dispose([x, upstream, cos, sin, ours!, theirs!, oursGrad!, theirsGrad!]);
    });

    it(`${backend}: one kernel forward, one for the gradient, no leak`, async () => {
      await tf.setBackend(backend);
      const { cos, sin } = new RotaryEmbedding(8, 10000, 16).tables(0, 4);
      const x = tf.variable(randomTensor([1, 4, 2, 8], 3));
      const before = tf.memory().numTensors;
      const profile = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(() => tf.sum(applyRotary(x, cos, sin)), [x]);
        tf.dispose([value, ...Object.values(grads)]);
      });
      const names = profile.kernels.map((k) => k.name);
      expect(names.filter((n) => n === FUSED_KERNELS.rotary)).toHaveLength(1);
      expect(names.filter((n) => n === FUSED_KERNELS.rotaryGrad)).toHaveLength(1);
      expect(names).not.toContain('BatchMatMul');
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, cos, sin]);
    });
  }
});
