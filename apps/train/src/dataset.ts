/**
 * A streaming, deterministic training-data pipeline over any set of text files.
 *
 * Every file is a document, packed as `BOS bytes+4 … EOS`. An epoch concatenates the documents in a
 * seeded order and cuts the stream into rows of `seqLen + 1` tokens (stride `seqLen`: a row's last
 * token is the next row's first, so every token is predicted once); the rows are then visited in a
 * seeded order. Row `g` of the whole run is a pure function of `(seed, g)`, so resuming at step `s`
 * costs nothing and yields exactly the rows an uninterrupted run would have seen. Only file sizes are
 * read up front; contents are read on demand through a bounded cache, so the corpus may exceed memory.
 */
import { seededUniform } from '@bytelatent/nn';
import { readFileSync, statSync, readdirSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { BOS_ID, BYTE_OFFSET, EOS_ID } from '@bytelatent/bytes';
import { TrainError } from './errors.js';

/** mulberry32 in [0, 1) from a 32-bit seed: `@bytelatent/nn`'s `seededUniform` (one implementation for the project). */
export const mulberry32: (seed: number) => () => number = seededUniform;

/** A seeded Fisher–Yates permutation of `0..n-1`. */
export function seededPermutation(n: number, seed: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const rand = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        re += '.*';
        i++;
        if (glob[i + 1] === '/') i++;
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else re += /[.+^${}()|[\]\\]/.test(c) ? `\\${c}` : c;
  }
  return new RegExp(`^${re}$`);
}

function walk(dir: string, out: string[]): void {
  const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.isFile() && !e.name.startsWith('.') && e.name !== 'manifest.json') out.push(p);
  }
}

/**
 * The files a data argument names: a file, a folder (every file under it, recursively, hidden files
 * and `manifest.json` skipped) or a glob (`corpus/train/**\/*.txt`). Sorted, so the order never
 * depends on the file system.
 *
 * @param specs - paths, folders or globs
 * @returns absolute file paths
 * @throws {TrainError} `DATA_UNAVAILABLE` when a spec matches nothing
 */
export function resolveDataFiles(specs: readonly string[]): string[] {
  const out = new Set<string>();
  for (const spec of specs) {
    const found: string[] = [];
    if (/[*?]/.test(spec)) {
      const abs = resolve(spec);
      const firstWild = abs.search(/[*?]/);
      const root = abs.slice(0, abs.lastIndexOf(sep, firstWild)) || sep;
      const all: string[] = [];
      try {
        walk(root, all);
      } catch {
        /* a missing root matches nothing */
      }
      const re = globToRegExp(abs.split(sep).join('/'));
      for (const f of all) if (re.test(f.split(sep).join('/'))) found.push(f);
    } else {
      let st;
      try {
        st = statSync(spec);
      } catch {
        throw new TrainError('DATA_UNAVAILABLE', `data path ${spec} does not exist`);
      }
      if (st.isDirectory()) walk(resolve(spec), found);
      else found.push(resolve(spec));
    }
    if (found.length === 0) throw new TrainError('DATA_UNAVAILABLE', `data spec ${spec} matches no file`);
    for (const f of found) out.add(f);
  }
  return [...out].sort();
}

/** One training row: `tokens[t]` predicts `targets[t]`. */
export interface TrainingRow {
  readonly tokens: Int32Array;
  readonly targets: Int32Array;
}

export interface ByteDatasetOptions {
  readonly files: readonly string[];
  /** Tokens per row (the model's context). */
  readonly seqLen: number;
  readonly seed: number;
  /** Bytes of file contents kept in memory (default 256 MB). */
  readonly cacheBytes?: number;
}

/** Deterministic shuffled rows over documents; see the module comment. */
export class ByteDataset {
  readonly seqLen: number;
  readonly seed: number;
  readonly files: readonly string[];
  /** Token count of each document (bytes + BOS + EOS). */
  private readonly docTokens: Float64Array;
  readonly totalTokens: number;
  readonly totalBytes: number;
  /** Rows per epoch. */
  readonly rowsPerEpoch: number;
  private readonly cache = new Map<number, Uint8Array>();
  private cachedBytes = 0;
  private readonly cacheLimit: number;
  private epochState: { epoch: number; docOrder: Int32Array; docStart: Float64Array; rowOrder: Int32Array } | undefined;

  /**
   * @throws {TrainError} `INVALID_ARGUMENT` for a bad `seqLen`; `DATA_UNAVAILABLE` when the files
   *   hold fewer tokens than one row
   */
  constructor(options: ByteDatasetOptions) {
    if (!Number.isInteger(options.seqLen) || options.seqLen < 1)
      throw new TrainError('INVALID_ARGUMENT', `seqLen must be an integer >= 1, got ${options.seqLen}`);
    if (!Number.isInteger(options.seed)) throw new TrainError('INVALID_ARGUMENT', `seed must be an integer, got ${options.seed}`);
    if (options.files.length === 0) throw new TrainError('DATA_UNAVAILABLE', 'no training files');
    this.seqLen = options.seqLen;
    this.seed = options.seed;
    this.files = [...options.files];
    this.cacheLimit = options.cacheBytes ?? 256 * 2 ** 20;
    this.docTokens = new Float64Array(this.files.length);
    let total = 0;
    let bytes = 0;
    this.files.forEach((f, i) => {
      const size = statSync(f).size;
      this.docTokens[i] = size + 2;
      total += size + 2;
      bytes += size;
    });
    this.totalTokens = total;
    this.totalBytes = bytes;
    this.rowsPerEpoch = Math.floor((total - 1) / this.seqLen);
    if (this.rowsPerEpoch < 1) {
      throw new TrainError('DATA_UNAVAILABLE', `the data holds ${total} tokens, fewer than one row of ${this.seqLen + 1}`);
    }
  }

  /**
   * The `g`-th row of the run (epoch `floor(g / rowsPerEpoch)`).
   *
   * @param g - global row index, >= 0
   */
  row(g: number): TrainingRow {
    const epoch = Math.floor(g / this.rowsPerEpoch);
    const state = this.epoch(epoch);
    const r = state.rowOrder[g % this.rowsPerEpoch]!;
    const seq = this.streamSlice(state, r * this.seqLen, this.seqLen + 1);
    return { tokens: seq.subarray(0, this.seqLen), targets: seq.subarray(1) };
  }

  /** The rows of one (micro-)batch: rows `first … first+count-1`. */
  rows(first: number, count: number): TrainingRow[] {
    return Array.from({ length: count }, (_, i) => this.row(first + i));
  }

  private epoch(epoch: number) {
    if (this.epochState?.epoch === epoch) return this.epochState;
    // Seeds of the two permutations are derived from (seed, epoch) so every epoch differs.
    const docOrder = seededPermutation(this.files.length, mix(this.seed, epoch, 1));
    const docStart = new Float64Array(this.files.length + 1);
    for (let i = 0; i < docOrder.length; i++) docStart[i + 1] = docStart[i]! + this.docTokens[docOrder[i]!]!;
    const rowOrder = seededPermutation(this.rowsPerEpoch, mix(this.seed, epoch, 2));
    this.epochState = { epoch, docOrder, docStart, rowOrder };
    return this.epochState;
  }

  private streamSlice(state: NonNullable<ByteDataset['epochState']>, start: number, length: number): Int32Array {
    const out = new Int32Array(length);
    // Binary search for the document holding `start`.
    let lo = 0;
    let hi = state.docOrder.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (state.docStart[mid]! <= start) lo = mid;
      else hi = mid - 1;
    }
    let filled = 0;
    let pos = start;
    for (let d = lo; filled < length && d < state.docOrder.length; d++) {
      const doc = state.docOrder[d]!;
      const offset = pos - state.docStart[d]!;
      const docLen = this.docTokens[doc]!;
      const take = Math.min(docLen - offset, length - filled);
      const bytes = this.content(doc);
      for (let i = 0; i < take; i++) {
        const t = offset + i;
        out[filled + i] = t === 0 ? BOS_ID : t === docLen - 1 ? EOS_ID : bytes[t - 1]! + BYTE_OFFSET;
      }
      filled += take;
      pos += take;
    }
    return out;
  }

  private content(doc: number): Uint8Array {
    const hit = this.cache.get(doc);
    if (hit) {
      this.cache.delete(doc);
      this.cache.set(doc, hit);
      return hit;
    }
    const bytes = new Uint8Array(readFileSync(this.files[doc]!));
    if (bytes.length + 2 !== this.docTokens[doc]) {
      throw new TrainError(
        'DATA_UNAVAILABLE',
        `${this.files[doc]} changed size during training (${this.docTokens[doc]! - 2} -> ${bytes.length} bytes)`,
      );
    }
    this.cache.set(doc, bytes);
    this.cachedBytes += bytes.length;
    for (const [k, v] of this.cache) {
      if (this.cachedBytes <= this.cacheLimit || k === doc) break;
      this.cache.delete(k);
      this.cachedBytes -= v.length;
    }
    return bytes;
  }
}

function mix(seed: number, epoch: number, stream: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(epoch + 1, 0xc2b2ae35) ^ Math.imul(stream, 0x27d4eb2f);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Held-out evaluation rows: each file read in order (no shuffle), cut into rows of `seqLen + 1`
 * tokens, the first `maxBytesPerFile` bytes of each file only (all when undefined).
 *
 * @param files - held-out files
 * @param seqLen - tokens per row
 * @param maxBytesPerFile - bound on the bytes scored per file
 * @returns rows, and the number of byte targets they hold (the BPB denominator)
 */
export function evaluationRows(
  files: readonly string[],
  seqLen: number,
  maxBytesPerFile?: number,
): { rows: TrainingRow[]; byteTargets: number } {
  const rows: TrainingRow[] = [];
  let byteTargets = 0;
  for (const f of files) {
    let bytes = new Uint8Array(readFileSync(f));
    if (maxBytesPerFile !== undefined && bytes.length > maxBytesPerFile) bytes = bytes.subarray(0, maxBytesPerFile);
    if (bytes.length === 0) continue;
    // BOS then the bytes; targets are the bytes (EOS is not scored: bits per *byte*).
    const seq = new Int32Array(bytes.length + 1);
    seq[0] = BOS_ID;
    for (let i = 0; i < bytes.length; i++) seq[i + 1] = bytes[i]! + BYTE_OFFSET;
    for (let s = 0; s + 1 < seq.length; s += seqLen) {
      const end = Math.min(s + seqLen + 1, seq.length);
      rows.push({ tokens: seq.slice(s, end - 1), targets: seq.slice(s + 1, end) });
      byteTargets += end - 1 - s;
    }
  }
  return { rows, byteTargets };
}
