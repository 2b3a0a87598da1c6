import { CodedError } from '@bytelatent/bytes';

/**
 * Machine-readable reason of a {@link BltError}.
 *
 * - `INVALID_ARGUMENT`: an input (token ids, patch lengths, rows) is missing, of the wrong type or out of range.
 * - `CONFIG_MISMATCH`: the model arguments are invalid or describe a variant this port does not support.
 * - `INVALID_CHECKPOINT`: a checkpoint lacks a tensor, has an unexpected one, or one of the wrong shape.
 * - `SHAPE_MISMATCH`: a tensor handed to a model component has the wrong shape.
 */
export type BltErrorCode = 'INVALID_ARGUMENT' | 'CONFIG_MISMATCH' | 'INVALID_CHECKPOINT' | 'SHAPE_MISMATCH';

/**
 * Every error thrown by the BLT model packages (`@bytelatent/local-encoder`, `latent-transformer`,
 * `local-decoder`, `blt`). `code` says what went wrong; the message says where and what was expected.
 */
export class BltError extends CodedError<BltErrorCode> {
  override readonly name = 'BltError';
}
