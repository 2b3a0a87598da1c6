import * as tf from '@tensorflow/tfjs-core';
import '../register-gradients.js';
import { describe, expect, it } from 'vitest';
import { AdamW } from './adamw.js';
import { GradientAccumulator } from './gradient-accumulator.js';
import { NnError } from '../errors.js';

/** Σ (w·x − y)² for one micro-batch. */
const squaredError = (w: tf.Variable, x: number[], y: number[]) => () =>
  tf.sum(tf.square(tf.sub(tf.mul(w, tf.tensor1d(x)), tf.tensor1d(y)))) as tf.Scalar;

describe('GradientAccumulator', () => {
  it('applies the sum of the micro-batch gradients: two halves step exactly as the whole batch', async () => {
    const whole = tf.variable(tf.tensor1d([0.5, -1]));
    const halves = tf.variable(tf.tensor1d([0.5, -1]));
    const optWhole = new AdamW([{ name: 'w', variable: whole }], { clipNorm: 0 });
    const optHalves = new AdamW([{ name: 'w', variable: halves }], { clipNorm: 0 });
    const one = new GradientAccumulator([whole]);
    const two = new GradientAccumulator([halves]);
    // Σ over both micro-batches = the whole batch's loss, element by element.
    await one.add(() => tf.add(squaredError(whole, [1, 2], [3, 1])(), squaredError(whole, [-1, 4], [0, 2])()) as tf.Scalar);
    const first = await two.add(squaredError(halves, [1, 2], [3, 1]));
    const second = await two.add(squaredError(halves, [-1, 4], [0, 2]));
    expect(two.count).toBe(2);
    const a = await one.apply(optWhole, 0.05);
    const b = await two.apply(optHalves, 0.05);
    expect(b.loss).toBeCloseTo(first + second, 5);
    expect(b.loss).toBeCloseTo(a.loss, 5);
    expect(b.gradNorm).toBeCloseTo(a.gradNorm, 5);
    expect(Array.from(await halves.data())).toEqual(Array.from(await whole.data()));
    expect(two.count).toBe(0);
    tf.dispose([whole, halves]);
    optWhole.dispose();
    optHalves.dispose();
  });

  it('leaks no tensor over repeated steps', async () => {
    const w = tf.variable(tf.tensor1d([1, 2]));
    const opt = new AdamW([{ name: 'w', variable: w }]);
    const acc = new GradientAccumulator([w]);
    const step = async () => {
      await acc.add(squaredError(w, [1, 1], [0, 0]));
      await acc.add(squaredError(w, [2, 1], [1, 0]));
      await acc.apply(opt, 0.01);
    };
    await step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await step();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(w);
    opt.dispose();
  });

  it('refuses a non-finite loss, leaves the weights alone and frees the gradients', async () => {
    const w = tf.variable(tf.tensor1d([1]));
    const opt = new AdamW([{ name: 'w', variable: w }]);
    const acc = new GradientAccumulator([w]);
    const before = tf.memory().numTensors;
    await acc.add(() => tf.sum(tf.mul(w, tf.scalar(Infinity))) as tf.Scalar);
    const error = await acc.apply(opt, 0.1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NnError);
    expect((error as NnError).code).toBe('NON_FINITE');
    expect((error as NnError).message).toMatch(/the loss is Infinity/);
    expect(Array.from(await w.data())).toEqual([1]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(w);
    opt.dispose();
  });

  it('says so when a step has no micro-batch, and when there is nothing to train', async () => {
    const w = tf.variable(tf.tensor1d([1]));
    const opt = new AdamW([{ name: 'w', variable: w }]);
    await expect(new GradientAccumulator([w]).apply(opt, 0.1)).rejects.toThrow(/no micro-batch/);
    expect(() => new GradientAccumulator([])).toThrow(/no variables/);
    tf.dispose(w);
    opt.dispose();
  });
});
