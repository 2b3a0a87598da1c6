import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { cpuBufferPoolBytes } from './cpu-buffer-pool.js';
import { initBackend } from './select-backend.js';

// Arrays of our cpu kernels are reused after their tensor is disposed, but never one that anything
// outside the backend may still see.

let native = false;
beforeAll(async () => {
  native = (await initBackend({ backend: 'cpu' })).nativeMatMul?.active === true;
});

const backend = () => tf.findBackend('cpu') as MathBackendCPU;
const valuesOf = (t: tf.Tensor) => backend().data.get(t.dataId).values as Float32Array;

/** A [64, 512] product (above the pool's smallest size) through our kernels (OpenBLAS, or the fused Add). */
function product(seed: number): tf.Tensor {
  return tf.tidy(() => {
    const a = tf.fill([64, 256], seed);
    const b = tf.fill([256, 512], 1);
    // With the native matmul the product's array comes from the pool; without it the Add's does.
    return native ? tf.matMul(a, b) : tf.add(tf.matMul(a, b), tf.zeros([64, 512]));
  });
}

describe('the cpu buffer pool', () => {
  it('reuses the array of a disposed intermediate for the next output of that size', () => {
    const first = product(1);
    const array = valuesOf(first);
    first.dispose();
    expect(cpuBufferPoolBytes()).toBeGreaterThanOrEqual(array.byteLength);
    const second = product(2);
    expect(valuesOf(second)).toBe(array);
    expect(second.dataSync().every((v) => v === 512)).toBe(true);
    second.dispose();
  });

  it('never reuses an array handed out by dataSync() or data()', async () => {
    const t = product(3);
    const seen = t.dataSync();
    t.dispose();
    const u = product(4);
    const asyncSeen = await u.data();
    u.dispose();
    const others = [product(5), product(6), product(7)];
    expect(seen.every((v) => v === 3 * 256)).toBe(true);
    expect((asyncSeen as Float32Array).every((v) => v === 4 * 256)).toBe(true);
    for (const o of others) expect(valuesOf(o)).not.toBe(seen);
    tf.dispose(others);
  });

  it('never reuses an array a contiguous slice still views', () => {
    const parent = product(8);
    const row = tf.slice(parent, [1, 0], [1, 512]);
    expect((valuesOf(row) as Float32Array).buffer).toBe(valuesOf(parent).buffer);
    parent.dispose();
    const others = [product(9), product(10), product(11)];
    expect(row.dataSync().every((v) => v === 8 * 256)).toBe(true);
    tf.dispose([row, ...others]);
  });

  it('results of a long chain stay exact while arrays are reused (no stale values)', () => {
    const before = tf.memory().numTensors;
    for (let i = 1; i <= 5; i++) {
      const t = product(i);
      expect(t.dataSync().every((v) => v === i * 256)).toBe(true);
      t.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('prints no tfjs banner on the cpu backend', () => {
    expect((backend() as unknown as { firstUse: boolean }).firstUse).toBe(false);
  });
});
