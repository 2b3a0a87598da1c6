export { BltError, type ActivationTap, type BltErrorCode } from '@bytelatent/nn';
export { GlobalTransformer, patchTokens, type GlobalTransformerConfig } from './latent-transformer.js';
