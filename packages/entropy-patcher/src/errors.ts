import { CodedError } from '@bytelatent/bytes';

/**
 * Machine-readable reason of a {@link PatcherError}.
 *
 * - `INVALID_ARGUMENT`: an option or argument is missing, of the wrong type or out of range.
 * - `EMPTY_INPUT`: a row has no token, or there is nothing to work on.
 * - `INVALID_ENTROPIES`: the entropies do not match the tokens (length) or hold a NaN/infinite value.
 * - `INPUT_TOO_LONG`: a sequence is longer than the entropy model can read.
 * - `INVALID_CHECKPOINT`: a checkpoint file is malformed or lacks a tensor.
 * - `CONFIG_MISMATCH`: a checkpoint does not fit the configuration it is loaded with.
 * - `BACKEND_UNAVAILABLE`: the TensorFlow.js backend asked for cannot be initialised.
 */
export type PatcherErrorCode =
  | 'INVALID_ARGUMENT'
  | 'EMPTY_INPUT'
  | 'INVALID_ENTROPIES'
  | 'INPUT_TOO_LONG'
  | 'INVALID_CHECKPOINT'
  | 'CONFIG_MISMATCH'
  | 'BACKEND_UNAVAILABLE';

/**
 * Every error thrown by `@bytelatent/entropy-patcher`. `code` says what went wrong; the message
 * says where (argument name, position, value) and what was expected.
 */
export class PatcherError extends CodedError<PatcherErrorCode> {
  override readonly name = 'PatcherError';
}
