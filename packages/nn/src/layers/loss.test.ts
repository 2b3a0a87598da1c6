import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '../backends/wasm-kernels.js';
import '../register-gradients.js';
import { afterAll, describe, expect, it } from 'vitest';
import { maxAbsDiff, randomTensor } from '../test-fixtures.js';
import { seededUniform } from './init.js';
import { sparseCrossEntropy, summedCrossEntropy } from './loss.js';

/** The textbook formula through tfjs's logSoftmax, and its gradient by autodiff. */
function viaLogSoftmax(logits: tf.Tensor, targets: Int32Array): tf.Tensor {
  const vocab = logits.shape[logits.rank - 1]!;
  const onehot = tf.reshape(tf.cast(tf.oneHot(tf.tensor1d(targets, 'int32'), vocab), 'float32'), logits.shape);
  return tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), onehot), -1));
}

function randomTargets(n: number, vocab: number, seed: number): Int32Array {
  const random = seededUniform(seed);
  return Int32Array.from({ length: n }, () => Math.floor(random() * vocab));
}

afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('sparseCrossEntropy', () => {
  it('is −log softmax[target] on a hand-worked row', async () => {
    await tf.setBackend('cpu');
    const loss = sparseCrossEntropy(tf.tensor2d([[0, Math.log(3)]]), [1]); // softmax = [1/4, 3/4]
    expect((await loss.data())[0]).toBeCloseTo(-Math.log(0.75), 6);
    expect(loss.shape).toEqual([1]);
  });

  for (const backend of ['cpu', 'wasm'] as const) {
    for (const scale of [1, 30]) {
      it(`${backend}, logits up to ±${scale}: values and gradients equal the logSoftmax formula to float32 rounding`, async () => {
        await tf.setBackend(backend);
        const shape = [2, 37, 260];
        const logits = randomTensor(shape, 7 + scale, scale);
        const targets = randomTargets(2 * 37, 260, 3);
        const weights = randomTensor([2, 37], 5, 1); // a non-uniform upstream gradient
        const ours = tf.valueAndGrad((x: tf.Tensor) => tf.sum(tf.mul(sparseCrossEntropy(x, targets), weights)))(logits);
        const reference = tf.valueAndGrad((x: tf.Tensor) => tf.sum(tf.mul(viaLogSoftmax(x, targets), weights)))(logits);
        expect(maxAbsDiff(await sparseCrossEntropy(logits, targets).data(), await viaLogSoftmax(logits, targets).data())).toBeLessThan(
          scale * 1e-6,
        );
        expect(Math.abs((await ours.value.data())[0]! - (await reference.value.data())[0]!)).toBeLessThan(scale * 1e-4);
        expect(maxAbsDiff(await ours.grad.data(), await reference.grad.data())).toBeLessThan(1e-6);
        tf.dispose([logits, weights, ours.value, ours.grad, reference.value, reference.grad]);
      });
    }
  }

  it('stays finite where the target probability underflows float32', async () => {
    await tf.setBackend('cpu');
    const loss = await sparseCrossEntropy(tf.tensor2d([[0, 200, -200]]), [2]).data();
    expect(loss[0]).toBeCloseTo(400, 3);
  });

  it('refuses a wrong number of targets and targets outside the vocabulary, with NnError', () => {
    const logits = tf.zeros([2, 3, 5]);
    expect(() => sparseCrossEntropy(logits, [0, 1])).toThrow(expect.objectContaining({ name: 'NnError', code: 'SHAPE_MISMATCH' }));
    for (const bad of [5, -1, 1.5, Number.NaN]) {
      expect(() => sparseCrossEntropy(logits, [0, 1, 2, 3, 4, bad])).toThrow(
        expect.objectContaining({ name: 'NnError', code: 'INVALID_ARGUMENT' }),
      );
    }
    logits.dispose();
  });

  it('leaks no tensor over repeated forward and backward passes', async () => {
    await tf.setBackend('wasm');
    const logits = randomTensor([4, 10], 1, 3);
    const targets = randomTargets(4, 10, 2);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const { value, grad } = tf.valueAndGrad((x: tf.Tensor) => tf.sum(sparseCrossEntropy(x, targets)))(logits);
      tf.dispose([value, grad, sparseCrossEntropy(logits, targets)]);
    }
    expect(tf.memory().numTensors).toBe(before);
    logits.dispose();
  });
});

describe('summedCrossEntropy', () => {
  it('sums the loss over the real positions of each row and ignores the padding', async () => {
    await tf.setBackend('cpu');
    // Row 0: two real positions; row 1: one (its second position is padding, with any logits).
    const logits = tf.tensor3d([
      [
        [0, Math.log(3)],
        [Math.log(3), 0],
      ],
      [
        [0, 0],
        [50, -50],
      ],
    ]);
    const total = summedCrossEntropy(logits, [Int32Array.of(1, 0), Int32Array.of(0)]);
    expect((await total.data())[0]).toBeCloseTo(-2 * Math.log(0.75) + Math.log(2), 5);
    const before = tf.memory().numTensors;
    summedCrossEntropy(logits, [[1, 0], [0]]).dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(() => summedCrossEntropy(logits, [[1, 0]])).toThrow(/expected 2 target rows/);
    expect(() => summedCrossEntropy(logits, [[1, 0, 1], [0]])).toThrow(/more than 2 positions/);
    tf.dispose([logits, total]);
  });
});
