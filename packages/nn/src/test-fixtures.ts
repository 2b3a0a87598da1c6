// Test-only helpers shared by the layer tests (excluded from the build and the package).
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { seededUniform } from './layers/init.js';

/** A seeded tensor of uniform values in [-scale, scale). */
export function randomTensor(shape: number[], seed: number, scale = 1): tf.Tensor {
  const random = seededUniform(seed);
  return tf.tensor(
    Float32Array.from({ length: shape.reduce((p, d) => p * d, 1) }, () => (random() * 2 - 1) * scale),
    shape,
  );
}

/** Largest absolute difference of two equally long arrays (asserts the lengths). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}
