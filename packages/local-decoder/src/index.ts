export { BltError, type ActivationTap, type BltErrorCode } from '@bytelatent/nn';
export { LocalDecoder, type LocalDecoderConfig } from './local-decoder.js';
