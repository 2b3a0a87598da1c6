export { BltError, type ActivationTap, type BltErrorCode } from '@bytelatent/local-encoder';
export { LocalDecoder, type LocalDecoderConfig } from './local-decoder.js';
