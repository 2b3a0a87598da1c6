import { CodedError } from '@bytelatent/bytes';

/** Machine-readable reason of a {@link NgramHashError}. */
export type NgramHashErrorCode = 'INVALID_TOKEN' | 'INVALID_ARGUMENT';

/** Every error thrown by `@bytelatent/ngram-hash`; `code` says what went wrong. */
export class NgramHashError extends CodedError<NgramHashErrorCode> {
  override readonly name = 'NgramHashError';
}
