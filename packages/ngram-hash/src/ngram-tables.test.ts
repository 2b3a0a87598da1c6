import { describe, expect, it } from 'vitest';
import { encode } from '@bytelatent/bytes';
import { byteGroupHashIds } from './hash.js';
import { RELEASED_HASH_CONFIG, hashNgramConfigFromArgs, hashNgramTables } from './ngram-tables.js';

describe('hashNgramTables', () => {
  it('orders tables as func * groups + index(n)', () => {
    const tokens = encode('tables in reference order');
    const tables = hashNgramTables(tokens, { groupSizes: [3, 5], numFunctions: 3, vocabSize: 97 });
    expect(tables.map((t) => [t.tableIndex, t.hashFunction, t.groupSize])).toEqual([
      [0, 0, 3],
      [1, 0, 5],
      [2, 1, 3],
      [3, 1, 5],
      [4, 2, 3],
      [5, 2, 5],
    ]);
    expect(tables[3]!.ids).toEqual(byteGroupHashIds(tokens, 5, { vocabSize: 97, hashFunction: 1 }));
  });

  it('produces the released layout: six tables of 500002 rows', () => {
    const tables = hashNgramTables(encode('Hello', { eos: false }), RELEASED_HASH_CONFIG);
    expect(tables).toHaveLength(6);
    expect(Array.from(tables[0]!.ids)).toEqual([443987, 124875, 393970, 386145, 358223, 190185]);
  });

  it('reads reference argument names and validates them', () => {
    expect(
      hashNgramConfigFromArgs({
        encoder_hash_byte_group_size: [3, 4],
        encoder_hash_byte_group_nb_functions: 2,
        encoder_hash_byte_group_vocab: 1000,
      }),
    ).toEqual({ groupSizes: [3, 4], numFunctions: 2, vocabSize: 1000 });
    expect(() => hashNgramConfigFromArgs({ encoder_hash_byte_group_size: [3] })).toThrow(/numFunctions/);
    expect(() =>
      hashNgramConfigFromArgs({
        encoder_hash_byte_group_size: [],
        encoder_hash_byte_group_nb_functions: 1,
        encoder_hash_byte_group_vocab: 10,
      }),
    ).toThrow(/groupSizes/);
    expect(() => hashNgramTables([1], { groupSizes: [3], numFunctions: 12, vocabSize: 5 })).toThrow(/<= 11/);
  });
});
