import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS } from '../kernel-names.js';
import { checkInt } from '../errors.js';
import type { ParameterScope } from './parameters.js';

/**
 * `x · rsqrt(mean(x²) + eps) · weight` over the last axis (golden Semantics 10).
 *
 * One fused kernel where the current backend has it (wasm and cpu, registered by `initBackend`;
 * see `../backends/fused-kernels.ts`), else the composite of tfjs ops (webgpu). Both give the same
 * values to float32 rounding and the same gradients.
 *
 * @param x - `[..., d]`, float32
 * @param weight - `[d]`
 * @returns same shape as `x`
 */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor {
  const d = x.shape[x.rank - 1];
  const fusable = x.dtype === 'float32' && weight.dtype === 'float32' && weight.rank === 1 && weight.shape[0] === d && x.size > 0;
  if (fusable && tf.getKernel(FUSED_KERNELS.rmsNorm, tf.getBackend()) !== undefined) {
    return tf.engine().runKernel(FUSED_KERNELS.rmsNorm, { x, weight }, { eps }) as tf.Tensor;
  }
  return tf.tidy(() => {
    const meanSquare = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, eps))), weight);
  });
}

// The fused kernel's gradient: one call of its gradient kernel, registered with it.
tf.registerGradient({
  kernelName: FUSED_KERNELS.rmsNorm,
  inputsToSave: ['x', 'weight'],
  gradFunc: (dy, saved, attrs) => {
    const [x, weight] = saved as [tf.Tensor, tf.Tensor];
    const [dx, dw] = tf.engine().runKernel(FUSED_KERNELS.rmsNormGrad, { dy: dy as tf.Tensor, x, weight }, attrs) as tf.Tensor[];
    return { x: () => dx!, weight: () => dw! };
  },
});

/** RMSNorm with a learned `weight` (initialised to ones), see {@link rmsNorm}. */
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
    return rmsNorm(x, this.weight, this.eps);
  }
}
