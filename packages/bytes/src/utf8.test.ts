import { describe, expect, it } from 'vitest';
import { decodeUtf8, encodeUtf8, scanUtf8 } from './utf8.js';

function seededBytes(seed: number, length: number): Uint8Array {
  let s = seed >>> 0;
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    // Bias towards the interesting range (continuation and lead bytes).
    out[i] = s % 3 === 0 ? s >>> 25 : 0x80 + ((s >>> 24) & 0x7f);
  }
  return out;
}

describe('scanUtf8', () => {
  it('finds no invalid range in valid text', () => {
    const bytes = encodeUtf8('héllo € 😀');
    expect(bytes).toHaveLength(15);
    expect(scanUtf8(bytes)).toEqual({ invalid: [], incompleteFrom: 15 });
  });

  it('splits invalid input into maximal subparts (Unicode §3.9 table 3-8)', () => {
    // The Unicode standard's example: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64
    const bytes = new Uint8Array([0x61, 0xf1, 0x80, 0x80, 0xe1, 0x80, 0xc2, 0x62, 0x80, 0x63, 0x80, 0xbf, 0x64]);
    expect(scanUtf8(bytes).invalid).toEqual([
      [1, 4],
      [4, 6],
      [6, 7],
      [8, 9],
      [10, 11],
      [11, 12],
    ]);
  });

  it('reports a trailing sequence that could still complete as incomplete', () => {
    expect(scanUtf8(new Uint8Array([0x61, 0xe2, 0x82]))).toEqual({ invalid: [], incompleteFrom: 1 });
    // Surrogate code points (ED A0..) and overlongs (E0 80..) cannot complete: invalid at once.
    expect(scanUtf8(new Uint8Array([0xed, 0xa0]))).toEqual({
      invalid: [
        [0, 1],
        [1, 2],
      ],
      incompleteFrom: 2,
    });
    expect(scanUtf8(new Uint8Array([0xf4, 0x90]))).toEqual({
      invalid: [
        [0, 1],
        [1, 2],
      ],
      incompleteFrom: 2,
    });
  });
});

describe('decodeUtf8', () => {
  it("'replace' equals the WHATWG decoder, and 'ignore' equals it with the replacements removed", () => {
    const whatwg = new TextDecoder('utf-8', { ignoreBOM: true });
    for (let seed = 1; seed <= 300; seed++) {
      const bytes = seededBytes(seed, 1 + (seed % 40));
      const replaced = decodeUtf8(bytes, 'replace');
      expect(replaced).toBe(whatwg.decode(bytes));
      // No valid U+FFFD (EF BF BD) can come from these bytes unless it is in the input; skip those.
      if (!replaced.includes('\uFFFD') || bytes.includes(0xef)) continue;
      expect(decodeUtf8(bytes, 'ignore')).toBe(replaced.replaceAll('\uFFFD', ''));
    }
  });

  it("keeps a genuine U+FFFD under 'ignore'", () => {
    expect(decodeUtf8(new Uint8Array([0xef, 0xbf, 0xbd, 0xff]), 'ignore')).toBe('\uFFFD');
  });

  it('keeps a leading byte-order mark', () => {
    expect(decodeUtf8(new Uint8Array([0xef, 0xbb, 0xbf, 0x41]))).toBe('\uFEFFA');
  });

  it("counts a truncated final sequence as invalid and names its offset under 'error'", () => {
    expect(decodeUtf8(new Uint8Array([0x41, 0xe2, 0x82]))).toBe('A\uFFFD');
    expect(() => decodeUtf8(new Uint8Array([0x41, 0xe2, 0x82]), 'error')).toThrow(/at byte 1: 0xe2 0x82/);
  });
});
