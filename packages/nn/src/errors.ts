import { CodedError } from '@bytelatent/bytes';

/**
 * Machine-readable reason of an {@link NnError}. `TOO_LARGE`: a model would get more parameters than
 * its registry's `maxParameters` allows (e.g. arguments read from a checkpoint that describe a model
 * bigger than the checkpoint's weights); nothing of the offending weight was allocated.
 * `NON_FINITE`: a NaN or infinite value where training cannot go on (a gradient norm).
 */
export type NnErrorCode = 'INVALID_ARGUMENT' | 'SHAPE_MISMATCH' | 'INVALID_CHECKPOINT' | 'TOO_LARGE' | 'NON_FINITE';

/** Every error thrown by the model building blocks of `@bytelatent/nn`. */
export class NnError extends CodedError<NnErrorCode> {
  override readonly name = 'NnError';
}

/** @internal Throws `INVALID_ARGUMENT` unless `value` is an integer >= `min`. */
export function checkInt(name: string, value: unknown, min: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new NnError('INVALID_ARGUMENT', `${name} must be an integer >= ${min}, got ${String(value)}`);
  }
}

/** @internal Throws `SHAPE_MISMATCH` naming the argument, the expected and the actual shape. */
export function checkShape(name: string, actual: readonly number[], expected: ReadonlyArray<number | null>): void {
  const ok = actual.length === expected.length && expected.every((e, i) => e === null || e === actual[i]);
  if (!ok) {
    const fmt = (s: ReadonlyArray<number | null>) => `[${s.map((d) => (d === null ? '*' : d)).join(', ')}]`;
    throw new NnError('SHAPE_MISMATCH', `${name} must have shape ${fmt(expected)}, got ${fmt(actual)}`);
  }
}
