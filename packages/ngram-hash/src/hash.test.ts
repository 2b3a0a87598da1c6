import { describe, expect, it } from 'vitest';
import { NgramHashError } from './errors.js';
import { byteGroupHashIds, byteGroupHashIdsMulti, rollingPolynomialHash } from './hash.js';
import { HASH_PRIMES } from './primes.js';
import { byteGroupHashIdsReference, rollingPolynomialHashReference } from './reference-hash.js';

// Comparisons with the BigInt oracle are slow by design; they assert results, never time.
const ORACLE_TIMEOUT_MS = 120_000;

function randomTokens(seed: number, length: number, maxId = 260): Int32Array {
  let s = seed >>> 0;
  const out = new Int32Array(length);
  for (let i = 0; i < length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s % maxId;
  }
  return out;
}

const HELLO = [1, 76, 105, 112, 112, 115];
const A_BLT_HAS = [1, 69, 36, 70, 80, 88, 36, 108, 101, 119];

describe('rollingPolynomialHash', () => {
  it('reproduces the signed int64 powers of 1000000007 (architecture §2.2)', () => {
    // With a single 1 at position 0, position j of an 8-gram hash holds prime^(7-j).
    const h = rollingPolynomialHash([1, 0, 0, 0, 0, 0, 0, 0], 8);
    expect(Array.from(h).reverse()).toEqual([
      1n,
      1000000007n,
      1000000014000000049n,
      -4377642754154037417n,
      2173964608407773537n,
      7232439895113528231n,
      1423083718267137937n,
      9015250055358150391n,
    ]);
  });

  it('matches the raw reference value of a golden 3-gram', () => {
    // ../shared/golden/tiny, case ascii, hash_raw_int64_before_mod f0.n3, first two positions.
    expect(rollingPolynomialHash([1, 76], 3).slice(0, 2)).toEqual(BigInt64Array.from([1000000014000000049n, 2213024770161797267n]));
  });

  it(
    'equals the BigInt reference on a large random corpus, for every prime and n in {1, 3, 8, 12}',
    () => {
      const tokens = randomTokens(7, 20_000);
      for (let f = 0; f < HASH_PRIMES.length; f++) {
        for (const n of [1, 3, 8, 12]) {
          expect(rollingPolynomialHash(tokens, n, f)).toEqual(rollingPolynomialHashReference(tokens, n, f));
        }
      }
    },
    ORACLE_TIMEOUT_MS,
  );

  it('handles negative ids (PAD = -1) exactly', () => {
    const tokens = Int32Array.from([-1, 5, -1, 259, 0, -1, -1, 7, 3]);
    for (const n of [3, 6, 8]) {
      expect(rollingPolynomialHash(tokens, n, 2)).toEqual(rollingPolynomialHashReference(tokens, n, 2));
    }
  });

  it('falls back to BigInt when ids are too large for exact doubles', () => {
    const tokens = [2 ** 30, 2 ** 31 - 1, 12345678, 1];
    expect(rollingPolynomialHash(tokens, 4, 1)).toEqual(rollingPolynomialHashReference(tokens, 4, 1));
  });

  it('restarts windows at each row of a batch', () => {
    const rowA = randomTokens(1, 10);
    const rowB = randomTokens(2, 10);
    const batch = new Int32Array([...rowA, ...rowB]);
    const h = rollingPolynomialHash(batch, 5, 0, 10);
    expect(h.slice(10)).toEqual(rollingPolynomialHash(rowB, 5));
    expect(h.slice(0, 10)).toEqual(rollingPolynomialHash(rowA, 5));
  });

  it('rejects bad tokens and arguments with typed errors', () => {
    expect(() => rollingPolynomialHash([1, 2.5], 3)).toThrow(/tokens\[1\] = 2.5/);
    expect(() => rollingPolynomialHash([1, 2], 0)).toThrow(NgramHashError);
    expect(() => rollingPolynomialHash([1, 2], 3, 11)).toThrow(/hashFunction must be an integer in \[0, 11\)/);
    expect(() => rollingPolynomialHash([1, 2, 3], 3, 0, 2)).toThrow(/not a multiple of rowLength/);
    expect(() => rollingPolynomialHash('abc' as unknown as number[], 3)).toThrow(NgramHashError);
  });

  it('returns an empty result for an empty sequence', () => {
    expect(rollingPolynomialHash([], 3)).toEqual(new BigInt64Array(0));
    expect(byteGroupHashIds([], 3, { vocabSize: 10 })).toEqual(new Int32Array(0));
  });
});

describe('byteGroupHashIds', () => {
  it('matches the architecture §15.2 vectors (vocab 500002)', () => {
    const ids = (t: number[], n: number) => Array.from(byteGroupHashIds(t, n, { vocabSize: 500002 }));
    expect(ids(HELLO, 3)).toEqual([443987, 124875, 393970, 386145, 358223, 190185]);
    expect(ids(HELLO, 4)).toEqual([437197, 433869, 117936, 254402, 246577, 30240]);
    expect(ids(HELLO, 5)).toEqual([123201, 168913, 27892, 170862, 307328, 265602]);
    expect(ids(HELLO, 6)).toEqual([166353, 160907, 92310, 405250, 48218, 280239]);
    expect(ids(HELLO, 7)).toEqual([34117, 338221, 15158, 281878, 94816, 340137]);
    expect(ids(HELLO, 8)).toEqual([172383, 205585, 456240, 129346, 299568, 322649]);
    expect(ids(A_BLT_HAS, 3)).toEqual([443987, 16978, 400950, 321279, 125336, 233820, 325162, 385732, 393791, 10044]);
    expect(ids(A_BLT_HAS, 8)).toEqual([172383, 209416, 445626, 72328, 70820, 361678, 203646, 354462, 301812, 336868]);
  });

  it('uses a floor modulo: indices of negative hashes are non-negative', () => {
    const tokens = randomTokens(3, 5000);
    const raw = rollingPolynomialHash(tokens, 4);
    const ids = byteGroupHashIds(tokens, 4, { vocabSize: 1000 });
    expect(raw.some((h) => h < 0n)).toBe(true);
    for (let j = 0; j < raw.length; j++) {
      expect(ids[j]).toBe(Number(((raw[j]! % 1000n) + 1000n) % 1000n));
    }
  });

  it(
    'equals the BigInt reference for many table sizes, including the BigInt fallback above 2^26',
    () => {
      const tokens = randomTokens(11, 20_000);
      for (const vocabSize of [1, 2, 1000, 30000, 500002, 2 ** 26, 2 ** 26 + 1, 2 ** 31 - 1]) {
        for (const f of [0, 1, 2]) {
          expect(byteGroupHashIds(tokens, 6, { vocabSize, hashFunction: f })).toEqual(
            byteGroupHashIdsReference(tokens, 6, { vocabSize, hashFunction: f }),
          );
        }
      }
    },
    ORACLE_TIMEOUT_MS,
  );

  it('rejects a bad table size', () => {
    expect(() => byteGroupHashIds([1], 3, { vocabSize: 0 })).toThrow(/vocabSize must be an integer >= 1/);
    expect(() => byteGroupHashIds([1], 3, { vocabSize: 2 ** 32 })).toThrow(/int32/);
  });
});

describe('byteGroupHashIdsMulti', () => {
  it(
    'equals one call per size, for any order, repeats and row layout',
    () => {
      const tokens = randomTokens(5, 3000);
      for (const sizes of [[3, 4, 5, 6, 7, 8], [8, 3], [5, 5, 2], [1], [12, 1, 6]]) {
        for (const rowLength of [undefined, 1, 6, 3000]) {
          const multi = byteGroupHashIdsMulti(tokens, sizes, { vocabSize: 500002, hashFunction: 4, rowLength });
          sizes.forEach((n, i) => {
            expect(multi[i]).toEqual(byteGroupHashIdsReference(tokens, n, { vocabSize: 500002, hashFunction: 4, rowLength }));
          });
        }
      }
    },
    ORACLE_TIMEOUT_MS,
  );

  it('returns nothing for no sizes', () => {
    expect(byteGroupHashIdsMulti([1, 2], [], { vocabSize: 5 })).toEqual([]);
  });
});
