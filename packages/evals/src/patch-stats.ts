/**
 * Statistics of a patching over bytes: size distribution, how patch starts line up with words,
 * and the same per Unicode script (a patch belongs to the script of its first letter). Fed
 * incrementally, so a long file can be patched and counted a piece at a time.
 */
import { EvalError } from './errors.js';

/** Scripts told apart (others count as `Other`; punctuation/digits/spaces only: `Common`). */
const SCRIPTS = [
  'Latin',
  'Cyrillic',
  'Greek',
  'Arabic',
  'Hebrew',
  'Han',
  'Hiragana',
  'Katakana',
  'Hangul',
  'Devanagari',
  'Bengali',
  'Tamil',
  'Thai',
  'Georgian',
  'Armenian',
  'Ethiopic',
] as const;
const SCRIPT_RES = SCRIPTS.map((s) => [s, new RegExp(`^\\p{Script=${s}}$`, 'u')] as const);
const LETTER = /^[\p{L}\p{M}]$/u;
const scriptCache = new Map<number, string | null>();

/**
 * The Unicode script of a code point among the common ones, `Other` for any other letter, or
 * null for a non-letter (digit, punctuation, space, symbol).
 *
 * @param codePoint - a code point
 */
export function scriptOf(codePoint: number): string | null {
  const hit = scriptCache.get(codePoint);
  if (hit !== undefined) return hit;
  const ch = String.fromCodePoint(codePoint);
  let script: string | null = null;
  if (LETTER.test(ch)) script = SCRIPT_RES.find(([, re]) => re.test(ch))?.[0] ?? 'Other';
  scriptCache.set(codePoint, script);
  return script;
}

/** Bytes that belong to words: ASCII letters and digits, and every byte of a non-ASCII character. */
const isWordByte = (b: number) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b >= 0x80;

/** Figures of a set of patches. */
export interface PatchSummary {
  readonly patches: number;
  readonly bytes: number;
  readonly meanPatchSize: number;
  /** Nearest-rank percentiles of the patch size. */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly maxPatchSize: number;
  /** Share of patch starts (after the text's first) on a word's first byte. */
  readonly startsOnWordStart: number;
  /** Share of word starts (after the text's first byte) where a patch starts. */
  readonly wordStartsCovered: number;
  /** Share of patch starts inside a UTF-8 character (on a continuation byte). */
  readonly startsInsideCharacter: number;
}

/** What {@link PatchStatistics.summary} returns. */
export interface PatchStatisticsResult extends PatchSummary {
  /** The same figures for the patches of each script, largest first (word-coverage shares over the script's patches). */
  readonly byScript: ReadonlyArray<PatchSummary & { readonly script: string }>;
}

class Tally {
  sizes = new Map<number, number>();
  patches = 0;
  bytes = 0;
  starts = 0;
  startsOnWord = 0;
  startsInside = 0;
  wordStarts = 0;
  wordStartsCovered = 0;

  summary(): PatchSummary {
    const sorted = [...this.sizes.entries()].sort((a, b) => a[0] - b[0]);
    const pct = (q: number) => {
      const rank = Math.max(1, Math.ceil(q * this.patches));
      let seen = 0;
      for (const [size, n] of sorted) {
        seen += n;
        if (seen >= rank) return size;
      }
      return 0;
    };
    return {
      patches: this.patches,
      bytes: this.bytes,
      meanPatchSize: this.patches ? this.bytes / this.patches : 0,
      p50: pct(0.5),
      p90: pct(0.9),
      p99: pct(0.99),
      maxPatchSize: sorted.length ? sorted[sorted.length - 1]![0] : 0,
      startsOnWordStart: this.starts ? this.startsOnWord / this.starts : 0,
      wordStartsCovered: this.wordStarts ? this.wordStartsCovered / this.wordStarts : 0,
      startsInsideCharacter: this.starts ? this.startsInside / this.starts : 0,
    };
  }
}

/**
 * Accumulates patch statistics over consecutive pieces of one text.
 *
 * @example
 * const stats = new PatchStatistics();
 * stats.add(bytes, lengths); // lengths of the patches of `bytes`, summing to bytes.length
 * console.log(stats.summary().meanPatchSize);
 */
export class PatchStatistics {
  private readonly all = new Tally();
  private readonly scripts = new Map<string, Tally>();
  private previous = -1; // last byte of the previous piece (-1: start of the text)

  /**
   * Adds the patches of the next piece of the text.
   *
   * @param bytes - the piece's bytes
   * @param lengths - its patches' lengths in bytes, each >= 1, summing to `bytes.length`
   * @throws {EvalError} `INVALID_ARGUMENT` when the lengths do not tile the bytes
   */
  add(bytes: Uint8Array, lengths: ArrayLike<number>): void {
    let sum = 0;
    for (let i = 0; i < lengths.length; i++) {
      const l = lengths[i]!;
      if (!Number.isInteger(l) || l < 1) throw new EvalError('INVALID_ARGUMENT', `lengths[${i}] = ${l} is not an integer >= 1`);
      sum += l;
    }
    if (sum !== bytes.length)
      throw new EvalError('INVALID_ARGUMENT', `the lengths sum to ${sum}, expected the ${bytes.length} bytes of the piece`);
    const prev = (i: number) => (i > 0 ? bytes[i - 1]! : this.previous);
    const patchStart = new Uint8Array(bytes.length);
    let pos = 0;
    for (let p = 0; p < lengths.length; p++) {
      const len = lengths[p]!;
      patchStart[pos] = 1;
      const script = this.scriptAt(bytes, pos, pos + len);
      const tallies = [this.all, this.tally(script)];
      for (const t of tallies) {
        t.patches++;
        t.bytes += len;
        t.sizes.set(len, (t.sizes.get(len) ?? 0) + 1);
        if (pos > 0 || this.previous >= 0) {
          t.starts++;
          const b = bytes[pos]!;
          if (isWordByte(b) && !isWordByte(prev(pos))) t.startsOnWord++;
          if (b >= 0x80 && b < 0xc0) t.startsInside++;
        }
      }
      pos += len;
    }
    // Word starts, attributed to the tally of the patch that holds them.
    pos = 0;
    for (let p = 0; p < lengths.length; p++) {
      const len = lengths[p]!;
      const tally = this.tally(this.scriptAt(bytes, pos, pos + len));
      for (let i = pos; i < pos + len; i++) {
        if (i === 0 && this.previous < 0) continue;
        if (isWordByte(bytes[i]!) && !isWordByte(prev(i))) {
          for (const t of [this.all, tally]) {
            t.wordStarts++;
            if (patchStart[i]) t.wordStartsCovered++;
          }
        }
      }
      pos += len;
    }
    if (bytes.length > 0) this.previous = bytes[bytes.length - 1]!;
  }

  /**
   * The figures so far.
   *
   * @throws {EvalError} `EMPTY_INPUT` when no patch was added
   */
  summary(): PatchStatisticsResult {
    if (this.all.patches === 0) throw new EvalError('EMPTY_INPUT', 'no patch was added');
    const byScript = [...this.scripts.entries()]
      .map(([script, t]) => ({ script, ...t.summary() }))
      .sort((a, b) => b.bytes - a.bytes || (a.script < b.script ? -1 : 1));
    return { ...this.all.summary(), byScript };
  }

  private tally(script: string): Tally {
    let t = this.scripts.get(script);
    if (!t) this.scripts.set(script, (t = new Tally()));
    return t;
  }

  /**
   * Script of the first letter among the characters that overlap `bytes[from, to)`, decoding UTF-8
   * as it goes: a patch that starts inside a character belongs with that character's script.
   */
  private scriptAt(bytes: Uint8Array, from: number, to: number): string {
    let i = from;
    for (let back = 1; back <= 3 && i - back >= 0 && (bytes[i]! & 0xc0) === 0x80; back++) {
      if ((bytes[i - back]! & 0xc0) !== 0x80) {
        if (bytes[i - back]! >= 0xc0) i -= back;
        break;
      }
    }
    while (i < to) {
      const b = bytes[i]!;
      let cp = b;
      let n = 1;
      if (b >= 0xf0 && b < 0xf8) [cp, n] = [b & 0x07, 4];
      else if (b >= 0xe0) [cp, n] = [b & 0x0f, 3];
      else if (b >= 0xc0) [cp, n] = [b & 0x1f, 2];
      else if (b >= 0x80) {
        i++; // a continuation byte whose lead is in an earlier patch
        continue;
      }
      // The character may run past the patch's end: decode it from the piece anyway.
      for (let k = 1; k < n; k++) cp = (cp << 6) | ((bytes[i + k] ?? 0x80) & 0x3f);
      const s = cp <= 0x10ffff ? scriptOf(cp) : null;
      if (s) return s;
      i += n;
    }
    return 'Common';
  }
}

/**
 * Statistics of one text's patches in one call.
 *
 * @param bytes - the text
 * @param lengths - patch lengths in bytes summing to `bytes.length`
 * @returns the figures, overall and per script
 * @throws {EvalError} `INVALID_ARGUMENT` when the lengths do not tile the bytes; `EMPTY_INPUT` for no patch
 */
export function patchStatistics(bytes: Uint8Array, lengths: ArrayLike<number>): PatchStatisticsResult {
  const s = new PatchStatistics();
  s.add(bytes, lengths);
  return s.summary();
}
