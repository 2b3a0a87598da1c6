import { describe, expect, it } from 'vitest';
import { BOE_ID, BOS_ID, EOS_ID } from './constants.js';
import { BytesError } from './errors.js';
import { packDocuments } from './packing.js';
import { encode } from './tokenizer.js';

const rows = (docs: string[], rowLength: number, strategy?: 'concat' | 'per-document') =>
  [...packDocuments(docs, { rowLength, strategy })].map((r) => ({
    tokens: Array.from(r.tokens),
    targets: Array.from(r.targets),
    mask: Array.from(r.mask),
  }));

describe('packDocuments', () => {
  it('concatenates documents with BOS/EOS and cuts rows that overlap by one id', () => {
    // stream: 1 'a' 'b' 2 1 'c' 2  (7 ids, 6 targets)
    const out = rows(['ab', 'c'], 4);
    expect(out).toEqual([
      { tokens: [BOS_ID, 101, 102, EOS_ID], targets: [101, 102, EOS_ID, BOS_ID], mask: [1, 1, 1, 1] },
      { tokens: [BOS_ID, 103, BOE_ID, BOE_ID], targets: [103, EOS_ID, BOE_ID, BOE_ID], mask: [1, 1, 0, 0] },
    ]);
  });

  it('scores every id of the stream but the first exactly once', () => {
    const docs = ['hello world', 'second document here', 'x', 'and a long final one ......'];
    const stream = docs.flatMap((d) => Array.from(encode(d)));
    for (const rowLength of [1, 2, 3, 7, 16, 200]) {
      const targets = rows(docs, rowLength).flatMap((r) => r.targets.filter((_, i) => r.mask[i] === 1));
      expect(targets).toEqual(stream.slice(1));
    }
  });

  it("keeps documents on separate rows with 'per-document'", () => {
    const out = rows(['abcde', 'f'], 4, 'per-document');
    expect(out).toEqual([
      { tokens: [BOS_ID, 101, 102, 103], targets: [101, 102, 103, 104], mask: [1, 1, 1, 1] },
      { tokens: [104, 105, BOE_ID, BOE_ID], targets: [105, EOS_ID, BOE_ID, BOE_ID], mask: [1, 1, 0, 0] },
      { tokens: [BOS_ID, 106, BOE_ID, BOE_ID], targets: [106, EOS_ID, BOE_ID, BOE_ID], mask: [1, 1, 0, 0] },
    ]);
  });

  it('is lazy over an unbounded iterable', () => {
    function* forever(): Generator<string> {
      for (;;) yield 'abc';
    }
    const it = packDocuments(forever(), { rowLength: 8 });
    for (let i = 0; i < 100; i++) expect(it.next().done).toBe(false);
  });

  it('yields nothing for no documents and rejects bad options', () => {
    expect(rows([], 4)).toEqual([]);
    expect(() => rows(['a'], 0)).toThrow(BytesError);
    expect(() => [...packDocuments(['a'], { rowLength: 4, strategy: 'x' as 'concat' })]).toThrow(/strategy/);
  });
});
