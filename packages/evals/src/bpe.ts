/**
 * A small byte-level BPE, trained here in TypeScript, deterministic to the bit: the token baseline
 * of the study. Ids 0..3 are the BLT specials (BOE, BOS, EOS, BPE), 4..259 the bytes (byte + 4, as
 * in the BLT vocabulary), 260 + i the i-th merge. With zero merges it *is* the byte vocabulary.
 *
 * Pre-tokenization (GPT-2 in spirit, defined on bytes so any input round-trips): bytes fall into
 * classes — letters (ASCII letters and every byte >= 0x80, so a UTF-8 character never splits),
 * digits, space, other whitespace, everything else — and a piece is a run of one class, a single
 * space joining the letter/digit/punctuation run that follows it. Merges never cross pieces.
 */
import { BYTE_OFFSET } from '@bytelatent/bytes';
import { EvalError, checkInteger } from './errors.js';
import type { Tokenizer } from './scoring-model.js';

const enum Cls {
  Letter = 0,
  Digit = 1,
  Space = 2,
  White = 3,
  Other = 4,
}

const CLASS = new Uint8Array(256).map((_, b) => {
  if ((b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b >= 0x80) return Cls.Letter;
  if (b >= 0x30 && b <= 0x39) return Cls.Digit;
  if (b === 0x20) return Cls.Space;
  if (b === 0x09 || b === 0x0a || b === 0x0b || b === 0x0c || b === 0x0d) return Cls.White;
  return Cls.Other;
});

const joinsSpace = (c: number) => c === Cls.Letter || c === Cls.Digit || c === Cls.Other;

/**
 * Whether a piece starts at `i` (0 < i < bytes.length). Depends on bytes i−1, i and i+1 only;
 * `undefined` when byte i+1 is needed but not there yet.
 */
function boundaryBefore(bytes: Uint8Array, i: number): boolean | undefined {
  const a = CLASS[bytes[i - 1]!]!;
  const b = CLASS[bytes[i]!]!;
  if (a !== b) return !(a === Cls.Space && joinsSpace(b));
  if (a !== Cls.Space) return false;
  // Inside a run of spaces: the last one leaves the run to join the word after it.
  if (i + 1 >= bytes.length) return undefined;
  return joinsSpace(CLASS[bytes[i + 1]!]!);
}

/**
 * Splits bytes into pre-tokenization pieces (half-open ranges), as {@link BytePairTokenizer} does.
 *
 * @param bytes - any bytes
 * @returns piece start offsets (the first is 0 unless the input is empty)
 */
export function pieceStarts(bytes: Uint8Array): number[] {
  if (bytes.length === 0) return [];
  const starts = [0];
  for (let i = 1; i < bytes.length; i++) if (boundaryBefore(bytes, i) === true) starts.push(i);
  return starts;
}

const pairKey = (a: number, b: number) => a * 0x100000 + b;

/** Options of {@link BytePairTokenizer.train}. */
export interface BpeTrainOptions {
  /** Merges to learn (the vocabulary is 260 + merges). */
  readonly merges: number;
  /** Stop early when the best pair occurs fewer times than this (default 2). */
  readonly minFrequency?: number;
  /** Called every 100 merges. */
  readonly onProgress?: (done: number, total: number) => void;
}

/** The JSON form of a trained tokenizer. */
export interface BpeJson {
  readonly format: 'bytelatent-bpe';
  readonly version: 1;
  /** Merge i joins ids `[a, b]` into id 260 + i. */
  readonly merges: ReadonlyArray<readonly [number, number]>;
}

/** Byte-level BPE; see the module comment. */
export class BytePairTokenizer implements Tokenizer {
  readonly name: string;
  readonly vocabSize: number;
  /** Bytes each id stands for. */
  private readonly spellings: Uint8Array[];
  private readonly ranks = new Map<number, number>();
  private readonly cache = new Map<string, Int32Array>();

  /**
   * @param merges - merge i joins `[a, b]` into id `260 + i`; ids must already exist when used
   * @throws {EvalError} `INVALID_ARGUMENT` for a merge naming an id that does not exist yet
   */
  constructor(readonly merges: ReadonlyArray<readonly [number, number]>) {
    const base = 256 + BYTE_OFFSET;
    this.vocabSize = base + merges.length;
    this.name = `bpe-${merges.length}`;
    this.spellings = Array.from({ length: this.vocabSize }, (_, id) =>
      id >= BYTE_OFFSET && id < base ? Uint8Array.of(id - BYTE_OFFSET) : new Uint8Array(0),
    );
    merges.forEach(([a, b], i) => {
      const id = base + i;
      for (const x of [a, b]) {
        if (!Number.isInteger(x) || x < BYTE_OFFSET || x >= id)
          throw new EvalError('INVALID_ARGUMENT', `merge ${i} uses id ${x}, which is not a byte or an earlier merge`);
      }
      const sa = this.spellings[a]!;
      const sb = this.spellings[b]!;
      const s = new Uint8Array(sa.length + sb.length);
      s.set(sa);
      s.set(sb, sa.length);
      this.spellings[id] = s;
      if (!this.ranks.has(pairKey(a, b))) this.ranks.set(pairKey(a, b), i);
    });
  }

  /**
   * Learns merges from texts: the most frequent adjacent pair inside pieces is merged, again and
   * again; ties go to the smallest pair `(a, b)`, so the result depends on nothing but the input.
   *
   * @param texts - training texts (strings are UTF-8 encoded)
   * @param options - number of merges
   * @returns the tokenizer
   * @throws {EvalError} `INVALID_ARGUMENT` for a bad merge count; `EMPTY_INPUT` without any byte
   */
  static train(texts: Iterable<Uint8Array | string>, options: BpeTrainOptions): BytePairTokenizer {
    const target = checkInteger('merges', options.merges, 0);
    const minFrequency = checkInteger('minFrequency', options.minFrequency ?? 2, 1);
    // Count distinct pieces (keyed by their bytes as a latin1 string).
    const counts = new Map<string, number>();
    let total = 0;
    for (const t of texts) {
      const bytes = typeof t === 'string' ? new TextEncoder().encode(t) : t;
      total += bytes.length;
      const starts = pieceStarts(bytes);
      for (let p = 0; p < starts.length; p++) {
        const from = starts[p]!;
        const to = starts[p + 1] ?? bytes.length;
        if (to - from < 2) continue; // a one-byte piece has no pair
        let key = '';
        for (let i = from; i < to; i++) key += String.fromCharCode(bytes[i]!);
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    if (total === 0) throw new EvalError('EMPTY_INPUT', 'no training bytes for the BPE');
    // Sorted so that word indices (and thus every later step) do not depend on Map insertion order.
    const keys = [...counts.keys()].sort();
    const words = keys.map((k) => Array.from(k, (c) => c.charCodeAt(0) + BYTE_OFFSET));
    const freq = keys.map((k) => counts.get(k)!);
    const pairCount = new Map<number, number>();
    const where = new Map<number, Set<number>>();
    const addPairs = (w: number, sign: 1 | -1) => {
      const s = words[w]!;
      for (let i = 0; i + 1 < s.length; i++) {
        const k = pairKey(s[i]!, s[i + 1]!);
        pairCount.set(k, (pairCount.get(k) ?? 0) + sign * freq[w]!);
        if (sign > 0) {
          let set = where.get(k);
          if (!set) where.set(k, (set = new Set()));
          set.add(w);
        }
      }
    };
    words.forEach((_, w) => addPairs(w, 1));
    const merges: Array<[number, number]> = [];
    while (merges.length < target) {
      let best = -1;
      let bestCount = 0;
      for (const [k, c] of pairCount) {
        if (c > bestCount || (c === bestCount && c > 0 && k < best)) {
          best = k;
          bestCount = c;
        }
      }
      if (best < 0 || bestCount < minFrequency) break;
      const a = Math.floor(best / 0x100000);
      const b = best % 0x100000;
      const id = 256 + BYTE_OFFSET + merges.length;
      merges.push([a, b]);
      for (const w of [...(where.get(best) ?? [])].sort((x, y) => x - y)) {
        const s = words[w]!;
        if (s.length < 2) continue;
        addPairs(w, -1);
        const next: number[] = [];
        for (let i = 0; i < s.length; i++) {
          if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
            next.push(id);
            i++;
          } else next.push(s[i]!);
        }
        words[w] = next;
        addPairs(w, 1);
      }
      pairCount.delete(best);
      where.delete(best);
      if (merges.length % 100 === 0) options.onProgress?.(merges.length, target);
    }
    return new BytePairTokenizer(merges);
  }

  /**
   * Rebuilds a tokenizer from {@link toJSON}'s output.
   *
   * @throws {EvalError} `INVALID_ARGUMENT` for anything else
   */
  static fromJSON(json: unknown): BytePairTokenizer {
    const j = json as Partial<BpeJson> | null;
    if (!j || j.format !== 'bytelatent-bpe' || j.version !== 1 || !Array.isArray(j.merges)) {
      throw new EvalError('INVALID_ARGUMENT', 'not a bytelatent-bpe v1 JSON object');
    }
    return new BytePairTokenizer(j.merges.map((m) => [m[0], m[1]] as const));
  }

  /** The merges as JSON (what {@link fromJSON} reads). */
  toJSON(): BpeJson {
    return { format: 'bytelatent-bpe', version: 1, merges: this.merges.map(([a, b]) => [a, b] as const) };
  }

  /** The bytes an id stands for (empty for the specials 0..3). */
  spelling(id: number): Uint8Array {
    const s = this.spellings[id];
    if (!s) throw new EvalError('INVALID_ARGUMENT', `id ${id} is not in [0, ${this.vocabSize})`);
    return s;
  }

  /**
   * @param bytes - any bytes
   * @returns token ids (never 0..3)
   */
  encode(bytes: Uint8Array): Int32Array {
    const out: number[] = [];
    const starts = pieceStarts(bytes);
    for (let p = 0; p < starts.length; p++) {
      const piece = bytes.subarray(starts[p]!, starts[p + 1] ?? bytes.length);
      for (const id of this.encodePiece(piece)) out.push(id);
    }
    return Int32Array.from(out);
  }

  /**
   * @param ids - token ids; the specials 0..3 are dropped
   * @returns the bytes
   * @throws {EvalError} `INVALID_ARGUMENT` for an id outside the vocabulary
   */
  decode(ids: ArrayLike<number>): Uint8Array {
    let n = 0;
    for (let i = 0; i < ids.length; i++) n += this.spelling(ids[i]!).length;
    const out = new Uint8Array(n);
    let o = 0;
    for (let i = 0; i < ids.length; i++) {
      const s = this.spelling(ids[i]!);
      out.set(s, o);
      o += s.length;
    }
    return out;
  }

  stableLength(bytes: Uint8Array): number {
    // The last piece may still grow; a boundary is final once the byte after it is known.
    for (let i = bytes.length - 1; i > 0; i--) if (boundaryBefore(bytes, i) === true) return i;
    return 0;
  }

  private encodePiece(piece: Uint8Array): Int32Array {
    const short = piece.length <= 64;
    let key = '';
    if (short) {
      for (let i = 0; i < piece.length; i++) key += String.fromCharCode(piece[i]!);
      const hit = this.cache.get(key);
      if (hit) return hit;
    }
    const s = Array.from(piece, (b) => b + BYTE_OFFSET);
    const base = 256 + BYTE_OFFSET;
    // Apply the lowest-ranked merge present, everywhere in the piece, until none applies: the
    // order merges were learned in, so encoding reproduces the training segmentation.
    for (;;) {
      let bestRank = Number.POSITIVE_INFINITY;
      for (let i = 0; i + 1 < s.length; i++) {
        const r = this.ranks.get(pairKey(s[i]!, s[i + 1]!));
        if (r !== undefined && r < bestRank) bestRank = r;
      }
      if (!Number.isFinite(bestRank)) break;
      const [a, b] = this.merges[bestRank]!;
      let w = 0;
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          s[w++] = base + bestRank;
          i++;
        } else s[w++] = s[i]!;
      }
      s.length = w;
    }
    const ids = Int32Array.from(s);
    if (short) {
      if (this.cache.size > 50_000) this.cache.clear();
      this.cache.set(key, ids);
    }
    return ids;
  }
}

/**
 * The byte vocabulary as a tokenizer (id = byte + 4): a plain byte-level transformer is a
 * "token" model with this tokenizer. Equal to a {@link BytePairTokenizer} with no merges.
 */
export function byteTokenizer(): BytePairTokenizer {
  return new BytePairTokenizer([]);
}
