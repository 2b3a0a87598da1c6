import * as tf from '@tensorflow/tfjs-core';
import { checkInt } from './errors.js';
import type { ModuleTap } from './attention.js';
import { Linear, type WeightInit } from './linear.js';
import type { ParameterScope } from './parameters.js';

/**
 * The reference SwiGLU hidden size (spec §5.1): `int(2·4·dim/3)`, times `ffnDimMultiplier` when
 * given, rounded up to a multiple of `multipleOf`. F(32) = 256 with multipleOf 256, F(768) = 2048.
 */
export function ffnHiddenDim(dim: number, multipleOf = 256, ffnDimMultiplier: number | null = null): number {
  checkInt('dim', dim, 1);
  checkInt('multipleOf', multipleOf, 1);
  let hidden = Math.trunc((2 * 4 * dim) / 3);
  if (ffnDimMultiplier !== null) hidden = Math.trunc(ffnDimMultiplier * hidden);
  return multipleOf * Math.ceil(hidden / multipleOf);
}

/** SwiGLU: `w2(silu(w1 x) ⊙ w3 x)`. */
export class FeedForward {
  readonly w1: Linear;
  readonly w2: Linear;
  readonly w3: Linear;

  constructor(scope: ParameterScope, dim: number, hiddenDim: number, init: { in: WeightInit; out: WeightInit }) {
    this.w1 = new Linear(scope.child('w1'), dim, hiddenDim, init.in);
    this.w3 = new Linear(scope.child('w3'), dim, hiddenDim, init.in);
    this.w2 = new Linear(scope.child('w2'), hiddenDim, dim, init.out);
  }

  /** @param x - `[..., dim]` @param tap - receives `w1`, `w3`, `w2` outputs @returns `[..., dim]` */
  apply(x: tf.Tensor, tap?: ModuleTap): tf.Tensor {
    return tf.tidy(() => {
      const gate = this.w1.apply(x);
      const up = this.w3.apply(x);
      tap?.('w1', gate);
      tap?.('w3', up);
      // silu(g) = g · sigmoid(g); tf.sigmoid has a gradient on every backend.
      const out = this.w2.apply(tf.mul(tf.mul(gate, tf.sigmoid(gate)), up));
      tap?.('w2', out);
      return out;
    });
  }
}
