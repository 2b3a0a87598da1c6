import { CodedError } from '@bytelatent/bytes';

/** Machine-readable reason of a {@link TrainError}. */
export type TrainErrorCode =
  'INVALID_ARGUMENT' | 'CONFIG_INVALID' | 'DATA_UNAVAILABLE' | 'CHECKPOINT_INVALID' | 'CHECKPOINT_MISMATCH' | 'NON_FINITE_LOSS';

/** Errors of the training app; the message names the flag, file or value at fault. */
export class TrainError extends CodedError<TrainErrorCode> {
  override readonly name = 'TrainError';
}
