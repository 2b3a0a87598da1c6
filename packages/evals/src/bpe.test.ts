import { describe, expect, it } from 'vitest';
import { BytePairTokenizer, byteTokenizer, pieceStarts } from './bpe.js';
import { seededRandom } from './random.js';
import { expectCode } from './test-helpers.js';

const enc = (s: string) => new TextEncoder().encode(s);
const CORPUS = [
  'the cat sat on the mat. the dog sat on the log.\n',
  'The quick brown fox jumps over the lazy dog; 12345 + 678 = 13023.\n',
  'Ünïcödé wörds, Русский текст, 中文字符, and   spaces\t\ttabs.\n',
].map((s) => s.repeat(5));

describe('pre-tokenization', () => {
  it('cuts at class changes, one space joining the word after it', () => {
    const pieces = (s: string) => {
      const b = enc(s);
      const st = pieceStarts(b);
      return st.map((x, i) => new TextDecoder().decode(b.subarray(x, st[i + 1] ?? b.length)));
    };
    expect(pieces('a  b')).toEqual(['a', ' ', ' b']);
    expect(pieces('Hello, world!\n\nNew 42x')).toEqual(['Hello', ',', ' world', '!', '\n\n', 'New', ' 42', 'x']);
    expect(pieces('café naïve')).toEqual(['café', ' naïve']);
    expect(pieces('')).toEqual([]);
  });
});

describe('BytePairTokenizer', () => {
  it('trains deterministically, ties going to the smallest pair', () => {
    const a = BytePairTokenizer.train(CORPUS, { merges: 60 });
    const b = BytePairTokenizer.train(CORPUS.map(enc), { merges: 60 });
    expect(a.merges).toEqual(b.merges);
    expect(a.merges.length).toBe(60);
    expect(a.vocabSize).toBe(320);
    // "the" x3 and " the" x2: (t,h) and (h,e) both occur 5 times; (h,e) is the smaller pair.
    const t = BytePairTokenizer.train(['the the the'], { merges: 1 });
    expect(t.merges).toEqual([[104 + 4, 101 + 4]]);
  });

  it('stops when no pair occurs twice', () => {
    expect(BytePairTokenizer.train(['abc'], { merges: 10 }).merges).toEqual([]);
  });

  it('round-trips any bytes, invalid UTF-8 included, and compresses its training text', () => {
    const t = BytePairTokenizer.train(CORPUS, { merges: 100 });
    const r = seededRandom(3);
    const random = Uint8Array.from({ length: 2000 }, () => Math.floor(r() * 256));
    for (const bytes of [...CORPUS.map(enc), random, new Uint8Array(0), Uint8Array.of(0xc3, 0x28, 0xff)]) {
      const ids = t.encode(bytes);
      expect(Array.from(t.decode(ids))).toEqual(Array.from(bytes));
      for (const id of ids) expect(id).toBeGreaterThanOrEqual(4);
    }
    const text = enc(CORPUS.join(''));
    expect(text.length / t.encode(text).length).toBeGreaterThan(2);
  });

  it('streams: encoding up to stableLength and the rest separately gives the one-shot tokens', () => {
    const t = BytePairTokenizer.train(CORPUS, { merges: 100 });
    const bytes = enc(CORPUS.join(''));
    const r = seededRandom(5);
    const out: number[] = [];
    let pending = new Uint8Array(0);
    for (let i = 0; i < bytes.length;) {
      const n = 1 + Math.floor(r() * 20);
      const next = new Uint8Array(pending.length + Math.min(n, bytes.length - i));
      next.set(pending);
      next.set(bytes.subarray(i, i + n), pending.length);
      i += n;
      const cut = t.stableLength(next);
      out.push(...t.encode(next.subarray(0, cut)));
      pending = next.slice(cut);
    }
    out.push(...t.encode(pending));
    expect(out).toEqual(Array.from(t.encode(bytes)));
  });

  it('with no merges is the byte vocabulary (id = byte + 4)', () => {
    const t = byteTokenizer();
    expect(t.vocabSize).toBe(260);
    expect(Array.from(t.encode(enc('Hi!')))).toEqual([72 + 4, 105 + 4, 33 + 4]);
  });

  it('survives JSON, and rejects malformed merges', async () => {
    const t = BytePairTokenizer.train(CORPUS, { merges: 30 });
    const back = BytePairTokenizer.fromJSON(JSON.parse(JSON.stringify(t.toJSON())));
    expect(Array.from(back.encode(enc(CORPUS[0]!)))).toEqual(Array.from(t.encode(enc(CORPUS[0]!))));
    await expectCode(() => new BytePairTokenizer([[4, 300]]), 'INVALID_ARGUMENT');
    await expectCode(() => BytePairTokenizer.fromJSON({ merges: [] }), 'INVALID_ARGUMENT');
    await expectCode(() => BytePairTokenizer.train(['abc'], { merges: -1 }), 'INVALID_ARGUMENT');
    await expectCode(() => BytePairTokenizer.train([], { merges: 3 }), 'EMPTY_INPUT');
    await expectCode(() => t.decode([9999]), 'INVALID_ARGUMENT');
  });
});
