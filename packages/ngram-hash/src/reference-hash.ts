import { BOE_ID } from '@bytelatent/bytes';
import { checkHashFunction, checkInteger, primePowers } from './primes.js';
import { toTokenArray } from './tokens.js';

/**
 * The reference rolling polynomial hash with BigInt, written for clarity, not speed: the oracle
 * that the fast {@link rollingPolynomialHash} is tested against (architecture §2.2, golden Semantics 4).
 *
 * Window at position j: `tokens[j-n+1 .. j]`, reading 0 before the start of the row; the oldest id
 * is multiplied by `prime^0`, the current one by `prime^(n-1)`; all arithmetic wraps like int64.
 *
 * @param tokens - token ids of one row (or of several rows, see `rowLength`)
 * @param groupSize - n, the window length
 * @param hashFunction - index into the primes (default 0)
 * @param rowLength - if set, `tokens` holds rows of this length and windows restart at each row
 * @returns the signed 64-bit hash at every position
 * @throws {NgramHashError} on a non-integer token or a bad argument
 */
export function rollingPolynomialHashReference(
  tokens: ArrayLike<number>,
  groupSize: number,
  hashFunction = 0,
  rowLength?: number,
): BigInt64Array {
  checkInteger('groupSize', groupSize, 1);
  checkHashFunction(hashFunction);
  const ids = toTokenArray(tokens).values;
  const row = rowLength ?? Math.max(ids.length, 1);
  checkInteger('rowLength', row, 1);
  const powers = primePowers(hashFunction, groupSize);
  const out = new BigInt64Array(ids.length);
  for (let j = 0; j < ids.length; j++) {
    const rowStart = j - (j % row);
    let h = 0n;
    for (let m = 0; m < groupSize; m++) {
      const idx = j - groupSize + 1 + m;
      const x = BigInt(idx >= rowStart ? ids[idx]! : BOE_ID);
      h += x * powers[m]!;
    }
    out[j] = BigInt.asIntN(64, h);
  }
  return out;
}

/**
 * Reference table indices with BigInt: the floor modulo (torch `%`, result in `[0, vocabSize)`) of
 * {@link rollingPolynomialHashReference}.
 *
 * @param tokens - token ids
 * @param groupSize - n
 * @param options - `vocabSize` (the table size), `hashFunction`, `rowLength`
 * @returns indices into the hash embedding table
 */
export function byteGroupHashIdsReference(
  tokens: ArrayLike<number>,
  groupSize: number,
  options: { readonly vocabSize: number; readonly hashFunction?: number; readonly rowLength?: number },
): Int32Array {
  checkInteger('vocabSize', options.vocabSize, 1);
  const v = BigInt(options.vocabSize);
  const raw = rollingPolynomialHashReference(tokens, groupSize, options.hashFunction ?? 0, options.rowLength);
  return Int32Array.from(raw, (h) => Number(((h % v) + v) % v));
}
