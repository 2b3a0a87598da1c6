import * as tf from '@tensorflow/tfjs-core';
import { checkInt } from './errors.js';
import type { ParameterScope } from './parameters.js';

/** `x · rsqrt(mean(x²) + eps) · weight` over the last axis (golden Semantics 10). */
export class RMSNorm {
  readonly weight: tf.Variable;

  constructor(
    scope: ParameterScope,
    readonly dim: number,
    readonly eps = 1e-5,
  ) {
    checkInt('dim', dim, 1);
    this.weight = scope.variable('weight', [dim], () => new Float32Array(dim).fill(1));
  }

  /** @param x - `[..., dim]` @returns same shape */
  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const meanSquare = tf.mean(tf.square(x), -1, true);
      return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, this.eps))), this.weight);
    });
  }
}
