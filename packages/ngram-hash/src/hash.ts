import { BOE_ID } from '@bytelatent/bytes';
import { NgramHashError } from './errors.js';
import { hashIdsWasm } from './hash-wasm.js';
import { checkHashFunction, checkInteger, primePowers } from './primes.js';
import { rollingPolynomialHashReference } from './reference-hash.js';
import { toTokenArray } from './tokens.js';

const TWO_32 = 4294967296;
const INV_TWO_32 = 1 / TWO_32;
const TWO_31 = 2147483648;
// Every integer below 2^53 is exact in a double.
const EXACT = 2 ** 53;
/**
 * Largest table size whose floor-modulo is fused into the hash loop: `hi·(2^32 mod V) + lo`
 * must stay below 2^53 with |hi| <= 2^31. Larger tables take the exact BigInt modulo.
 */
const MAX_FUSED_VOCAB = 2 ** 21;

let useWasm = true;

/**
 * Runs `fn` with the JavaScript hash core instead of the WebAssembly one (`wasm/hash.wat`), for
 * benchmarks and tests; the results are the same. Where WebAssembly cannot be compiled (a page
 * whose Content-Security-Policy forbids it) the JavaScript core is used anyway.
 */
export function withJavaScriptHashCore<T>(fn: () => T): T {
  const saved = useWasm;
  useWasm = false;
  try {
    return fn();
  } finally {
    useWasm = saved;
  }
}

/**
 * The hash core. For one hash function it computes, for every requested group size n and
 * position j, `Σ_{m<n} x[j-n+1+m] · prime^m mod 2^64` (zeros before each row start).
 *
 * Two facts make it fast and exact without BigInt:
 * 1. Sizes share work. With `F(s, n) = Σ_{m<n} x[s+m] · prime^m` (window starting at s),
 *    `F(s, n+1) = F(s, n) + x[s+n] · prime^n`, and the hash of size n at position j is
 *    `F(j-n+1, n)`. So one pass over window starts yields every size with max(n) terms per
 *    byte instead of Σ n.
 * 2. Split `prime^m mod 2^64` into 32-bit halves (lo_m, hi_m). The sums `Σ x·lo_m` and
 *    `Σ x·hi_m` stay below `max(n) · max|x| · 2^32 < 2^53` (checked by the caller), so doubles
 *    hold them exactly; one carry recombines them into the wrapped int64 `hi·2^32 + lo`.
 *
 * With `vocabSize` set it writes the floor modulo (torch `%`) directly; otherwise it writes the
 * raw value's signed high half into `outHi` and unsigned low half into `outLo`.
 *
 * @param sizes - distinct group sizes, ascending
 * @returns per size, an array view of length `ids.length`
 */
function hashCore(
  ids: Int32Array,
  sizes: readonly number[],
  hashFunction: number,
  rowLength: number,
  vocabSize: number | undefined,
): { ids: Int32Array[]; hi: Int32Array[]; lo: Uint32Array[] } {
  const maxN = sizes[sizes.length - 1]!;
  const powers = primePowers(hashFunction, maxN);
  const powLo = Float64Array.from(powers, (p) => Number(p & 0xffffffffn));
  const powHi = Float64Array.from(powers, (p) => Number(p >> 32n));
  const sz = Int32Array.from(sizes);
  const k = sizes.length;
  const n = ids.length;
  const raw = vocabSize === undefined;
  const v = vocabSize ?? 1;
  const invV = 1 / v;
  const twoPow32ModV = TWO_32 % v;
  // Output rows are laid out per size; position j of size s lives at s*n + j.
  const outIds = new Int32Array(raw ? 0 : k * n);
  const outHi = new Int32Array(raw ? k * n : 0);
  const outLo = new Uint32Array(raw ? k * n : 0);
  const pad = maxN - 1;
  // Each row is copied behind max(n)-1 BOE ids (architecture §2.2: windows read 0 before the row start).
  const padded = new Int32Array(pad + Math.min(rowLength, n)).fill(BOE_ID, 0, pad);
  for (let rowStart = 0; rowStart < n; rowStart += rowLength) {
    const rowEnd = Math.min(rowStart + rowLength, n);
    const plen = pad + rowEnd - rowStart;
    padded.set(ids.subarray(rowStart, rowEnd), pad);
    // p: window start in `padded`; the size-n window starting at p ends at output position
    // rowStart + p + n - 1 - pad. Starts p < pad - (n - 1) would end before the row: skipped.
    for (let p = 0; p < plen; p++) {
      let sumLo = 0;
      let sumHi = 0;
      let m = 0;
      for (let s = 0; s < k; s++) {
        const size = sz[s]!;
        if (p + size > plen) break;
        for (; m < size; m++) {
          const x = padded[p + m]!;
          sumLo += x * powLo[m]!;
          sumHi += x * powHi[m]!;
        }
        const j = p + size - 1 - pad;
        if (j < 0) continue;
        const carry = Math.floor(sumLo * INV_TWO_32);
        const lo = sumLo - carry * TWO_32;
        let hi = sumHi + carry;
        hi -= Math.floor(hi * INV_TWO_32) * TWO_32;
        if (hi >= TWO_31) hi -= TWO_32;
        const o = s * n + rowStart + j;
        if (raw) {
          outHi[o] = hi;
          outLo[o] = lo;
        } else {
          // value = hi·2^32 + lo ≡ hi·(2^32 mod V) + lo (mod V); exact below 2^53.
          const x = hi * twoPow32ModV + lo;
          let r = x - Math.floor(x * invV) * v;
          if (r < 0) r += v;
          else if (r >= v) r -= v;
          outIds[o] = r;
        }
      }
    }
  }
  const view = <T extends Int32Array | Uint32Array>(a: T, s: number): T => a.subarray(s * n, (s + 1) * n) as T;
  return {
    ids: raw ? [] : sizes.map((_, s) => view(outIds, s)),
    hi: raw ? sizes.map((_, s) => view(outHi, s)) : [],
    lo: raw ? sizes.map((_, s) => view(outLo, s)) : [],
  };
}

interface Prepared {
  readonly values: Int32Array;
  readonly rowLength: number;
  /** The doubles in {@link hashCore} stay exact for these ids and sizes. */
  readonly exact: boolean;
}

function prepare(tokens: ArrayLike<number>, groupSizes: readonly number[], hashFunction: number, rowLength: number | undefined): Prepared {
  groupSizes.forEach((n) => checkInteger('groupSize', n, 1));
  checkHashFunction(hashFunction);
  const { values, maxAbs } = toTokenArray(tokens);
  const row = rowLength ?? Math.max(values.length, 1);
  checkInteger('rowLength', row, 1);
  if (values.length % row !== 0) {
    throw new NgramHashError('INVALID_ARGUMENT', `tokens.length ${values.length} is not a multiple of rowLength ${row}`);
  }
  const maxN = Math.max(...groupSizes);
  return { values, rowLength: row, exact: maxAbs * maxN * TWO_32 < EXACT };
}

function checkVocabSize(vocabSize: number): void {
  checkInteger('vocabSize', vocabSize, 1);
  if (vocabSize > 0x7fffffff) {
    throw new NgramHashError('INVALID_ARGUMENT', `vocabSize must fit an int32 index, got ${vocabSize}`);
  }
}

function rawToBigInt(hi: Int32Array, lo: Uint32Array): BigInt64Array {
  const out = new BigInt64Array(hi.length);
  for (let j = 0; j < hi.length; j++) out[j] = (BigInt(hi[j]!) << 32n) | BigInt(lo[j]!);
  return out;
}

function floorMod(raw: BigInt64Array, vocabSize: number): Int32Array {
  const v = BigInt(vocabSize);
  return Int32Array.from(raw, (h) => Number(((h % v) + v) % v));
}

/**
 * The reference rolling polynomial hash (architecture §2.2, golden Semantics 4), bit-exact. Position `j`
 * hashes the window `tokens[j-n+1 .. j]` (zeros before the row start), the oldest id times
 * `prime^0` and the newest times `prime^(n-1)`, wrapping like int64.
 *
 * @param tokens - token ids (byte + 4 and special ids)
 * @param groupSize - n, the window length
 * @param hashFunction - index into {@link HASH_PRIMES} (default 0)
 * @param rowLength - if set, `tokens` is a batch of rows of this length; windows restart per row
 * @returns the signed 64-bit hash at every position
 * @throws {NgramHashError} `INVALID_TOKEN` for a non-integer id; `INVALID_ARGUMENT` for a bad size
 */
export function rollingPolynomialHash(tokens: ArrayLike<number>, groupSize: number, hashFunction = 0, rowLength?: number): BigInt64Array {
  const p = prepare(tokens, [groupSize], hashFunction, rowLength);
  if (!p.exact) return rollingPolynomialHashReference(p.values, groupSize, hashFunction, p.rowLength);
  const core = hashCore(p.values, [groupSize], hashFunction, p.rowLength, undefined);
  return rawToBigInt(core.hi[0]!, core.lo[0]!);
}

/** Options of {@link byteGroupHashIds}. */
export interface HashIdsOptions {
  /** Size of the hash embedding table (`encoder_hash_byte_group_vocab`). */
  readonly vocabSize: number;
  /** Index into {@link HASH_PRIMES}. Default 0. */
  readonly hashFunction?: number;
  /** If set, `tokens` is a batch of rows of this length; windows restart at each row. */
  readonly rowLength?: number;
}

/**
 * Hash table indices for several group sizes at once, sharing the work between sizes (much
 * faster than one call per size). Sizes may come in any order and repeat.
 *
 * @param tokens - token ids
 * @param groupSizes - the window lengths n
 * @param options - table size, hash function, row length
 * @returns per entry of `groupSizes`, one table index per position
 * @throws {NgramHashError} on a bad token or argument
 */
export function byteGroupHashIdsMulti(tokens: ArrayLike<number>, groupSizes: readonly number[], options: HashIdsOptions): Int32Array[] {
  const { vocabSize, hashFunction = 0, rowLength } = options;
  checkVocabSize(vocabSize);
  if (groupSizes.length === 0) return [];
  const p = prepare(tokens, groupSizes, hashFunction, rowLength);
  const distinct = [...new Set(groupSizes)].sort((a, b) => a - b);
  const perSize = hashIdsPerSize(p, distinct, hashFunction, vocabSize);
  return groupSizes.map((n) => perSize[distinct.indexOf(n)]!);
}

/** Floor-mod indices per distinct size (ascending), by the fastest exact core for the input. */
function hashIdsPerSize(p: Prepared, distinct: readonly number[], hashFunction: number, vocabSize: number): Int32Array[] {
  // WebAssembly first: its int64 arithmetic is exact for any int32 ids.
  if (useWasm && vocabSize <= MAX_FUSED_VOCAB) {
    const viaWasm = hashIdsWasm(p.values, distinct, primePowers(hashFunction, distinct[distinct.length - 1]!), p.rowLength, vocabSize);
    if (viaWasm !== undefined) return viaWasm;
  }
  if (!p.exact) return distinct.map((n) => floorMod(rollingPolynomialHashReference(p.values, n, hashFunction, p.rowLength), vocabSize));
  if (vocabSize > MAX_FUSED_VOCAB) {
    const core = hashCore(p.values, distinct, hashFunction, p.rowLength, undefined);
    return distinct.map((_, s) => floorMod(rawToBigInt(core.hi[s]!, core.lo[s]!), vocabSize));
  }
  return hashCore(p.values, distinct, hashFunction, p.rowLength, vocabSize).ids;
}

/**
 * Hash embedding table indices for one group size: the reference's `byte_group_hash_function`,
 * i.e. the int64 hash taken floor-modulo the table size (torch `%`, always in `[0, vocabSize)`).
 *
 * @param tokens - token ids
 * @param groupSize - n
 * @param options - table size, hash function, row length
 * @returns one table index per position
 * @throws {NgramHashError} on a bad token or argument
 */
export function byteGroupHashIds(tokens: ArrayLike<number>, groupSize: number, options: HashIdsOptions): Int32Array {
  return byteGroupHashIdsMulti(tokens, [groupSize], options)[0]!;
}
