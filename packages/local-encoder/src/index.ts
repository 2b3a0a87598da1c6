export { BltError, type BltErrorCode } from './errors.js';
export {
  LocalEncoder,
  maxPoolPatches,
  type EncoderPatches,
  type LocalEncoderConfig,
  type LocalEncoderOptions,
  type LocalEncoderOutput,
  type LocalEncoderScopes,
} from './local-encoder.js';
export {
  applyBlock,
  applyCrossAttention,
  blockCausalMask,
  checkPositiveInts,
  disposeMask,
  groupCrossMask,
  localSelfAttentionMask,
  patchRowGroups,
  type ActivationTap,
  type LocalMaskOptions,
  type RopeTables,
} from './model-parts.js';
