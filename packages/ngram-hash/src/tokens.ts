import { NgramHashError } from './errors.js';

/** @internal Token ids as an Int32Array (validated) and their largest absolute value. */
export function toTokenArray(tokens: ArrayLike<number>): { values: Int32Array; maxAbs: number } {
  if (tokens === null || typeof tokens !== 'object' || typeof tokens.length !== 'number') {
    throw new NgramHashError('INVALID_ARGUMENT', 'tokens must be an array or typed array of integers');
  }
  let maxAbs = 0;
  if (tokens instanceof Int32Array || tokens instanceof Uint8Array || tokens instanceof Uint16Array || tokens instanceof Int16Array) {
    for (let i = 0; i < tokens.length; i++) {
      const a = Math.abs(tokens[i]!);
      if (a > maxAbs) maxAbs = a;
    }
    return { values: tokens instanceof Int32Array ? tokens : Int32Array.from(tokens), maxAbs };
  }
  const values = new Int32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const x = tokens[i]!;
    if (!Number.isInteger(x) || Math.abs(x) > 0x7fffffff) {
      throw new NgramHashError('INVALID_TOKEN', `tokens[${i}] = ${x} is not a 32-bit integer token id`);
    }
    values[i] = x;
    const a = Math.abs(x);
    if (a > maxAbs) maxAbs = a;
  }
  return { values, maxAbs };
}
