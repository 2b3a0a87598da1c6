import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS } from '../kernel-names.js';
import { checkInt } from '../errors.js';
import type { ModuleTap } from './attention.js';
import { Linear, type WeightInit } from './linear.js';
import type { ParameterScope } from './parameters.js';

/**
 * The reference SwiGLU hidden size (architecture §5.1): `int(2·4·dim/3)`, times `ffnDimMultiplier` when
 * given, rounded up to a multiple of `multipleOf`. F(32) = 256 with multipleOf 256, F(768) = 2048.
 */
export function ffnHiddenDim(dim: number, multipleOf = 256, ffnDimMultiplier: number | null = null): number {
  checkInt('dim', dim, 1);
  checkInt('multipleOf', multipleOf, 1);
  let hidden = Math.trunc((2 * 4 * dim) / 3);
  if (ffnDimMultiplier !== null) hidden = Math.trunc(ffnDimMultiplier * hidden);
  return multipleOf * Math.ceil(hidden / multipleOf);
}

/**
 * `silu(gate) ⊙ up`: one fused pass where the backend has it (cpu, whose element-wise kernels each
 * allocate and walk a fresh array), else `gate · sigmoid(gate) · up` (wasm's vectorised Sigmoid beats
 * a JavaScript exp). Same values to float32 rounding, same gradients.
 */
export function swigluGate(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  const fusable = gate.dtype === 'float32' && up.dtype === 'float32' && gate.shape.join() === up.shape.join() && gate.size > 0;
  if (fusable && tf.getKernel(FUSED_KERNELS.swiglu, tf.getBackend()) !== undefined) {
    return tf.engine().runKernel(FUSED_KERNELS.swiglu, { gate, up }) as tf.Tensor;
  }
  // silu(g) = g · sigmoid(g); tf.sigmoid has a gradient on every backend.
  return tf.tidy(() => tf.mul(tf.mul(gate, tf.sigmoid(gate)), up));
}

// The fused gate's gradient: with s = sigmoid(g), d/dg = u · s · (1 + g · (1 − s)), d/du = g · s.
tf.registerGradient({
  kernelName: FUSED_KERNELS.swiglu,
  inputsToSave: ['gate', 'up'],
  gradFunc: (dy, saved) => {
    const [gate, up] = saved as [tf.Tensor, tf.Tensor];
    return {
      gate: () =>
        tf.tidy(() => {
          const s = tf.sigmoid(gate);
          return tf.mul(dy as tf.Tensor, tf.mul(tf.mul(up, s), tf.add(1, tf.mul(gate, tf.sub(1, s)))));
        }),
      up: () => tf.tidy(() => tf.mul(dy as tf.Tensor, tf.mul(gate, tf.sigmoid(gate)))),
    };
  },
});

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
      const out = this.w2.apply(swigluGate(gate, up));
      tap?.('w2', out);
      return out;
    });
  }
}
