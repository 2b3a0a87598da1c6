import { NgramHashError } from './errors.js';

/**
 * The reference's hash primes (architecture §2.2): hash function `f` multiplies by `HASH_PRIMES[f]`.
 * Released BLT models use only function 0.
 */
export const HASH_PRIMES: readonly bigint[] = Object.freeze([
  1000000007n,
  5915587277n,
  1500450271n,
  3267000013n,
  5754853343n,
  4093082899n,
  9576890767n,
  3628273133n,
  2860486313n,
  5463458053n,
  3367900313n,
]);

const U64 = (1n << 64n) - 1n;

/** @internal Throws unless `hashFunction` indexes {@link HASH_PRIMES}. */
export function checkHashFunction(hashFunction: number): void {
  if (!Number.isInteger(hashFunction) || hashFunction < 0 || hashFunction >= HASH_PRIMES.length) {
    throw new NgramHashError('INVALID_ARGUMENT', `hashFunction must be an integer in [0, ${HASH_PRIMES.length}), got ${hashFunction}`);
  }
}

/** @internal Throws unless `value` is an integer >= `min`. */
export function checkInteger(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new NgramHashError('INVALID_ARGUMENT', `${name} must be an integer >= ${min}, got ${value}`);
  }
}

/** @internal `prime^m mod 2^64` for m = 0..count-1, as unsigned BigInts. */
export function primePowers(hashFunction: number, count: number): bigint[] {
  const prime = HASH_PRIMES[hashFunction]!;
  const powers: bigint[] = [];
  let p = 1n;
  for (let m = 0; m < count; m++) {
    powers.push(p);
    p = (p * prime) & U64;
  }
  return powers;
}
