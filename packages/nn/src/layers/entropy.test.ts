import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { FUSED_KERNELS } from '../kernel-names.js';
import { initBackend } from '../backends/select-backend.js';
import { softmaxEntropy } from './entropy.js';
import { NnError } from '../errors.js';
import { randomTensor } from '../test-fixtures.js';

// softmaxEntropy on each CPU-side backend (cpu: the fused kernel; wasm: the softmax composite)
// against the entropy computed in double precision from the same logits.

/** −Σ p·log p per row, in float64. */
function reference(x: Float32Array, k: number): Float64Array {
  const out = new Float64Array(x.length / k);
  for (let r = 0; r < out.length; r++) {
    const row = Array.from(x.subarray(r * k, (r + 1) * k));
    const max = Math.max(...row);
    const z = row.reduce((s, v) => s + Math.exp(v - max), 0);
    out[r] = -row.reduce((s, v) => {
      const p = Math.exp(v - max) / z;
      return s + (p === 0 ? 0 : p * Math.log(p));
    }, 0);
  }
  return out;
}

describe.each(['cpu', 'wasm'] as const)('softmaxEntropy on %s', (backend) => {
  it(backend === 'cpu' ? 'runs the fused kernel' : 'keeps the composite (wasm has a vectorised softmax)', async () => {
    await initBackend({ backend });
    expect(tf.getKernel(FUSED_KERNELS.softmaxEntropy, backend) !== undefined).toBe(backend === 'cpu');
  });

  it.each([
    ['[4, 7, 260], moderate logits', [4, 7, 260], 3],
    ['[2, 5, 260], logits of magnitude ~60', [2, 5, 260], 60],
    ['[3, 1], a single class (entropy 0)', [3, 1], 1],
    ['[9], one row', [9], 2],
  ] as const)('%s: equals −Σ p·log p to float32 rounding', async (_name, shape, scale) => {
    await initBackend({ backend });
    const logits = randomTensor([...shape], 11, scale);
    const x = (await logits.data()) as Float32Array;
    const h = softmaxEntropy(logits);
    expect(h.shape).toEqual(shape.slice(0, -1));
    const got = await h.data();
    const want = reference(x, shape[shape.length - 1]!);
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(2e-5 * Math.max(1, want[i]!));
    tf.dispose([logits, h]);
  });

  it('a uniform row has entropy log(vocab); repeated calls leak nothing', async () => {
    await initBackend({ backend });
    const logits = tf.zeros([2, 260]);
    softmaxEntropy(logits).dispose();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const h = softmaxEntropy(logits);
      const v = await h.data();
      expect(v[0]).toBeCloseTo(Math.log(260), 5);
      h.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    logits.dispose();
  });

  it('refuses a tensor without a vocabulary axis', async () => {
    await initBackend({ backend });
    const scalar = tf.scalar(1);
    expect(() => softmaxEntropy(scalar)).toThrow(NnError);
    scalar.dispose();
  });
});
