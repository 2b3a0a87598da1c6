import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import '../register-gradients.js';
import { FUSED_KERNELS } from '../kernel-names.js';
import { initBackend } from '../backends/select-backend.js';
import { swigluGate } from './feed-forward.js';
import { randomTensor } from '../test-fixtures.js';

// The cpu backend's fused SwiGLU gate against the composite (the same call with the kernel unregistered).

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
});

function run(gate: tf.Tensor, up: tf.Tensor): tf.Tensor[] {
  return tf.tidy(() => {
    const w = randomTensor(gate.shape, 7, 1);
    const [dg, du] = tf.grads((g: tf.Tensor, u: tf.Tensor) => tf.sum(tf.mul(swigluGate(g, u), w)))([gate, up]);
    return [swigluGate(gate, up), dg!, du!];
  });
}

describe('swigluGate on the cpu backend', () => {
  it('is registered on cpu only (wasm keeps the composite)', () => {
    expect(tf.getKernel(FUSED_KERNELS.swiglu, 'cpu')).toBeDefined();
    expect(tf.getKernel(FUSED_KERNELS.swiglu, 'wasm')).toBeUndefined();
  });

  it('equals gate · sigmoid(gate) · up, values and gradients, large magnitudes included', () => {
    const gate = randomTensor([3, 5, 64], 1, 30);
    const up = randomTensor([3, 5, 64], 2, 3);
    const before = tf.memory().numTensors;
    const fused = run(gate, up);
    const saved = tf.getKernel(FUSED_KERNELS.swiglu, 'cpu')!;
    tf.unregisterKernel(FUSED_KERNELS.swiglu, 'cpu');
    let composite: tf.Tensor[];
    try {
      composite = run(gate, up);
    } finally {
      tf.registerKernel(saved);
    }
    fused.forEach((t, i) => {
      const a = t.dataSync();
      const b = composite[i]!.dataSync();
      expect(a.every(Number.isFinite)).toBe(true);
      let max = 0;
      for (let j = 0; j < a.length; j++) max = Math.max(max, Math.abs(a[j]! - b[j]!) / Math.max(1, Math.abs(b[j]!)));
      expect(max, `output ${i}`).toBeLessThan(1e-5);
    });
    tf.dispose([...fused, ...composite!]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([gate, up]);
  });
});
