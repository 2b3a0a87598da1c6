/** Machine-readable reason of a {@link BytesError}. */
export type BytesErrorCode = 'INVALID_TOKEN_ID' | 'INVALID_UTF8' | 'INVALID_TEXT' | 'INPUT_TOO_LARGE' | 'INVALID_ARGUMENT';

/**
 * The base of every error bytelatent throws, in every package: a machine-readable `code` (each
 * package's union of reasons), a message that says where and what was expected, an optional
 * `cause`, and `name` set to the class's name. `e instanceof CodedError` tells a bytelatent error
 * (bad input, a refused file) from any other failure.
 */
export class CodedError<Code extends string = string> extends Error {
  readonly code: Code;

  /**
   * @param code - the machine-readable reason
   * @param message - what went wrong, where, and what was expected
   * @param options - the underlying error, if any (`cause`)
   */
  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * Every error thrown by `@bytelatent/bytes`. `code` says what went wrong; the message says where
 * (argument name, index, value) and what was expected.
 */
export class BytesError extends CodedError<BytesErrorCode> {
  override readonly name = 'BytesError';
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
