/** Machine-readable reason of a {@link NgramHashError}. */
export type NgramHashErrorCode = 'INVALID_TOKEN' | 'INVALID_ARGUMENT';

/** Every error thrown by `@bytelatent/ngram-hash`; `code` says what went wrong. */
export class NgramHashError extends Error {
  readonly code: NgramHashErrorCode;

  constructor(code: NgramHashErrorCode, message: string) {
    super(message);
    this.name = 'NgramHashError';
    this.code = code;
  }
}
