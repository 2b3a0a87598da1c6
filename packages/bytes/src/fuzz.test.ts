// Seeded fuzzing: 10,000 byte strings — invalid UTF-8, lone continuation bytes, NUL, empty,
// up to 1 MiB — through the tokenizer, the UTF-8 scanner, the streaming decoder and the row packer.
// Checks are written as plain comparisons with one `expect` on failure, so the loop stays fast.
import { describe, expect, it } from 'vitest';
import { fuzzInputs, mulberry32, randomChunks, type FuzzInput } from '../../../tools/fuzz/seeded-bytes.js';
import { BOS_ID, BYTE_OFFSET, EOS_ID, VOCAB_SIZE } from './constants.js';
import { BytesError } from './errors.js';
import { packDocuments } from './packing.js';
import { StreamingDecoder } from './streaming-decoder.js';
import { decode, decodeToBytes, encode } from './tokenizer.js';
import { decodeUtf8, encodeUtf8, scanUtf8 } from './utf8.js';

const COUNT = 10_000;
const inputs: FuzzInput[] = [...fuzzInputs({ count: COUNT })];
const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lenient = new TextDecoder('utf-8', { ignoreBOM: true });

function sameBytes(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function countReplacement(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\uFFFD'); i >= 0; i = text.indexOf('\uFFFD', i + 1)) n++;
  return n;
}

function isValidUtf8(bytes: Uint8Array): boolean {
  try {
    fatal.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

describe('fuzz: tokenizer and UTF-8 on 10,000 seeded byte strings', () => {
  it('the generator covers what the issue asks for', () => {
    expect(inputs).toHaveLength(COUNT);
    const lengths = inputs.map((x) => x.bytes.length);
    expect(lengths.filter((n) => n === 0).length).toBeGreaterThan(50);
    expect(Math.max(...lengths)).toBe(1 << 20);
    expect(inputs.filter((x) => x.bytes.includes(0)).length).toBeGreaterThan(1000);
    expect(inputs.filter((x) => x.bytes.length > 0 && !isValidUtf8(x.bytes)).length).toBeGreaterThan(3000);
    expect(inputs.filter((x) => x.bytes.length > 0 && isValidUtf8(x.bytes) && x.bytes.some((b) => b >= 0x80)).length).toBeGreaterThan(500);
    // Lone continuation bytes: a byte 0x80..0xBF right after an ASCII byte (or first).
    const lone = inputs.filter((x) => x.bytes.some((b, i) => b >= 0x80 && b <= 0xbf && (i === 0 || x.bytes[i - 1]! < 0x80)));
    expect(lone.length).toBeGreaterThan(1000);
    // The same seed gives the same stream.
    const again = [...fuzzInputs({ count: 50 })];
    again.forEach((x, i) => expect(sameBytes(x.bytes, inputs[i]!.bytes), x.kind).toBe(true));
  });

  it('encode: BOS + (byte + 4)... + EOS, ids in range; decodeToBytes(encode(x)) == x exactly', () => {
    for (const { index, kind, bytes } of inputs) {
      const ids = encode(bytes);
      let ok = ids.length === bytes.length + 2 && ids[0] === BOS_ID && ids[ids.length - 1] === EOS_ID;
      for (let i = 0; ok && i < bytes.length; i++) ok = ids[i + 1] === bytes[i]! + BYTE_OFFSET && ids[i + 1]! < VOCAB_SIZE;
      if (!ok) expect.fail(`input ${index} (${kind}): encode layout`);
      if (!sameBytes(decodeToBytes(ids), bytes)) expect.fail(`input ${index} (${kind}): decodeToBytes(encode(x)) != x`);
      const bare = encode(bytes, { bos: false, eos: false });
      if (!sameBytes(decodeToBytes(bare), bytes)) expect.fail(`input ${index} (${kind}): round trip without BOS/EOS`);
      // EOS cut: the first EOS ends the decoded bytes, BOS is dropped.
      if (!sameBytes(decodeToBytes(ids, { cutAtEos: true }), bytes)) expect.fail(`input ${index} (${kind}): cutAtEos`);
    }
  });

  it('decode: replace = the WHATWG decoder; error throws INVALID_UTF8 exactly on invalid input; scanUtf8 counts every U+FFFD', () => {
    for (const { index, kind, bytes } of inputs) {
      const ids = encode(bytes);
      const replaced = decode(ids);
      if (replaced !== lenient.decode(bytes)) expect.fail(`input ${index} (${kind}): decode != TextDecoder`);
      const ignored = decode(ids, { invalidUtf8: 'ignore' });
      const scan = scanUtf8(bytes);
      const invalidRanges = scan.invalid.length + (scan.incompleteFrom < bytes.length ? 1 : 0);
      // Each invalid maximal subpart is one U+FFFD when replacing and nothing when ignoring.
      if (countReplacement(replaced) !== countReplacement(ignored) + invalidRanges) {
        expect.fail(
          `input ${index} (${kind}): ${invalidRanges} invalid ranges but ${countReplacement(replaced) - countReplacement(ignored)} replacements`,
        );
      }
      // Ranges are ordered, disjoint, inside the input.
      let prev = 0;
      for (const [a, b] of scan.invalid) {
        if (!(a >= prev && b > a && b <= bytes.length)) expect.fail(`input ${index} (${kind}): bad range [${a}, ${b})`);
        prev = b;
      }
      let threw: unknown;
      try {
        decode(ids, { invalidUtf8: 'error' });
      } catch (e) {
        threw = e;
      }
      const valid = isValidUtf8(bytes);
      if (valid === (threw !== undefined)) expect.fail(`input ${index} (${kind}): valid=${valid}, threw=${String(threw)}`);
      if (threw !== undefined && !(threw instanceof BytesError && threw.code === 'INVALID_UTF8')) {
        expect.fail(`input ${index} (${kind}): wrong error ${String(threw)}`);
      }
      if (valid && ignored !== replaced) expect.fail(`input ${index} (${kind}): policies differ on valid UTF-8`);
      // Decoded text is valid UTF-8 again and round-trips from there.
      if (decodeUtf8(encodeUtf8(replaced), 'error') !== replaced) expect.fail(`input ${index} (${kind}): text round trip`);
    }
  });

  it('StreamingDecoder: any chunking gives the one-shot text, under both policies', () => {
    const random = mulberry32(91);
    for (const { index, kind, bytes } of inputs) {
      // Big inputs: longer pieces (up to 4 KiB) and one policy, to keep the suite fast.
      const big = bytes.length > 65536;
      for (const invalidUtf8 of big ? (['replace'] as const) : (['replace', 'ignore'] as const)) {
        const d = new StreamingDecoder({ invalidUtf8 });
        const ids = encode(bytes, { bos: false, eos: false });
        let text = '';
        let at = 0;
        for (const chunk of randomChunks(bytes, random, big ? 4096 : 64)) {
          text += d.push(ids.subarray(at, at + chunk.length));
          at += chunk.length;
          if (d.pendingBytes > 3) expect.fail(`input ${index} (${kind}): ${d.pendingBytes} bytes held back`);
        }
        text += d.flush();
        if (text !== decodeUtf8(bytes, invalidUtf8)) expect.fail(`input ${index} (${kind}): streamed ${invalidUtf8} text differs`);
      }
    }
  });

  it('strings with lone surrogates: drop / replace / error policies', () => {
    const encoder = new TextEncoder();
    for (const { index, kind, bytes } of inputs) {
      if (bytes.length > 4096) continue;
      // Read the bytes as UTF-16 code units: random strings, lone surrogates included.
      const units = new Uint16Array(bytes.length >> 1);
      for (let i = 0; i < units.length; i++) units[i] = bytes[2 * i]! | (bytes[2 * i + 1]! << 8);
      const text = String.fromCharCode(...units);
      const wellFormed = !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);
      const dropped = encodeUtf8(text, 'drop');
      if (!isValidUtf8(dropped)) expect.fail(`input ${index} (${kind}): 'drop' wrote invalid UTF-8`);
      if (!sameBytes(encodeUtf8(text, 'replace'), encoder.encode(text))) expect.fail(`input ${index} (${kind}): 'replace' != TextEncoder`);
      if (wellFormed && !sameBytes(dropped, encoder.encode(text))) expect.fail(`input ${index} (${kind}): well-formed text changed`);
      let threw = false;
      try {
        encodeUtf8(text, 'error');
      } catch (e) {
        threw = e instanceof BytesError && e.code === 'INVALID_TEXT';
      }
      if (threw === wellFormed) expect.fail(`input ${index} (${kind}): 'error' policy wellFormed=${wellFormed}`);
      if (!sameBytes(decodeToBytes(encode(text)), dropped)) expect.fail(`input ${index} (${kind}): string round trip`);
    }
  });

  it('packDocuments: the rows hold the concatenated stream exactly, every id a target once', () => {
    for (const rowLength of [1, 7, 256]) {
      const docs = inputs.slice(0, rowLength === 256 ? COUNT : 2000).map((x) => x.bytes);
      const expected = new Int32Array(docs.reduce((n, d) => n + d.length + 2, 0));
      let fill = 0;
      for (const d of docs) {
        expected.set(encode(d), fill);
        fill += d.length + 2;
      }
      let at = 0;
      let rows = 0;
      for (const row of packDocuments(docs, { rowLength })) {
        rows++;
        for (let t = 0; t < rowLength; t++) {
          if (row.mask[t] === 0) continue;
          if (row.tokens[t] !== expected[at + t] || row.targets[t] !== expected[at + t + 1]) {
            expect.fail(`rowLength ${rowLength}, row ${rows - 1}, position ${t}: stream mismatch`);
          }
        }
        at += row.mask.reduce((s, m) => s + m, 0);
      }
      // Every id but the first is a target exactly once.
      expect(at).toBe(expected.length - 1);
    }
  });
});
