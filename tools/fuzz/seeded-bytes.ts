/**
 * Seeded fuzz inputs shared by the packages' `fuzz.test.ts` files. Test-only: imported by
 * relative path from tests, never from a package's source, so it adds no dependency between
 * packages and ships in no tarball. The same seed gives the same inputs on every machine.
 * Its generator is `@bytelatent/nn`'s `seededUniform`, read from nn's source file (which imports
 * nothing), so packages that do not depend on nn (bytes, ngram-hash) need neither nn's build nor
 * TensorFlow.js to run their fuzz tests.
 *
 * The stream mixes what breaks byte and text handling: the empty input, NUL runs, lone UTF-8
 * continuation bytes, truncated and overlong sequences, encoded surrogates, code points past
 * U+10FFFF, bytes 0xF5..0xFF, valid UTF-8 of every length, ASCII text and uniform random bytes,
 * spliced together at random. Lengths are mostly small; a few inputs are big (up to 1 MiB).
 */

import { seededUniform } from '../../packages/nn/src/layers/init.js';

/** A uniform generator in [0, 1) from a 32-bit seed (mulberry32): `@bytelatent/nn`'s `seededUniform`. */
export const mulberry32: (seed: number) => () => number = seededUniform;

/** One generated input: its bytes and the recipe that made it (for failure messages). */
export interface FuzzInput {
  readonly index: number;
  readonly kind: string;
  readonly bytes: Uint8Array;
}

/** Options of {@link fuzzInputs}. */
export interface FuzzOptions {
  /** Inputs to generate. */
  readonly count: number;
  /** Seed of the stream (default 9, the number). */
  readonly seed?: number;
  /** Cap on every input's length, bytes (default 1 MiB). */
  readonly maxBytes?: number;
  /** Every this many inputs one is big: 64 KiB .. `maxBytes`, the last of them exactly `maxBytes` (default 2000). */
  readonly bigEvery?: number;
}

export const ONE_MIB = 1 << 20;

/** Byte sequences that are never valid UTF-8, or valid only in a context the splicing may break. */
const NASTY: readonly (readonly number[])[] = [
  [0x00],
  [0x80], // lone continuation
  [0xbf],
  [0xc0, 0x80], // overlong NUL
  [0xc1, 0xbf], // overlong
  [0xe0, 0x80, 0x80], // overlong 3-byte
  [0xed, 0xa0, 0x80], // encoded high surrogate
  [0xed, 0xbf, 0xbf], // encoded low surrogate
  [0xf4, 0x90, 0x80, 0x80], // past U+10FFFF
  [0xf5],
  [0xff],
  [0xfe, 0xff], // UTF-16 BOM
  [0xef, 0xbb, 0xbf], // UTF-8 BOM
  [0xe2, 0x82], // truncated 3-byte
  [0xf0, 0x9f, 0x98], // truncated 4-byte
  [0xc3], // truncated 2-byte
  [0x0d, 0x0a],
  [0x1b, 0x5b, 0x30, 0x6d], // ANSI escape
];

function int(random: () => number, lo: number, hi: number): number {
  return lo + Math.floor(random() * (hi - lo + 1));
}

/** UTF-8 of one random code point (no surrogates), 1 to 4 bytes. */
function codePoint(random: () => number, out: number[]): void {
  const r = random();
  let cp: number;
  if (r < 0.4) cp = int(random, 0x20, 0x7e);
  else if (r < 0.6) cp = int(random, 0x80, 0x7ff);
  else if (r < 0.85) {
    cp = int(random, 0x800, 0xfffd);
    if (cp >= 0xd800 && cp <= 0xdfff) cp -= 0x800;
  } else cp = int(random, 0x10000, 0x10ffff);
  if (cp < 0x80) out.push(cp);
  else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 63));
  else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
  else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
}

const WORDS = ['the ', 'cat ', 'def ', 'x = 1\n', 'Hello, ', 'world. ', '\t', '  ', '1234 ', '{"a":[]} '].map((w) =>
  Array.from(new TextEncoder().encode(w)),
);

const KINDS = ['empty', 'random', 'ascii', 'utf8', 'continuation', 'nul', 'nasty', 'run', 'spliced'] as const;

/** Appends `length` bytes of one recipe to `out` (a recipe other than 'spliced'). */
function piece(kind: (typeof KINDS)[number], length: number, random: () => number, out: number[]): void {
  const end = out.length + length;
  switch (kind) {
    case 'empty':
      return;
    case 'random':
      while (out.length < end) out.push(int(random, 0, 255));
      return;
    case 'ascii':
      while (out.length < end) out.push(...WORDS[int(random, 0, WORDS.length - 1)]!);
      break;
    case 'utf8':
      while (out.length < end) codePoint(random, out);
      break;
    case 'continuation':
      while (out.length < end) out.push(int(random, 0x80, 0xbf));
      return;
    case 'nul':
      while (out.length < end) out.push(0);
      return;
    case 'nasty':
      while (out.length < end) out.push(...NASTY[int(random, 0, NASTY.length - 1)]!);
      break;
    case 'run': {
      const b = int(random, 0, 255);
      while (out.length < end) out.push(b);
      return;
    }
    case 'spliced':
      throw new Error('unreachable');
  }
  out.length = end; // a multi-byte recipe may overshoot: cut it, mid-character on purpose
}

function lengthFor(random: () => number, max: number): number {
  const r = random();
  // Mostly short inputs (the model tests read the short ones), some medium ones.
  const n = r < 0.7 ? int(random, 0, 32) : r < 0.95 ? int(random, 33, 512) : int(random, 513, 8192);
  return Math.min(n, max);
}

/**
 * The seeded stream of fuzz inputs. Input i is a pure function of (seed, i, options), so a failure
 * message naming the index is enough to reproduce it.
 *
 * @param options - how many, seed, size caps
 * @returns the inputs, lazily
 */
export function* fuzzInputs(options: FuzzOptions): Generator<FuzzInput> {
  const { count, seed = 9, maxBytes = ONE_MIB, bigEvery = 2000 } = options;
  const bigTotal = Math.floor(count / bigEvery);
  let bigSeen = 0;
  for (let index = 0; index < count; index++) {
    // One generator per input: inputs do not depend on each other's lengths.
    const random = mulberry32((seed * 0x9e3779b1 + index * 0x85ebca6b) >>> 0);
    const big = bigEvery > 0 && index % bigEvery === bigEvery - 1;
    let kind: (typeof KINDS)[number] = index === 0 || random() < 0.02 ? 'empty' : KINDS[int(random, 1, KINDS.length - 1)]!;
    let length: number;
    if (big) {
      bigSeen++;
      length = bigSeen === bigTotal ? maxBytes : Math.min(maxBytes, int(random, 64 * 1024, maxBytes));
      if (kind === 'empty') kind = 'random';
    } else length = kind === 'empty' ? 0 : lengthFor(random, maxBytes);
    const out: number[] = [];
    let label: string = kind;
    if (kind === 'spliced') {
      const parts: string[] = [];
      while (out.length < length) {
        const k = KINDS[int(random, 1, KINDS.length - 2)]!;
        piece(k, Math.min(length - out.length, int(random, 1, 16)), random, out);
        if (parts.length < 6) parts.push(k);
      }
      label = `spliced(${parts.join('+')}${parts.length === 6 ? '+…' : ''})`;
    } else if (big && (kind === 'random' || kind === 'run' || kind === 'nul' || kind === 'continuation')) {
      // Fill big inputs straight into a typed array (an array of a million numbers is slow).
      const bytes = new Uint8Array(length);
      const fill = kind === 'run' ? int(random, 0, 255) : 0;
      for (let i = 0; i < length; i++) {
        bytes[i] = kind === 'random' ? (random() * 256) | 0 : kind === 'continuation' ? 0x80 | ((random() * 64) | 0) : fill;
      }
      yield { index, kind: `${label}[${length}]`, bytes };
      continue;
    } else piece(kind, length, random, out);
    yield { index, kind: `${label}[${length}]`, bytes: Uint8Array.from(out) };
  }
}

/**
 * Cuts `bytes` into pieces at seeded random places (empty pieces included), for streaming APIs.
 *
 * @param bytes - what to cut
 * @param random - the generator
 * @param maxChunk - longest piece (default 64 bytes)
 * @returns the pieces, in order; their concatenation is `bytes`
 */
export function randomChunks(bytes: Uint8Array, random: () => number, maxChunk = 64): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    const n = random() < 0.1 ? 0 : int(random, 1, Math.max(1, Math.min(maxChunk, bytes.length - at)));
    chunks.push(bytes.subarray(at, at + n));
    at += n;
  }
  if (random() < 0.5) chunks.push(new Uint8Array(0));
  return chunks;
}
