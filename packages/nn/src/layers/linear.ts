import * as tf from '@tensorflow/tfjs-core';
import { checkInt } from '../errors.js';
import { truncatedNormal } from './init.js';
import type { ParameterScope } from './parameters.js';

/** Initialisation of a weight: truncated normal (±3 std) with this std, from this generator. */
export interface WeightInit {
  readonly std: number;
  readonly random: () => number;
}

/**
 * `y = x Wᵀ` without bias (BLT has none). The reference stores `weight` as `[out, in]`; we keep it
 * transposed, `[in, out]`, so the forward pass is a plain matMul (fast on every backend) and the
 * loader transposes once.
 */
export class Linear {
  readonly weight: tf.Variable;

  constructor(
    scope: ParameterScope,
    readonly inFeatures: number,
    readonly outFeatures: number,
    init: WeightInit,
  ) {
    checkInt('inFeatures', inFeatures, 1);
    checkInt('outFeatures', outFeatures, 1);
    this.weight = scope.variable(
      'weight',
      [outFeatures, inFeatures],
      () => truncatedNormal(inFeatures * outFeatures, init.std, init.random),
      true,
    );
  }

  /**
   * @param x - `[..., inFeatures]`
   * @returns `[..., outFeatures]`
   */
  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const lead = x.shape.slice(0, -1);
      const flat = tf.reshape(x, [-1, this.inFeatures]);
      return tf.reshape(tf.matMul(flat, this.weight), [...lead, this.outFeatures]);
    });
  }
}

/** A lookup table `[numEmbeddings, dim]` (reference `nn.Embedding`). */
export class Embedding {
  readonly weight: tf.Variable;

  constructor(
    scope: ParameterScope,
    readonly numEmbeddings: number,
    readonly dim: number,
    init: WeightInit,
  ) {
    checkInt('numEmbeddings', numEmbeddings, 1);
    checkInt('dim', dim, 1);
    this.weight = scope.variable('weight', [numEmbeddings, dim], () => truncatedNormal(numEmbeddings * dim, init.std, init.random));
  }

  /**
   * @param ids - int32 ids of any shape, each in `[0, numEmbeddings)`
   * @returns `[...ids.shape, dim]`
   */
  apply(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.reshape(tf.gather(this.weight, tf.reshape(ids, [-1])), [...ids.shape, this.dim]));
  }
}
