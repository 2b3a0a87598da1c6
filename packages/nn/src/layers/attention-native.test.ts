import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import '../register-gradients.js';
import { FUSED_KERNELS } from '../kernel-names.js';
import { initBackend } from '../backends/select-backend.js';
import { scaledDotProductAttention } from './attention.js';
import { maxAbsDiff, randomTensor } from '../test-fixtures.js';
import { type LocalAttentionSpec, type MaskTensors, causalMask, maskTensors } from './masks.js';

// The cpu backend's fused attention (OpenBLAS per head, ../backends/cpu-native-matmul.ts) against
// the composite path (the same call with the kernel unregistered): values and gradients.

let native = false;
beforeAll(async () => {
  const info = await initBackend({ backend: 'cpu' });
  native = info.nativeMatMul?.active === true;
  if (!native) console.warn(`fused attention not checked: ${info.nativeMatMul?.reason}`);
});

/** Largest difference of two tensors of the same shape. */
function tensorDiff(a: tf.Tensor, b: tf.Tensor): number {
  expect(a.shape).toEqual(b.shape);
  return maxAbsDiff(a.dataSync(), b.dataSync());
}

function withoutFusedAttention<T>(fn: () => T): T {
  const saved = tf.getKernel(FUSED_KERNELS.attention, 'cpu')!;
  tf.unregisterKernel(FUSED_KERNELS.attention, 'cpu');
  try {
    return fn();
  } finally {
    tf.registerKernel(saved);
  }
}

/** Output and gradients w.r.t. q, k, v of Σ attention·w (w fixed random weights). */
function run(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: MaskTensors | LocalAttentionSpec | null): tf.Tensor[] {
  return tf.tidy(() => {
    const out = scaledDotProductAttention(q, k, v, mask);
    const w = randomTensor(out.shape, 99);
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(scaledDotProductAttention(a, b, c, mask), w)))([
      q,
      k,
      v,
    ]);
    return [out, ...grads];
  });
}

describe('fused attention on the cpu backend (OpenBLAS)', () => {
  const cases: Array<{ name: string; q: number[]; k: number[]; mask: (q: number, k: number) => MaskTensors | LocalAttentionSpec | null }> =
    [
      // A cached decoding step: one query, every held key visible, no mask.
      { name: 'no mask (a cached step)', q: [1, 4, 1, 8], k: [1, 4, 9, 8], mask: () => null },
      { name: 'causal, one row of 2 heads', q: [1, 2, 7, 8], k: [1, 2, 7, 8], mask: (n) => maskTensors(causalMask(1, n), 1, n, n) },
      {
        name: 'cross mask with empty rows, batch 2',
        q: [2, 3, 5, 4],
        k: [2, 3, 6, 4],
        mask: (nq, nk) =>
          maskTensors(
            Uint8Array.from({ length: 2 * nq * nk }, (_, i) => (Math.floor(i / nk) % 3 === 1 ? 0 : (i * 7) % 3 === 0 ? 1 : 0)),
            2,
            nq,
            nk,
          ),
      },
      // More query rows than one scratch block holds for 1100 keys (the kernel steps through them).
      {
        name: 'long rows (several query blocks)',
        q: [1, 1, 1100, 4],
        k: [1, 1, 1100, 4],
        mask: (n) => maskTensors(causalMask(1, n, { window: 300 }), 1, n, n),
      },
      // A windowed spec: blocked 5-D attention (seqLen far past a block) and one dense product (barely past).
      {
        name: 'local spec, blocked',
        q: [1, 2, 300, 4],
        k: [1, 2, 300, 4],
        mask: (n) => ({ kind: 'local', batch: 1, seqLen: n, window: 16 }),
      },
      { name: 'local spec, dense', q: [1, 2, 70, 4], k: [1, 2, 70, 4], mask: (n) => ({ kind: 'local', batch: 1, seqLen: n, window: 32 }) },
    ];
  for (const c of cases) {
    it(`equals the composite, values and gradients: ${c.name}`, () => {
      if (!native) return;
      const q = randomTensor(c.q, 1);
      const k = randomTensor(c.k, 2);
      const v = randomTensor(c.k, 3);
      const mask = c.mask(c.q[2]!, c.k[2]!);
      const before = tf.memory().numTensors;
      const fused = run(q, k, v, mask);
      const composite = withoutFusedAttention(() => run(q, k, v, mask));
      fused.forEach((t, i) => expect(tensorDiff(t, composite[i]!), `output ${i}`).toBeLessThan(1e-5));
      tf.dispose([...fused, ...composite]);
      // Repeated calls leak nothing.
      tf.dispose(run(q, k, v, mask));
      expect(tf.memory().numTensors).toBe(before);
      if (mask && 'bias' in mask) tf.dispose([mask.bias, ...(mask.rowValid ? [mask.rowValid] : [])]);
      tf.dispose([q, k, v]);
    });
  }

  it('runs as one kernel call per attention', () => {
    if (!native) return;
    const q = randomTensor([1, 2, 6, 4], 5);
    const mask = maskTensors(causalMask(1, 6), 1, 6, 6);
    const saved = tf.getKernel(FUSED_KERNELS.attention, 'cpu')!;
    let calls = 0;
    tf.unregisterKernel(FUSED_KERNELS.attention, 'cpu');
    tf.registerKernel({ ...saved, kernelFunc: (args) => (calls++, saved.kernelFunc(args)) });
    try {
      tf.dispose(scaledDotProductAttention(q, q, q, mask));
    } finally {
      tf.unregisterKernel(FUSED_KERNELS.attention, 'cpu');
      tf.registerKernel(saved);
    }
    expect(calls).toBe(1);
    tf.dispose([q, mask.bias]);
  });
});
