import * as tf from '@tensorflow/tfjs-core';
import '../register-gradients.js';
import { describe, expect, it } from 'vitest';
import { AdamW, learningRate } from './adamw.js';
import { NnError } from '../errors.js';

describe('AdamW', () => {
  it('matches the update worked by hand (bias correction, decoupled decay)', async () => {
    const w = tf.variable(tf.tensor1d([1, -2]));
    const opt = new AdamW([{ name: 'w', variable: w }], { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, clipNorm: 0 });
    const g = tf.tensor1d([0.5, -0.25]);
    await opt.apply([g], 0.01);
    // step 1: m̂ = g, v̂ = g², update = g/|g| = sign(g); w ← w − lr·(sign(g) + wd·w)
    const expected = [1 - 0.01 * (1 + 0.1 * 1), -2 - 0.01 * (-1 + 0.1 * -2)];
    const got = await w.data();
    expect(got[0]).toBeCloseTo(expected[0]!, 6);
    expect(got[1]).toBeCloseTo(expected[1]!, 6);
    // step 2 with the same gradient: m̂ = g and v̂ = g² again, so the same update size
    await opt.apply([g], 0.01);
    const got2 = await w.data();
    expect(got2[0]).toBeCloseTo(expected[0]! - 0.01 * (1 + 0.1 * expected[0]!), 5);
    expect(opt.step).toBe(2);
    tf.dispose([w, g]);
    opt.dispose();
  });

  it('clips the global gradient norm', async () => {
    const a = tf.variable(tf.tensor1d([0]));
    const b = tf.variable(tf.tensor1d([0]));
    const opt = new AdamW(
      [
        { name: 'a', variable: a },
        { name: 'b', variable: b },
      ],
      { clipNorm: 1 },
    );
    const stats = await opt.apply([tf.tensor1d([3]), tf.tensor1d([4])], 0.1);
    expect(stats.gradNorm).toBeCloseTo(5, 5);
    expect(stats.clipped).toBe(true);
    tf.dispose([a, b]);
    opt.dispose();
  });

  it('refuses a non-finite gradient and leaves the weights alone', async () => {
    const w = tf.variable(tf.tensor1d([1]));
    const opt = new AdamW([{ name: 'w', variable: w }]);
    await expect(opt.apply([tf.tensor1d([NaN])], 0.1)).rejects.toThrow(/gradient norm is NaN/);
    expect((await w.data())[0]).toBe(1);
    expect(opt.step).toBe(0);
    tf.dispose(w);
    opt.dispose();
  });

  it('round-trips its state and names every mismatch', () => {
    const w = tf.variable(tf.ones([2, 3]));
    const opt = new AdamW([{ name: 'w', variable: w }]);
    const state = new Map([...opt.state()].map(([k, t]) => [k, { shape: t.shape, data: t.dataSync() as Float32Array }]));
    opt.loadState(7, state);
    expect(opt.step).toBe(7);
    state.set('optimizer.v.w', { shape: [3, 2], data: new Float32Array(6) });
    state.delete('optimizer.m.w');
    expect(() => opt.loadState(1, state)).toThrow(/missing optimizer.m.w.*optimizer.v.w has shape \[3, 2\]/s);
    expect(() => new AdamW([{ name: 'w', variable: w }], { beta1: 1 })).toThrow(NnError);
    tf.dispose(w);
    opt.dispose();
  });
});

describe('learningRate', () => {
  const o = { lr: 1, warmupSteps: 10, totalSteps: 110, minLrRatio: 0.1 };
  it('warms up linearly, then decays along a cosine to the floor', () => {
    expect(learningRate(0, o)).toBeCloseTo(0.1);
    expect(learningRate(9, o)).toBeCloseTo(1);
    expect(learningRate(10, o)).toBeCloseTo(1);
    expect(learningRate(60, o)).toBeCloseTo(0.55);
    expect(learningRate(110, o)).toBeCloseTo(0.1);
    expect(learningRate(500, o)).toBeCloseTo(0.1);
  });
});
