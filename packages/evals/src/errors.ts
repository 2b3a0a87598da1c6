import { CodedError } from '@bytelatent/bytes';

/**
 * Machine-readable reason of an {@link EvalError}.
 *
 * - `INVALID_ARGUMENT`: an option or argument is missing, of the wrong type or out of range.
 * - `EMPTY_INPUT`: there is nothing to evaluate (no byte, no word, no patch).
 * - `INVALID_MODEL_OUTPUT`: a model returned log-probabilities of the wrong length, or a NaN / positive value.
 * - `DATA_UNAVAILABLE`: a data file (word list, UDHR text, model file) cannot be found or read.
 * - `INVALID_MODEL_FILE`: a model file is not one this package can load.
 */
export type EvalErrorCode = 'INVALID_ARGUMENT' | 'EMPTY_INPUT' | 'INVALID_MODEL_OUTPUT' | 'DATA_UNAVAILABLE' | 'INVALID_MODEL_FILE';

/**
 * Every error thrown by `@bytelatent/evals`. `code` says what went wrong; the message says where
 * (argument name, position, value) and what was expected.
 */
export class EvalError extends CodedError<EvalErrorCode> {
  override readonly name = 'EvalError';
}

/** @internal Throws `INVALID_ARGUMENT` unless `value` is an integer >= `min`. */
export function checkInteger(name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new EvalError('INVALID_ARGUMENT', `${name} must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}

/** @internal Throws `INVALID_ARGUMENT` unless `value` is a finite number in `[min, max]`. */
export function checkNumber(name: string, value: unknown, min = Number.NEGATIVE_INFINITY, max = Number.POSITIVE_INFINITY): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    const range = `${Number.isFinite(min) ? `>= ${min}` : ''}${Number.isFinite(min) && Number.isFinite(max) ? ' and ' : ''}${Number.isFinite(max) ? `<= ${max}` : ''}`;
    throw new EvalError('INVALID_ARGUMENT', `${name} must be a finite number${range ? ` ${range}` : ''}, got ${String(value)}`);
  }
  return value;
}
