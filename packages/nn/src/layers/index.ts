export {
  Attention,
  CrossAttention,
  prefixTap,
  scaledDotProductAttention,
  type AttentionConfig,
  type AttentionMask,
  type ModuleTap,
} from './attention.js';
export { CheckpointInitializer, loadReferenceWeights, referenceStateDict, type LoadWeightsOptions } from './checkpoint.js';
export { NnError, type NnErrorCode } from '../errors.js';
export { BltError, type BltErrorCode } from './blt-error.js';
export {
  applyBlock,
  applyCrossAttention,
  blockCausalMask,
  checkPositiveInts,
  disposeMask,
  groupCrossMask,
  localSelfAttentionMask,
  paddedDocumentIds,
  patchRowGroups,
  type ActivationTap,
  type LocalMaskOptions,
  type RopeTables,
} from './model-parts.js';
export { KvCache, type CachedStep, type KvCacheOptions, type LayerKv } from './kv-cache.js';
export { FeedForward, ffnHiddenDim } from './feed-forward.js';
export { initStdDivisor, seededUniform, truncatedNormal, type InitStdFactor } from './init.js';
export { Embedding, Linear, type WeightInit } from './linear.js';
export { HostEmbedding } from './host-embedding.js';
export { sparseCrossEntropy, summedCrossEntropy } from './loss.js';
export { softmaxEntropy } from './entropy.js';
export {
  causalMask,
  causalMaskBlock,
  documentIds,
  groupMask,
  localAttentionBlockSize,
  maskTensors,
  type CausalMaskOptions,
  type LocalAttentionSpec,
  type MaskTensors,
} from './masks.js';
export { ParameterRegistry, ParameterScope, type InitialValues, type Parameter, type ParameterRegistryOptions } from './parameters.js';
export { RMSNorm, rmsNorm } from './rms-norm.js';
export { RotaryEmbedding, applyRotary } from './rotary.js';
export { TransformerBlock, type TransformerBlockConfig } from './transformer-block.js';
export { createTransformerStack, type TransformerStack, type TransformerStackConfig } from './transformer-stack.js';
export { LMTransformer, type LMTransformerConfig } from './lm-transformer.js';
