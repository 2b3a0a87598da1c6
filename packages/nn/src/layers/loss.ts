import * as tf from '@tensorflow/tfjs-core';
import { NnError } from '../errors.js';

/**
 * Next-token cross-entropy per position in nats, `−log softmax(logits)[target]` (the reference's
 * `F.cross_entropy(..., reduction="none")`), with the gradient `softmax(logits) − onehot(target)`.
 *
 * Computed without tfjs's `logSoftmax`: its `Exp` kernel on the wasm backend is scalar (and runs
 * twice per training step: forward and gradient), while the `Softmax` kernel is vectorised
 * (docs/performance.md §3b). The log-sum-exp comes from the softmax itself: at the row maximum m,
 * `softmax(x)[argmax] = 1 / Σ exp(x − m)`, so `logsumexp(x) = m − log(max softmax(x))`. That
 * probability is at least 1 / vocab, so the log never meets an underflow, and the result matches
 * `logSoftmax` to float32 rounding (a few 1e-7).
 *
 * @param logits - `[..., vocab]`, float32
 * @param targets - one id in `[0, vocab)` per position, flattened in row-major order
 *   (`logits.size / vocab` of them); callers mask padding positions themselves
 * @returns `[...]` (the logits' shape without the last axis)
 * @throws {NnError} `SHAPE_MISMATCH` when the number of targets differs from the positions,
 *   `INVALID_ARGUMENT` for a target outside the vocabulary
 */
export function sparseCrossEntropy(logits: tf.Tensor, targets: ArrayLike<number>): tf.Tensor {
  const vocab = logits.shape[logits.rank - 1];
  if (logits.rank < 1 || vocab === undefined || vocab < 1) {
    throw new NnError('SHAPE_MISMATCH', `logits must have a vocabulary axis, got shape [${logits.shape.join(', ')}]`);
  }
  const positions = logits.size / vocab;
  if (targets.length !== positions) {
    throw new NnError(
      'SHAPE_MISMATCH',
      `expected ${positions} targets for logits of shape [${logits.shape.join(', ')}], got ${targets.length}`,
    );
  }
  for (let i = 0; i < positions; i++) {
    const t = targets[i]!;
    if (!(Number.isInteger(t) && t >= 0 && t < vocab)) {
      throw new NnError('INVALID_ARGUMENT', `targets[${i}] = ${t} is not an id in [0, ${vocab})`);
    }
  }
  const outer = logits.shape.slice(0, -1);
  return tf.tidy(() => {
    // Built on the host: the wasm OneHot kernel is slow (docs/performance.md §3b) and ignores a
    // float32 dtype.
    const hot = new Float32Array(positions * vocab);
    for (let i = 0; i < positions; i++) hot[i * vocab + targets[i]!] = 1;
    const onehot = tf.tensor(hot, logits.shape, 'float32');
    // tfjs types the inputs and the save function as one rest parameter.
    const loss = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const x = args[0] as tf.Tensor;
      const save = args[1] as tf.GradSaveFunc;
      const probs = tf.softmax(x);
      const logSumExp = tf.sub(tf.max(x, -1), tf.log(tf.max(probs, -1)));
      // The one-hot is saved too: this tidy disposes it before a gradient is asked for.
      save([probs, onehot]);
      return {
        value: tf.sub(logSumExp, tf.sum(tf.mul(x, onehot), -1)),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(tf.reshape(dy, [...outer, 1]), tf.sub(saved[0]!, saved[1]!)),
      };
    });
    return loss(logits);
  });
}

/**
 * Σ −log p(target) over the real positions of right-padded `[B, T, vocab]` logits: row `b` counts
 * its first `targets[b].length` positions (the rest is padding). The training loss of a byte- or
 * token-level language model before it is divided by the number of targets.
 *
 * @param logits - `[B, T, vocab]`
 * @param targets - per row, the next id of each real position (at most `T` of them)
 * @returns a scalar, in nats
 * @throws {NnError} `SHAPE_MISMATCH` for a row count other than `B` or a row longer than `T`
 */
export function summedCrossEntropy(logits: tf.Tensor3D, targets: readonly ArrayLike<number>[]): tf.Scalar {
  const [batch, seqLen] = logits.shape;
  if (targets.length !== batch) throw new NnError('SHAPE_MISMATCH', `expected ${batch} target rows, got ${targets.length}`);
  const flat = new Int32Array(batch * seqLen);
  const valid = new Float32Array(batch * seqLen);
  targets.forEach((row, b) => {
    if (row.length > seqLen) throw new NnError('SHAPE_MISMATCH', `target row ${b} has ${row.length} ids, more than ${seqLen} positions`);
    flat.set(row, b * seqLen);
    valid.fill(1, b * seqLen, b * seqLen + row.length);
  });
  return tf.tidy(() => tf.sum(tf.mul(sparseCrossEntropy(logits, flat), tf.tensor2d(valid, [batch, seqLen]))) as tf.Scalar);
}
