/** Machine-readable reason of a {@link BytesError}. */
export type BytesErrorCode = 'INVALID_TOKEN_ID' | 'INVALID_UTF8' | 'INVALID_TEXT' | 'INPUT_TOO_LARGE' | 'INVALID_ARGUMENT';

/**
 * Every error thrown by `@bytelatent/bytes`. `code` says what went wrong; the message says where
 * (argument name, index, value) and what was expected.
 */
export class BytesError extends Error {
  readonly code: BytesErrorCode;

  constructor(code: BytesErrorCode, message: string) {
    super(message);
    this.name = 'BytesError';
    this.code = code;
  }
}

/** @internal Throws unless `value` is an integer >= `min`. */
export function assertInteger(name: string, value: unknown, min: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new BytesError(
      'INVALID_ARGUMENT',
      `${name} must be an integer >= ${min}, got ${typeof value === 'number' ? value : typeof value}`,
    );
  }
}
