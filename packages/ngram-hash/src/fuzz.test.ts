// Seeded fuzzing: the 10,000 byte strings of tools/fuzz (invalid UTF-8, NUL, empty, up to
// 1 MiB) through the hash n-grams: right shapes, indices in range, equal to the BigInt reference,
// rows independent. Plain comparisons with one `expect` on failure keep the loop fast.
import { BYTE_OFFSET, encode } from '@bytelatent/bytes';
import { describe, expect, it } from 'vitest';
import { fuzzInputs, type FuzzInput } from '../../../tools/fuzz/seeded-bytes.js';
import { byteGroupHashIdsMulti } from './hash.js';
import { RELEASED_HASH_CONFIG, hashNgramTables } from './ngram-tables.js';
import { byteGroupHashIdsReference } from './reference-hash.js';

const COUNT = 10_000;
const inputs: FuzzInput[] = [...fuzzInputs({ count: COUNT })];
const SIZES = RELEASED_HASH_CONFIG.groupSizes;
/** The released table size (fused modulo), one past the fused limit (BigInt modulo), and 1. */
const VOCABS = [RELEASED_HASH_CONFIG.vocabSize, 2 ** 21 + 7, 1];

function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

describe('fuzz: hash n-grams on 10,000 seeded byte strings', () => {
  it('one table index per position and size, each in [0, vocab), for every input', () => {
    for (const { index, kind, bytes } of inputs) {
      const big = bytes.length > 8192;
      for (const tokens of big ? [encode(bytes)] : [encode(bytes), Int32Array.from(bytes, (b) => b + BYTE_OFFSET)]) {
        // Big inputs take the released table size (fused modulo); the BigInt-modulo path is slow on a MiB.
        const vocabSize = big ? VOCABS[0]! : VOCABS[index % VOCABS.length]!;
        const out = byteGroupHashIdsMulti(tokens, SIZES, { vocabSize });
        if (out.length !== SIZES.length) expect.fail(`input ${index} (${kind}): ${out.length} tables`);
        for (const ids of out) {
          if (ids.length !== tokens.length) expect.fail(`input ${index} (${kind}): ${ids.length} ids for ${tokens.length} tokens`);
          for (let i = 0; i < ids.length; i++) {
            const v = ids[i]!;
            if (!(Number.isInteger(v) && v >= 0 && v < vocabSize))
              expect.fail(`input ${index} (${kind}): id ${v} at ${i} outside [0, ${vocabSize})`);
          }
        }
      }
    }
  });

  it('equals the BigInt reference on every input up to 96 bytes, for three table sizes', () => {
    let checked = 0;
    for (const { index, kind, bytes } of inputs) {
      if (bytes.length > 96) continue;
      const tokens = encode(bytes);
      const vocabSize = VOCABS[index % VOCABS.length]!;
      const fast = byteGroupHashIdsMulti(tokens, SIZES, { vocabSize });
      SIZES.forEach((n, s) => {
        if (!same(fast[s]!, byteGroupHashIdsReference(tokens, n, { vocabSize })))
          expect.fail(`input ${index} (${kind}): n=${n}, vocab ${vocabSize} differs from the reference`);
      });
      checked++;
    }
    expect(checked).toBeGreaterThan(7000);
  });

  it('rows of a batch hash as if alone; several hash functions give one table each', () => {
    const rowLength = 64;
    const small = inputs.filter((x) => x.bytes.length >= rowLength).slice(0, 400);
    expect(small.length).toBe(400);
    for (let i = 0; i + 4 <= small.length; i += 4) {
      const rows = small.slice(i, i + 4).map((x) => Int32Array.from(x.bytes.subarray(0, rowLength), (b) => b + BYTE_OFFSET));
      const flat = new Int32Array(rows.length * rowLength);
      rows.forEach((r, k) => flat.set(r, k * rowLength));
      const config = { groupSizes: SIZES, numFunctions: 2, vocabSize: 30000 };
      const batched = hashNgramTables(flat, config, rowLength);
      expect(batched.map((t) => t.tableIndex)).toEqual([...Array(12).keys()]);
      rows.forEach((row, k) => {
        const alone = hashNgramTables(row, config);
        alone.forEach((t, j) => {
          if (!same(batched[j]!.ids.subarray(k * rowLength, (k + 1) * rowLength), t.ids)) {
            expect.fail(`inputs ${small[i + k]!.index}: table ${j} of row ${k} depends on the other rows`);
          }
        });
      });
    }
  });
});
