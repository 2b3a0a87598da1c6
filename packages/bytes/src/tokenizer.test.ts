import { describe, expect, it } from 'vitest';
import { BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE } from './constants.js';
import { BytesError } from './errors.js';
import { decode, decodeToBytes, encode } from './tokenizer.js';

function seededBytes(seed: number, length: number): Uint8Array {
  let s = seed >>> 0;
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

describe('encode', () => {
  it('matches the reference tokenizer fixture (architecture §1.2)', () => {
    const ids = Array.from(encode("Let's check if these tokenizers match!"));
    expect(ids.slice(0, 7)).toEqual([1, 80, 105, 120, 43, 119, 36]);
    expect(ids.slice(-2)).toEqual([37, 2]);
    expect(ids).toHaveLength(38 + 2);
  });

  it('adds BOS and EOS on request only', () => {
    expect(Array.from(encode('A'))).toEqual([BOS_ID, 65 + 4, EOS_ID]);
    expect(Array.from(encode('A', { bos: false }))).toEqual([69, EOS_ID]);
    expect(Array.from(encode('A', { eos: false }))).toEqual([BOS_ID, 69]);
    expect(Array.from(encode('', { bos: false, eos: false }))).toEqual([]);
    expect(Array.from(encode(''))).toEqual([BOS_ID, EOS_ID]);
  });

  it('encodes multi-byte characters byte by byte', () => {
    expect(Array.from(encode('é€😀', { bos: false, eos: false }))).toEqual(
      [0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80].map((b) => b + 4),
    );
  });

  it('accepts any byte array, including invalid UTF-8', () => {
    const bytes = new Uint8Array([0xff, 0x80, 0x00, 0xc3]);
    expect(Array.from(encode(bytes, { bos: false, eos: false }))).toEqual([259, 132, 4, 199]);
  });

  it('drops lone surrogates like the reference, or replaces or rejects them on request', () => {
    const text = 'a\uD800b';
    expect(Array.from(encode(text, { bos: false, eos: false }))).toEqual([97 + 4, 98 + 4]);
    expect(Array.from(encode(text, { bos: false, eos: false, loneSurrogates: 'replace' }))).toEqual(
      [97, 0xef, 0xbf, 0xbd, 98].map((b) => b + 4),
    );
    expect(() => encode(text, { loneSurrogates: 'error' })).toThrow(/lone surrogate U\+D800 at index 1/);
  });

  it('refuses oversize input with a typed error', () => {
    expect(() => encode('abcd', { maxBytes: 3 })).toThrow(BytesError);
    try {
      encode('abcd', { maxBytes: 3 });
    } catch (e) {
      expect((e as BytesError).code).toBe('INPUT_TOO_LARGE');
    }
    expect(encode('abc', { maxBytes: 3 })).toHaveLength(5);
  });

  it('rejects input that is neither text nor bytes', () => {
    expect(() => encode(42 as unknown as string)).toThrow(/string or a Uint8Array, got number/);
    expect(() => encode(null as unknown as string)).toThrow(/got null/);
  });
});

describe('decode', () => {
  it('round-trips every byte array losslessly through decodeToBytes', () => {
    for (let seed = 1; seed <= 50; seed++) {
      const bytes = seededBytes(seed, seed * 7);
      expect(decodeToBytes(encode(bytes))).toEqual(bytes);
    }
  });

  it('round-trips text', () => {
    const text = 'Hello, wörld! 日本語 😀\n\ttab \uFEFFbom';
    expect(decode(encode(text))).toBe(text);
  });

  it('drops special ids and PAD', () => {
    expect(decode([BOS_ID, 0, 3, 72, PAD_ID, 73, EOS_ID])).toBe('DE');
  });

  it('cuts at the first EOS on request', () => {
    const ids = [BOS_ID, 72, EOS_ID, BOS_ID, 73, EOS_ID];
    expect(decode(ids)).toBe('DE');
    expect(decode(ids, { cutAtEos: true })).toBe('D');
    expect(Array.from(decodeToBytes(ids, { cutAtEos: true }))).toEqual([68]);
  });

  it('replaces invalid UTF-8 with U+FFFD, ignores it like the reference, or throws', () => {
    const ids = Array.from(encode(new Uint8Array([0x61, 0xff, 0xe2, 0x82, 0x62]), { bos: false, eos: false }));
    expect(decode(ids)).toBe('a\uFFFD\uFFFDb');
    expect(decode(ids, { invalidUtf8: 'ignore' })).toBe('ab');
    expect(() => decode(ids, { invalidUtf8: 'error' })).toThrow(/invalid UTF-8 at byte 1: 0xff/);
  });

  it('rejects ids outside the vocabulary with the index and value', () => {
    expect(() => decode([5, VOCAB_SIZE])).toThrow(/ids\[1\] = 260 is not a token id/);
    expect(() => decode([-2])).toThrow(BytesError);
    expect(() => decode([4.5])).toThrow(/ids\[0\] = 4.5/);
    expect(() => decode([Number.NaN])).toThrow(BytesError);
  });

  it('decodes an empty list to an empty string', () => {
    expect(decode([])).toBe('');
    expect(decodeToBytes(new Int32Array(0))).toEqual(new Uint8Array(0));
  });
});
