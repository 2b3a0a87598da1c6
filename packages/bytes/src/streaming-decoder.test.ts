import { describe, expect, it } from 'vitest';
import { EOS_ID } from './constants.js';
import { BytesError } from './errors.js';
import { StreamingDecoder } from './streaming-decoder.js';
import { decode, encode } from './tokenizer.js';

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('StreamingDecoder', () => {
  it('holds back an incomplete character until it completes', () => {
    const d = new StreamingDecoder();
    const ids = Array.from(encode('a€b', { bos: false, eos: false }));
    expect(d.push(ids[0]!)).toBe('a');
    expect(d.push(ids[1]!)).toBe('');
    expect(d.pendingBytes).toBe(1);
    expect(d.push(ids[2]!)).toBe('');
    expect(d.push(ids[3]!)).toBe('€');
    expect(d.push(ids[4]!)).toBe('b');
    expect(d.flush()).toBe('');
  });

  it('emits held-back bytes as U+FFFD on flush', () => {
    const d = new StreamingDecoder();
    expect(d.push([0x41 + 4, 0xe2 + 4, 0x82 + 4])).toBe('A');
    expect(d.flush()).toBe('\uFFFD');
    expect(d.pendingBytes).toBe(0);
  });

  it('equals one-shot decoding for any chunking of random bytes', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const rand = lcg(seed);
      const bytes = new Uint8Array(1 + Math.floor(rand() * 60));
      for (let i = 0; i < bytes.length; i++) bytes[i] = rand() < 0.5 ? Math.floor(rand() * 128) : 0x80 + Math.floor(rand() * 128);
      const ids = Array.from(encode(bytes));
      for (const invalidUtf8 of ['replace', 'ignore'] as const) {
        const d = new StreamingDecoder({ invalidUtf8 });
        let text = '';
        let i = 0;
        while (i < ids.length) {
          const k = 1 + Math.floor(rand() * 4);
          text += d.push(ids.slice(i, i + k));
          i += k;
        }
        text += d.flush();
        expect(text).toBe(decode(ids, { invalidUtf8 }));
      }
    }
  });

  it('never emits half a character', () => {
    const d = new StreamingDecoder();
    for (const id of encode('😀日本', { bos: false, eos: false })) {
      const chunk = d.push(id);
      expect(chunk.includes('\uFFFD')).toBe(false);
    }
  });

  it('stops at EOS when asked, ending a held-back sequence there', () => {
    const d = new StreamingDecoder({ stopAtEos: true });
    expect(d.push([0x41 + 4, 0xe2 + 4, EOS_ID, 0x42 + 4])).toBe('A\uFFFD');
    expect(d.done).toBe(true);
    expect(d.push(0x43 + 4)).toBe('');
  });

  it('rejects bad ids without consuming any of the call', () => {
    const d = new StreamingDecoder();
    expect(d.push(0xe2 + 4)).toBe('');
    expect(() => d.push([0x82 + 4, 999])).toThrow(BytesError);
    expect(d.push([0x82 + 4, 0xac + 4])).toBe('€');
  });

  it('rejects an unknown policy', () => {
    expect(() => new StreamingDecoder({ invalidUtf8: 'error' as 'replace' })).toThrow(/invalidUtf8 must be/);
  });
});
