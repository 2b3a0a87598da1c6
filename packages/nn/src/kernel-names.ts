/**
 * The names of nn's own kernels, apart from their implementations: the layers (`./layers`) say which
 * kernel they run and the backends (`./backends`) register kernels under these names, so neither
 * imports the other (as tfjs-core keeps its names in `kernel_names.ts`).
 */
/** Kernel names (namespaced: they share tfjs's global registry with every other library). */
export const FUSED_KERNELS = {
  rmsNorm: 'BytelatentRmsNorm',
  rmsNormGrad: 'BytelatentRmsNormGrad',
  rotary: 'BytelatentRotary',
  rotaryGrad: 'BytelatentRotaryGrad',
  maskedSoftmax: 'BytelatentMaskedSoftmax',
  attention: 'BytelatentAttention',
  swiglu: 'BytelatentSwiGLU',
  swapMiddleAxes: 'BytelatentSwapMiddleAxes',
  softmaxEntropy: 'BytelatentSoftmaxEntropy',
} as const;

/**
 * Fused kernels only the cpu backend registers: its own softmax, broadcasting add and transpose walk
 * every element through index arithmetic in JavaScript (tens to hundreds of ns each), while the wasm
 * backend runs them natively.
 */
export const CPU_ONLY_FUSED_KERNELS: readonly string[] = [
  FUSED_KERNELS.maskedSoftmax,
  FUSED_KERNELS.swapMiddleAxes,
  FUSED_KERNELS.attention,
  FUSED_KERNELS.swiglu,
  FUSED_KERNELS.softmaxEntropy,
];
