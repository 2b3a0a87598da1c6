import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS } from '../kernel-names.js';
import { NnError } from '../errors.js';

/**
 * Shannon entropy in nats of the softmax over the last axis, `H = −Σ p·log p` with `p = softmax(x)`:
 * the next-byte uncertainty BLT's entropy patching thresholds (the reference's `entropy` in
 * `bytelatent/data/patcher.py`).
 *
 * On the cpu backend one fused kernel per row (`../backends/fused-kernels.ts`). Elsewhere it is built
 * on tfjs's `Softmax`, never on `logSoftmax`: the wasm backend's `Exp` kernel is scalar (and
 * `logSoftmax` then `exp` run it twice) while its `Softmax` is vectorised, several times faster
 * (docs/performance.md §5d). With `m` the row maximum and `d = x − m`,
 * `log Σ exp(d) = −log(max p)` (the largest probability is `1 / Σ exp(d)`, at least `1 / vocab`,
 * so the log never meets an underflow), and `H = −log(max p) − Σ p·d`. Values match the
 * `logSoftmax` composite to float32 rounding.
 *
 * Inference only: it has no gradient.
 *
 * @param logits - `[..., vocab]`, float32
 * @returns `[...]` (the logits' shape without the last axis), float32
 * @throws {NnError} `SHAPE_MISMATCH` for a tensor without a non-empty last axis
 */
export function softmaxEntropy(logits: tf.Tensor): tf.Tensor {
  const vocab = logits.shape[logits.rank - 1];
  if (logits.rank < 1 || vocab === undefined || vocab < 1) {
    throw new NnError('SHAPE_MISMATCH', `logits must have a non-empty last axis, got shape [${logits.shape.join(', ')}]`);
  }
  if (logits.dtype === 'float32' && tf.getKernel(FUSED_KERNELS.softmaxEntropy, tf.getBackend()) !== undefined) {
    return tf.engine().runKernel(FUSED_KERNELS.softmaxEntropy, { logits }) as tf.Tensor;
  }
  return tf.tidy(() => {
    const d = tf.sub(logits, tf.max(logits, -1, true));
    const p = tf.softmax(d);
    return tf.neg(tf.add(tf.log(tf.max(p, -1)), tf.sum(tf.mul(p, d), -1)));
  });
}
