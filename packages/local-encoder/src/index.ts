// The BLT model packages' error and activation tap (defined in nn, beside the pieces they share).
export { BltError, type ActivationTap, type BltErrorCode } from '@bytelatent/nn';
export {
  LocalEncoder,
  maxPoolPatches,
  type EncoderPatches,
  type LocalEncoderConfig,
  type LocalEncoderOptions,
  type LocalEncoderOutput,
  type LocalEncoderScopes,
} from './local-encoder.js';
