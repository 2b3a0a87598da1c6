export { BltError, type ActivationTap, type BltErrorCode } from '@bytelatent/local-encoder';
export { GlobalTransformer, patchTokens, type GlobalTransformerConfig } from './latent-transformer.js';
