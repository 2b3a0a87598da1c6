import { BPE_ID } from '@bytelatent/bytes';
import { PatcherError } from './errors.js';

/**
 * How a row is cut into patches (architecture §3; the reference's `Patcher.patch` in bytelatent/data/patcher.py):
 * - `'entropy'`: a patch starts after every position whose entropy is above a global threshold (§3.3);
 * - `'monotonic'`: ... whose entropy rose by more than a relative threshold (§3.4);
 * - `'combined'`: both the global and the relative test must pass (§3.5);
 * - `'entropy-top-k'`: no threshold: the ⌊N / patchSize⌋ − 2 positions of highest entropy start
 *   patches (the reference's entropy mode with `threshold=None`, `find_entropy_patch_start_ids`);
 * - `'space'`: a patch ends at the first space-like byte of a run (§3.7);
 * - `'static'`: fixed-size patches, the first one forced to a single token (§3.7, §14.10);
 * - `'byte'`: one patch per token (§3.7);
 * - `'bpe'`: a patch ends at each BPE delimiter token (id 3) that the BPE-delimiter tokenizer put
 *   before every BPE token (`find_bpe_delim_patch_start_ids`; `@bytelatent/bytes` `encodeWithBpeDelimiters`);
 * - `'bpe-patcher'`: a patch starts after every position where a model trained to predict those
 *   delimiters predicts one (`find_bpe_patcher_patch_start_ids`; the signal is its argmax id).
 */
export type PatchingMode = 'entropy' | 'monotonic' | 'combined' | 'entropy-top-k' | 'space' | 'static' | 'byte' | 'bpe' | 'bpe-patcher';

/** Options of {@link findPatchBoundaries}. Options a mode does not use are ignored (except as noted). */
export interface PatchOptions {
  readonly mode: PatchingMode;
  /**
   * `'entropy'`: the global threshold θ in nats (a patch starts after H[t] > θ, strict);
   * `'monotonic'`: the relative threshold (H[t] − H[t−1] > θ); `'combined'`: the global θ.
   * Required by those three modes. The reference's default is 1.335442066192627.
   */
  readonly threshold?: number;
  /** `'combined'` mode: the relative threshold (the reference's `threshold_add`). Required there. */
  readonly thresholdAdd?: number;
  /**
   * `'static'` mode: k tokens per patch (the reference's `patch_size`), an integer >= 1.
   * `'entropy-top-k'`: the mean patch size aimed at, a number > 0: a row of N tokens gets
   * ⌊N / patchSize⌋ − 2 entropy-chosen starts besides 0 and 1 (none when that is below 1).
   */
  readonly patchSize?: number;
  /** Split every patch longer than this (architecture §3.8) after any mode; an integer >= 1. Default: no cap. */
  readonly maxPatchLength?: number;
  /**
   * The reference's `include_next_token`: the lengths cover N+1 slots, the last one being the
   * not-yet-seen next token, as the model's forward and generation use. Default `true` (the
   * reference's `Patcher.patch` defaults to `False`; its training pipeline passes `False`).
   */
  readonly includeNextToken?: boolean;
}

/** What {@link findPatchBoundaries} returns for one row. Every array is freshly allocated. */
export interface PatchBoundaries {
  /** Start offset of every patch (after the max-length split), in token positions. */
  readonly patchStarts: Int32Array;
  /** Lengths after the split, all >= 1; they sum to N+1 (`includeNextToken`) or N. */
  readonly patchLengths: Int32Array;
  /** Starts before the max-length split, without the reference's padding entries. */
  readonly patchStartsUnsplit: Int32Array;
  /** Lengths before the max-length split, all >= 1, same sum as `patchLengths`. */
  readonly patchLengthsUnsplit: Int32Array;
}

/** A row given to {@link calibrateThreshold}. */
export interface CalibrationRow {
  /** The row's token ids; only their count N is read. */
  readonly tokens: ArrayLike<number>;
  /** The row's N entropies in nats. */
  readonly entropies: ArrayLike<number>;
}

/** Options of {@link calibrateThreshold}. */
export interface CalibrationOptions {
  /** `'entropy'` (default) calibrates the global threshold, `'monotonic'` the relative one. */
  readonly mode?: 'entropy' | 'monotonic';
  /** As {@link PatchOptions.includeNextToken}; default `true`. With `false`, bytes = tokens (the training statistic). */
  readonly includeNextToken?: boolean;
  /** As {@link PatchOptions.maxPatchLength}: the split patches are counted. */
  readonly maxPatchLength?: number;
}

/** What {@link calibrateThreshold} returns. */
export interface Calibration {
  /** The threshold to pass as {@link PatchOptions.threshold} (a float32 value). */
  readonly threshold: number;
  /** `bytes / patches` over all rows at that threshold. */
  readonly meanPatchSize: number;
  /** Number of patches over all rows at that threshold (after any max-length split). */
  readonly patches: number;
  /** Sum of all patch lengths: Σ (N+1) with `includeNextToken`, else Σ N. */
  readonly bytes: number;
}

/** Every patching rule, in the order the documentation lists them. */
export const PATCHING_MODES: readonly PatchingMode[] = [
  'entropy',
  'monotonic',
  'combined',
  'entropy-top-k',
  'space',
  'static',
  'byte',
  'bpe',
  'bpe-patcher',
];
const MODES: ReadonlySet<string> = new Set<string>(PATCHING_MODES);

/** Token ids below this are special (BOE 0, BOS 1, EOS 2, BPE 3); byte b has id b + 4. */
const OFFSET = 4;

/** Options after validation, with defaults filled in. */
interface Resolved {
  readonly mode: PatchingMode;
  readonly threshold: number;
  readonly thresholdAdd: number;
  readonly patchSize: number;
  readonly maxPatchLength: number | undefined;
  readonly includeNextToken: boolean;
}

function invalid(message: string): PatcherError {
  return new PatcherError('INVALID_ARGUMENT', message);
}

function show(value: unknown): string {
  return typeof value === 'number' || typeof value === 'boolean' ? String(value) : typeof value;
}

function requireNumber(name: string, value: unknown, mode: string): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw invalid(`mode '${mode}' needs ${name} to be a number, got ${show(value)}`);
  }
  return value;
}

function checkMaxPatchLength(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw invalid(`maxPatchLength must be an integer >= 1, got ${show(value)}`);
  }
  return value;
}

function checkIncludeNextToken(value: unknown): boolean {
  if (value === undefined) return true;
  if (typeof value !== 'boolean') throw invalid(`includeNextToken must be a boolean, got ${show(value)}`);
  return value;
}

function resolveOptions(options: PatchOptions): Resolved {
  if (typeof options !== 'object' || options === null) throw invalid('options must be an object');
  const { mode } = options;
  if (typeof mode !== 'string' || !MODES.has(mode)) {
    throw invalid(`mode must be one of ${[...MODES].join(', ')}, got ${show(mode)}`);
  }
  let threshold = NaN;
  let thresholdAdd = NaN;
  let patchSize = 0;
  if (mode === 'entropy' || mode === 'monotonic' || mode === 'combined') {
    threshold = requireNumber('threshold', options.threshold, mode);
  }
  if (mode === 'combined') thresholdAdd = requireNumber('thresholdAdd', options.thresholdAdd, mode);
  if (mode === 'entropy' && options.thresholdAdd != null) {
    // In the reference, threshold_add with monotonicity off is what selects the combined rule
    // (architecture §3.5); silently ignoring it here would patch differently from such a config.
    throw invalid("thresholdAdd is the combined rule's relative threshold: use mode 'combined'");
  }
  if (mode === 'static') {
    const k = options.patchSize;
    // The reference fills an integer tensor with a float patch_size (default 4.5 truncates to 4
    // while the patch count uses 4.5), which breaks its own sum assert: only integers make sense.
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 1) {
      throw invalid(`mode 'static' needs patchSize to be an integer >= 1, got ${show(k)}`);
    }
    patchSize = k;
  }
  if (mode === 'entropy-top-k') {
    const k = options.patchSize;
    if (typeof k !== 'number' || !Number.isFinite(k) || k <= 0)
      throw invalid(`mode 'entropy-top-k' needs patchSize (the mean patch size aimed at) to be a number > 0, got ${show(k)}`);
    patchSize = k;
  }
  return {
    mode: mode as PatchingMode,
    threshold,
    thresholdAdd,
    patchSize,
    maxPatchLength: checkMaxPatchLength(options.maxPatchLength),
    includeNextToken: checkIncludeNextToken(options.includeNextToken),
  };
}

function isArrayLike(value: unknown): value is ArrayLike<number> {
  return value !== null && typeof value === 'object' && typeof (value as ArrayLike<number>).length === 'number';
}

function checkTokens(tokens: ArrayLike<number>): number {
  if (!isArrayLike(tokens)) throw invalid('tokens must be an array of token ids');
  if (tokens.length === 0) throw new PatcherError('EMPTY_INPUT', 'tokens is empty: a row needs at least one token (BOS)');
  return tokens.length;
}

/**
 * What `mode` reads besides the tokens, one value per token: `'entropies'` (nats) for the entropy
 * rules, `'predictions'` (the BPE patcher model's argmax id) for `'bpe-patcher'`, else nothing.
 */
export function patchingSignal(mode: PatchingMode): 'entropies' | 'predictions' | undefined {
  if (mode === 'entropy' || mode === 'monotonic' || mode === 'combined' || mode === 'entropy-top-k') return 'entropies';
  return mode === 'bpe-patcher' ? 'predictions' : undefined;
}

/** Whether `mode` reads a signal per token, entropies or predictions (and so needs them). */
function readsSignal(mode: PatchingMode): boolean {
  return patchingSignal(mode) !== undefined;
}

/**
 * Validates what `mode` reads of a piece of a row whose first token is at position `offset`: the
 * entropies (returned) for the entropy modes, integer token ids for `'space'`. Positions in the
 * messages are row positions.
 */
function checkInputs(
  tokens: ArrayLike<number>,
  entropies: ArrayLike<number> | undefined,
  o: Resolved,
  where: string,
  offset: number,
): ArrayLike<number> | undefined {
  if (readsSignal(o.mode)) return checkEntropies(entropies, tokens.length, where, offset);
  if (o.mode === 'space' || o.mode === 'bpe') {
    for (let i = 0; i < tokens.length; i++) {
      if (!Number.isInteger(tokens[i])) {
        const at = offset === 0 ? '' : ` (position ${offset + i})`;
        throw invalid(`tokens[${i}]${at} = ${show(tokens[i])} is not an integer token id`);
      }
    }
  }
  return undefined;
}

function checkEntropies(entropies: ArrayLike<number> | undefined, n: number, where: string, offset = 0): ArrayLike<number> {
  if (entropies === undefined || entropies === null || typeof entropies.length !== 'number') {
    throw new PatcherError('INVALID_ENTROPIES', `${where}: entropies are required, one per token (${n})`);
  }
  if (entropies.length !== n) {
    throw new PatcherError('INVALID_ENTROPIES', `${where}: got ${entropies.length} entropies for ${n} tokens`);
  }
  for (let i = 0; i < n; i++) {
    const h = entropies[i];
    // Checked as float32, the precision the reference compares in (see scanCandidates).
    if (typeof h !== 'number' || !Number.isFinite(Math.fround(h))) {
      throw new PatcherError('INVALID_ENTROPIES', `${where}: entropy at position ${offset + i} is ${show(h)}, not a finite float32 number`);
    }
  }
  return entropies;
}

/**
 * Whether byte id `id` is "space-like" for the space patcher (architecture §3.7): anything but an ASCII
 * letter or digit or a UTF-8 continuation byte (128..191); lead bytes >= 192 and special ids count.
 */
function isSpaceLike(id: number): boolean {
  const b = id - OFFSET;
  return b < 48 || (b > 57 && b < 65) || (b > 90 && b < 97) || (b > 122 && b < 128) || b >= 192;
}

/**
 * What the start rule for position t+1 reads of token t−1, carried from one piece of a row to the
 * next (streaming) so that no piece needs the ones before it.
 */
interface Carry {
  /** The float32 entropy of the previous token (`'monotonic'`, `'combined'`). */
  h: number;
  /** Whether the previous token is space-like (`'space'`). */
  space: boolean;
}

function newCarry(): Carry {
  return { h: 0, space: false };
}

/**
 * The start rules of architecture §3.3–§3.7, one token at a time: for each token t = `offset` + i of the
 * piece (`tokens[i]`, `h[i]`; `h` is read by the entropy modes only), decides whether position t+1 is
 * a candidate start and if so writes t+1 to `out[k++]`; returns the new k. The decision reads tokens
 * t and t−1 only, the latter through `carry`, which is updated; position 0 (always a start) is not
 * written. A candidate p is a start iff p < N+1 (`includeNextToken`) or p < N: every candidate is one
 * except one at N without the next slot, which is the row's end instead (findStarts drops it; the
 * streaming patcher closes a patch there either way). Candidates come out strictly increasing.
 * Shared by {@link findPatchBoundaries} and {@link StreamingPatcher}.
 */
function scanCandidates(
  o: Resolved,
  tokens: ArrayLike<number>,
  h: ArrayLike<number> | undefined,
  offset: number,
  carry: Carry,
  out: Int32Array,
  k: number,
): number {
  const count = tokens.length;
  switch (o.mode) {
    case 'entropy': {
      // Positions 0 and 1 always start a patch, so H[0] is never read; then t+1 starts iff
      // H[t] > θ, for t = 1 up to N−1 with the next slot, N−2 without (architecture §3.3). The reference
      // casts entropies to float32 and torch compares a float32 tensor with a Python float in
      // float32, so θ is rounded to float32 too; fround on both sides reproduces that.
      const th = Math.fround(o.threshold);
      for (let i = 0; i < count; i++) {
        const t = offset + i;
        if (t === 0 || Math.fround(h![i]!) > th) out[k++] = t + 1;
      }
      break;
    }
    case 'monotonic':
    case 'combined': {
      // Starts 0, 1 and, whenever the truncated mask is non-empty (N >= 2 with the next slot, N >= 3
      // without, i.e. 2 is below the slot count), 2: its first element is forced True (§3.4, §3.5).
      const th = Math.fround(o.threshold);
      const add = Math.fround(o.thresholdAdd);
      const combined = o.mode === 'combined';
      let prev = carry.h;
      for (let i = 0; i < count; i++) {
        const t = offset + i;
        const ht = Math.fround(h![i]!);
        // fround(a − b) is exactly the float32 subtraction the reference does: rounding twice,
        // through float64 first, is harmless because 53 >= 2·24 + 2 bits.
        if (t <= 1) out[k++] = t + 1;
        else if (!combined) {
          // t+1 starts iff H[t] − H[t−1] > θ for t >= 2 (architecture §3.4).
          if (Math.fround(ht - prev) > th) out[k++] = t + 1;
        } else if (t >= 3 && Math.fround(ht - prev) > add && ht > th) {
          // Position 3 never starts a patch: the reference's "previous was not a start" test only
          // sees the forced start at 2; from t = 3 on it is always true (architecture §3.5).
          out[k++] = t + 1;
        }
        prev = ht;
      }
      carry.h = prev;
      break;
    }
    case 'space': {
      // A space-like byte ends its patch only if the previous byte was not space-like, tested on the
      // original flags (runs of spaces join the next patch); special ids always end one. Position
      // i+1 starts a patch for an end at i >= 1, so candidates reach N whatever include_next_token
      // says; a start at N without it would be a zero-length patch that the reference trims (§3.7).
      let prevSpace = carry.space;
      for (let i = 0; i < count; i++) {
        const t = offset + i;
        const id = tokens[i]!;
        const space = isSpaceLike(id);
        if (t === 0 || (space && !prevSpace) || id < OFFSET) out[k++] = t + 1;
        prevSpace = space;
      }
      carry.space = prevSpace;
      break;
    }
    case 'static': {
      // DEVIATION from the reference (architecture §3.7), on purpose: it starts patches at 0, k, 2k, … so
      // its first patch holds k tokens, which the model rejects (first patch = one token). We follow
      // architecture §14.10 and also start a patch at 1, as the training packer rewrites the first patch (§8.3).
      const size = o.patchSize;
      for (let i = 0; i < count; i++) {
        const p = offset + i + 1;
        if (p === 1 || p % size === 0) out[k++] = p;
      }
      break;
    }
    case 'byte': {
      for (let i = 0; i < count; i++) out[k++] = offset + i + 1;
      break;
    }
    case 'bpe': {
      // The delimiter is the last token of its patch: t+1 starts one when token t is a delimiter.
      // The reference tests tokens[:, :-1] only, so the row's last token never starts the next slot;
      // findStarts drops that candidate (the rule cannot be streamed for that reason).
      for (let i = 0; i < count; i++) {
        const t = offset + i;
        if (t === 0 || tokens[i] === BPE_ID) out[k++] = t + 1;
      }
      break;
    }
    case 'bpe-patcher': {
      // h[t] is the id the patcher model predicts after reading tokens 1..t (the reference feeds it
      // the row without its first token): a predicted delimiter starts a patch at t+1.
      for (let i = 0; i < count; i++) {
        const t = offset + i;
        if (t === 0 || h![i] === BPE_ID) out[k++] = t + 1;
      }
      break;
    }
    case 'entropy-top-k':
      // A global choice over the whole row: findStarts computes it (never streamed).
      throw invalid("mode 'entropy-top-k' chooses its starts over the whole row: use findPatchBoundaries");
  }
  return k;
}

/**
 * `'entropy-top-k'` (the reference's `find_entropy_patch_start_ids` with `threshold=None`): starts
 * 0 and 1, then t+1 for the k = ⌊N / patchSize⌋ − 2 positions t >= 1 of highest float32 entropy,
 * in increasing order. Equal entropies are taken from the lower position first (torch's topk leaves
 * that order unspecified). Writes into `starts` and returns the count.
 */
function topKStarts(h: ArrayLike<number>, patchSize: number, starts: Int32Array): number {
  const n = h.length;
  starts[0] = 0;
  starts[1] = 1;
  let count = 2;
  const k = Math.min(n - 1, Math.floor(n / patchSize) - 2);
  if (k <= 0) return count;
  const positions = Int32Array.from({ length: n - 1 }, (_, i) => i + 1);
  const value = (t: number) => Math.fround(h[t]!);
  positions.sort((a, b) => value(b) - value(a) || a - b);
  const chosen = positions.subarray(0, k).sort();
  for (const t of chosen) starts[count++] = t + 1;
  return count;
}

/**
 * Whether {@link scanCandidates} makes position p >= 1 a candidate whatever token p−1 and its
 * entropy are: p = 1; p = 2 for `'monotonic'` and `'combined'`; every multiple of k for `'static'`;
 * every position for `'byte'`. Must agree with scanCandidates (the streaming tests check it).
 */
function forcedStart(o: Resolved, p: number): boolean {
  switch (o.mode) {
    case 'monotonic':
    case 'combined':
      return p <= 2;
    case 'static':
      return p === 1 || p % o.patchSize === 0;
    case 'byte':
      return true;
    default:
      return p === 1;
  }
}

/**
 * Writes the patch starts of one row into `starts` (room for N+1 entries) and returns how many
 * there are. Starts are strictly increasing and all below the slot count (N+1 or N).
 */
function findStarts(tokens: ArrayLike<number>, h: ArrayLike<number> | undefined, o: Resolved, starts: Int32Array): number {
  starts[0] = 0;
  const k = o.mode === 'entropy-top-k' ? topKStarts(h!, o.patchSize, starts) : scanCandidates(o, tokens, h, 0, newCarry(), starts, 1);
  // Without the next slot a candidate at N would open an empty patch: the reference drops the last
  // mask column (entropy modes) or trims the zero length (space, static, byte, top-k). The BPE
  // rule never starts one at N: it reads tokens[:, :-1].
  return (!o.includeNextToken || o.mode === 'bpe') && starts[k - 1] === tokens.length ? k - 1 : k;
}

/** Cumulative starts of `lengths`: first, first+L0, first+L0+L1, … (one per length). */
function startsFromLengths(lengths: Int32Array, first = 0): Int32Array {
  const starts = new Int32Array(lengths.length);
  let acc = first;
  for (let i = 0; i < lengths.length; i++) {
    starts[i] = acc;
    acc += lengths[i]!;
  }
  return starts;
}

/**
 * Cuts one row into patches, as the reference's `Patcher.patch` does for a batch of one row
 * (architecture §3): patch starts by mode, lengths from consecutive starts, then the optional
 * `maxPatchLength` split (§3.8). The first patch always holds exactly one token (BOS).
 *
 * Reproduced reference behaviour: strict `>` tests in float32; positions 0 and 1 always start a
 * patch; the monotonic and combined rules always start one at 2 and the combined rule never at 3;
 * a row whose entropies never pass the threshold gives `[1, N]` (`[1, N − 1]` without the next
 * slot; the reference's padding entries are not returned). One deliberate deviation: `'static'` starts a patch at position 1 so
 * the first patch is a single token (architecture §14.10); the reference's first static patch holds k tokens.
 *
 * Runs in O(N) with a few typed-array allocations; rows are independent (call once per row).
 *
 * @param tokens - the row's N token ids (byte + 4; BOS = 1, EOS = 2); values are read by `'space'` only
 * @param entropies - the row's N entropies in nats (H[t] is the uncertainty about token t+1); needed
 *   by `'entropy'`, `'monotonic'` and `'combined'`, ignored otherwise
 * @param options - the mode and its parameters
 * @returns the patch starts and lengths, before and after the max-length split
 * @throws {PatcherError} `EMPTY_INPUT` for N = 0; `INVALID_ENTROPIES` when entropies are missing,
 *   of a length other than N, or hold a NaN or infinite value (the message names the position);
 *   `INVALID_ARGUMENT` for an unknown mode, a missing or NaN threshold, a missing or non-integer
 *   `patchSize`, a `maxPatchLength` below 1 or not an integer, a non-boolean `includeNextToken`,
 *   `thresholdAdd` with mode `'entropy'`, or a non-integer token in `'space'` mode
 */
export function findPatchBoundaries(
  tokens: ArrayLike<number>,
  entropies: ArrayLike<number> | undefined,
  options: PatchOptions,
): PatchBoundaries {
  const o = resolveOptions(options);
  const n = checkTokens(tokens);
  const h = checkInputs(tokens, entropies, o, 'findPatchBoundaries', 0);
  const total = o.includeNextToken ? n + 1 : n;
  const buffer = new Int32Array(n + 1);
  const count = findStarts(tokens, h, o, buffer);
  const patchStartsUnsplit = buffer.slice(0, count);
  const patchLengthsUnsplit = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const end = i + 1 < count ? patchStartsUnsplit[i + 1]! : total;
    patchLengthsUnsplit[i] = end - patchStartsUnsplit[i]!;
  }
  if (o.maxPatchLength === undefined) {
    return {
      patchStarts: patchStartsUnsplit.slice(),
      patchLengths: patchLengthsUnsplit.slice(),
      patchStartsUnsplit,
      patchLengthsUnsplit,
    };
  }
  const patchLengths = splitLongPatches(patchLengthsUnsplit, o.maxPatchLength);
  return { patchStarts: startsFromLengths(patchLengths), patchLengths, patchStartsUnsplit, patchLengthsUnsplit };
}

/** Patches returned by {@link StreamingPatcher}: starts in row positions and lengths, after the max-length split. */
export interface StreamedPatches {
  /** Start of every patch, in positions of the whole row (not of the piece). */
  readonly starts: Int32Array;
  /** Length of every patch, all >= 1, at most `maxPatchLength` when set. */
  readonly lengths: Int32Array;
}

/** The most tokens a streamed row may hold: starts are Int32 and the slot count is N+1. */
const MAX_STREAM_TOKENS = 0x7ffffffe;

/**
 * The patches from `open` up to each boundary of `ends[0..count)` (increasing; those not past the
 * running start are skipped) in turn, each split under the cap `m` (Infinity for none), then the
 * m-slot chunks of the still-open patch that are already final because the patch is known to end
 * at or after `frontier` (architecture §3.8: a patch of at least m slots starts with an m-slot chunk,
 * whether it is split or not). Returns them and the new open start.
 */
function emitPatches(
  open: number,
  ends: Int32Array,
  count: number,
  frontier: number,
  m: number,
): { readonly patches: StreamedPatches; readonly open: number } {
  let cur = open;
  let n = 0;
  for (let i = 0; i < count; i++) {
    const e = ends[i]!;
    if (e <= cur) continue;
    n += splitCount(e - cur, m);
    cur = e;
  }
  const chunks = frontier - cur >= m ? Math.floor((frontier - cur) / m) : 0;
  const lengths = new Int32Array(n + chunks);
  let j = 0;
  cur = open;
  for (let i = 0; i < count; i++) {
    const e = ends[i]!;
    if (e <= cur) continue;
    j = writeSplit(e - cur, m, lengths, j);
    cur = e;
  }
  for (let c = 0; c < chunks; c++) lengths[j++] = m;
  // (chunks * m would be NaN for m = Infinity, where chunks is 0.)
  return { patches: { starts: startsFromLengths(lengths, open), lengths }, open: chunks === 0 ? cur : cur + chunks * m };
}

/**
 * Patches one row fed in pieces, returning each patch as soon as it is final: the concatenation of
 * what every {@link push} and the closing {@link finish} return equals the `patchStarts` /
 * `patchLengths` of {@link findPatchBoundaries} on the whole row, for every mode, option and way of
 * cutting the row (pieces of any length, empty ones included). It runs the same start rules.
 *
 * Between calls the patcher keeps O(1) state: the position, the open patch's start, and what the
 * start rule reads of the last token (its float32 entropy, its space flag), never the history.
 * Each call runs in O(piece length + patches returned).
 *
 * When a patch is final: its end must be a boundary whatever comes next. Once tokens 0..n−1 are in,
 * every position up to n is decided (the rule for t+1 reads tokens t and t−1). Without
 * `includeNextToken` a start at n is final at once (if no token follows, n ends the row anyway);
 * with it, the row ends at n+1 at the earliest, so n+1 is final only where the rule starts a patch
 * there whatever token n is (positions 1 and, monotonic/combined, 2; every `'static'` k-th and
 * every `'byte'` position). With `maxPatchLength` = m, an m-slot chunk of the open patch is final as
 * soon as the open patch is known to reach m slots.
 *
 * After {@link finish} (or a fresh construction) the patcher is ready for a new row. A call that
 * throws leaves the state as it was.
 *
 * @example
 * ```ts
 * const sp = new StreamingPatcher({ mode: 'entropy', threshold: 1.335442066192627 });
 * for (const { tokens, entropies } of pieces) consume(sp.push(tokens, entropies));
 * consume(sp.finish());
 * ```
 */
export class StreamingPatcher {
  private readonly options: Resolved;
  private readonly cap: number;
  private received = 0;
  /** Start of the open (not yet returned) patch or m-slot chunk; never past the slot count. */
  private open = 0;
  private readonly carry: Carry = newCarry();

  /**
   * @param options - as for {@link findPatchBoundaries}
   * @throws {PatcherError} `INVALID_ARGUMENT` for the options {@link findPatchBoundaries} rejects
   */
  constructor(options: PatchOptions) {
    this.options = resolveOptions(options);
    this.cap = this.options.maxPatchLength ?? Infinity;
    // 'entropy-top-k' ranks the whole row; 'bpe' needs to know the row's last token (a final
    // delimiter starts nothing): neither decides a patch from the tokens seen so far.
    if (this.options.mode === 'entropy-top-k' || this.options.mode === 'bpe')
      throw invalid(`mode '${this.options.mode}' decides patches over the whole row and cannot be streamed: use findPatchBoundaries`);
  }

  /** Tokens received so far in the current row (0 after {@link finish}). */
  get position(): number {
    return this.received;
  }

  /**
   * Appends tokens to the row.
   *
   * @param tokens - the next token ids (byte + 4); may be empty
   * @param entropies - their entropies in nats, one per token: required by `'entropy'`,
   *   `'monotonic'` and `'combined'` (even for an empty piece), ignored otherwise
   * @returns the patches that became final, in row positions, after the max-length split
   * @throws {PatcherError} `INVALID_ENTROPIES` when entropies are missing, of a length other than
   *   the tokens', or hold a NaN or infinite value (the message names the row position);
   *   `INVALID_ARGUMENT` when `tokens` is not array-like or, in `'space'` mode, holds a non-integer;
   *   `INPUT_TOO_LONG` when the row would pass 2^31 − 2 tokens. The state is then unchanged.
   */
  push(tokens: ArrayLike<number>, entropies?: ArrayLike<number>): StreamedPatches {
    const o = this.options;
    if (!isArrayLike(tokens)) throw invalid('tokens must be an array of token ids');
    const offset = this.received;
    const count = tokens.length;
    if (count > MAX_STREAM_TOKENS - offset) {
      throw new PatcherError('INPUT_TOO_LONG', `StreamingPatcher.push: a row is limited to ${MAX_STREAM_TOKENS} tokens`);
    }
    const h = checkInputs(tokens, entropies, o, 'StreamingPatcher.push', offset);
    if (count === 0) return { starts: new Int32Array(0), lengths: new Int32Array(0) };
    // Nothing below throws: the state changes only once the piece is known to be valid.
    const ends = new Int32Array(count + 1);
    let k = scanCandidates(o, tokens, h, offset, this.carry, ends, 0);
    const end = offset + count;
    // Every candidate up to `end` is a boundary: a start, or (only `end`, without the next slot)
    // the row's end. With the next slot the row ends at end+1 at the earliest.
    if (o.includeNextToken && forcedStart(o, end + 1)) ends[k++] = end + 1;
    const out = emitPatches(this.open, ends, k, o.includeNextToken ? end + 1 : end, this.cap);
    this.open = out.open;
    this.received = end;
    return out.patches;
  }

  /**
   * Ends the row: closes the last patch at N+1 (`includeNextToken`) or N, returns the patches not
   * yet returned and resets the patcher for a new row.
   *
   * @returns the remaining patches, in row positions, after the max-length split
   * @throws {PatcherError} `EMPTY_INPUT` when no token was pushed, as {@link findPatchBoundaries}
   *   does for an empty row (the patcher stays ready for a row)
   */
  finish(): StreamedPatches {
    const n = this.received;
    if (n === 0) {
      throw new PatcherError('EMPTY_INPUT', 'StreamingPatcher.finish: no token was pushed: a row needs at least one token (BOS)');
    }
    const total = this.options.includeNextToken ? n + 1 : n;
    const out = emitPatches(this.open, Int32Array.of(total), 1, total, this.cap);
    this.received = 0;
    this.open = 0;
    this.carry.h = 0;
    this.carry.space = false;
    return out.patches;
  }
}

function checkLengths(lengths: ArrayLike<number>, name: string): void {
  if (lengths === null || typeof lengths !== 'object' || typeof lengths.length !== 'number') {
    throw invalid(`${name} must be an array of patch lengths`);
  }
  for (let i = 0; i < lengths.length; i++) {
    const l = lengths[i];
    if (typeof l !== 'number' || !Number.isInteger(l) || l < 0) {
      throw invalid(`${name}[${i}] = ${show(l)} is not a non-negative integer`);
    }
  }
}

/**
 * Replaces every length L > m by ⌊L/m⌋ copies of m followed by the remainder when non-zero, e.g.
 * 10 with m = 4 gives 4, 4, 2 (architecture §3.8, the reference's `split_large_numbers`). Other lengths,
 * zeros included, are kept as they are. The sum is unchanged.
 *
 * @param lengths - patch lengths (non-negative integers)
 * @param maxPatchLength - the cap m, an integer >= 1
 * @returns the split lengths, a new array
 * @throws {PatcherError} `INVALID_ARGUMENT` if `maxPatchLength` is not an integer >= 1 or a length
 *   is not a non-negative integer
 */
export function splitLongPatches(lengths: ArrayLike<number>, maxPatchLength: number): Int32Array {
  const m = checkMaxPatchLength(maxPatchLength);
  if (m === undefined) throw invalid('maxPatchLength must be an integer >= 1, got undefined');
  checkLengths(lengths, 'lengths');
  let count = 0;
  for (let i = 0; i < lengths.length; i++) count += splitCount(lengths[i]!, m);
  const out = new Int32Array(count);
  let j = 0;
  for (let i = 0; i < lengths.length; i++) j = writeSplit(lengths[i]!, m, out, j);
  return out;
}

/** How many patches one of length `l` becomes under the cap `m` (architecture §3.8); `m` may be Infinity. */
function splitCount(l: number, m: number): number {
  return l > m ? Math.ceil(l / m) : 1;
}

/** Writes the split of one length `l` under the cap `m` to `out` from `j`; returns the next j. */
function writeSplit(l: number, m: number, out: Int32Array, j: number): number {
  while (l > m) {
    out[j++] = m;
    l -= m;
  }
  out[j++] = l;
  return j;
}

/** `patch_ids_from_lengths` over `lengths[from..]`. */
function patchIds(lengths: ArrayLike<number>, from: number, seqLen: number): Int32Array {
  const out = new Int32Array(seqLen);
  const end = lengths.length;
  // id(t) = #{j : cum[j] <= t} − 1 with cum = [0, L0, L0+L1, …] (architecture §3.9). cum is non-decreasing,
  // so one pointer walks it; zero lengths repeat a cum value and are counted as in the reference,
  // and positions past the sum get the number of patches, as the reference's formula gives.
  let next = from; // index (into lengths) of the next cum entry to consume, offset by `from`
  let cum = 0;
  let id = -1;
  for (let t = 0; t < seqLen; t++) {
    while (next <= end && cum <= t) {
      id++;
      if (next < end) cum += lengths[next]!;
      next++;
    }
    out[t] = id;
  }
  return out;
}

function checkSeqLen(seqLen: unknown): asserts seqLen is number {
  if (typeof seqLen !== 'number' || !Number.isInteger(seqLen) || seqLen < 0) {
    throw invalid(`seqLen must be an integer >= 0, got ${show(seqLen)}`);
  }
}

/**
 * The patch index of each of the first `seqLen` positions (the reference's `patch_ids_from_lengths`,
 * architecture §3.9): the number of cumulative boundaries `[0, L0, L0+L1, …]` that are <= t, minus one.
 * Computed over the N real positions even when the lengths sum to N+1. Positions past the sum of the
 * lengths get `lengths.length`, as the reference's formula does.
 *
 * @param lengths - patch lengths (non-negative integers)
 * @param seqLen - how many positions to label (N)
 * @returns `seqLen` patch ids, non-decreasing from 0
 * @throws {PatcherError} `INVALID_ARGUMENT` for a negative or non-integer length or `seqLen`
 */
export function patchIdsFromLengths(lengths: ArrayLike<number>, seqLen: number): Int32Array {
  checkLengths(lengths, 'lengths');
  checkSeqLen(seqLen);
  return patchIds(lengths, 0, seqLen);
}

/**
 * The patch whose global output each byte's decoder cross-attention reads: patch ids computed from
 * `lengths[1:]` (the reference's `decoder_patch_ids_from_lengths(lengths, 0, N)`; architecture §7.1, golden
 * README semantics 7). With next-token lengths this is `patchId(t+1) − 1`: byte t reads the patch
 * before the one holding the byte it predicts.
 *
 * @param lengths - patch lengths whose first entry is 1 (the lone BOS patch)
 * @param seqLen - how many positions to label (N)
 * @returns `seqLen` decoder patch ids
 * @throws {PatcherError} `INVALID_ARGUMENT` if `lengths` is empty or its first length is not 1 (the
 *   reference asserts one non-BOE token in the first patch), or for a bad length or `seqLen`
 */
export function decoderPatchIdsFromLengths(lengths: ArrayLike<number>, seqLen: number): Int32Array {
  checkLengths(lengths, 'lengths');
  checkSeqLen(seqLen);
  if (lengths.length === 0 || lengths[0] !== 1) {
    throw invalid(`the first patch must hold exactly one token, got lengths[0] = ${show(lengths[0])}`);
  }
  return patchIds(lengths, 1, seqLen);
}

/** The largest float32 strictly below the (finite, float32) value `x`. */
function float32Below(x: number): number {
  if (x === 0) return -1.401298464324817e-45; // minus the smallest subnormal
  const f = new Float32Array([x]);
  const bits = new Int32Array(f.buffer);
  // For positive values the bit pattern grows with the value, for negative ones it shrinks.
  bits[0] = x > 0 ? bits[0]! - 1 : bits[0]! + 1;
  return f[0]!;
}

/**
 * Indices of `key` in increasing key order: a stable LSD radix sort (two 16-bit passes) on the
 * float32 bits mapped to unsigned integers that sort like the values. O(M), where a comparator sort
 * of millions of indices would dominate the calibration time.
 */
function sortIndicesByKey(key: Float32Array): Int32Array {
  const m = key.length;
  const bits = new Uint32Array(key.buffer, key.byteOffset, m);
  const sortable = new Uint32Array(m);
  for (let i = 0; i < m; i++) {
    const b = bits[i]!;
    // Negative values: flip every bit (larger magnitude sorts first); others: set the sign bit.
    sortable[i] = b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
  }
  let order = new Int32Array(m);
  let spare = new Int32Array(m);
  for (let i = 0; i < m; i++) order[i] = i;
  const counts = new Int32Array(0x10001);
  for (const shift of [0, 16]) {
    counts.fill(0);
    for (let i = 0; i < m; i++) counts[((sortable[order[i]!]! >>> shift) & 0xffff) + 1]!++;
    for (let d = 1; d <= 0x10000; d++) counts[d]! += counts[d - 1]!;
    for (let i = 0; i < m; i++) {
      const idx = order[i]!;
      spare[counts[(sortable[idx]! >>> shift) & 0xffff]!++] = idx;
    }
    [order, spare] = [spare, order];
  }
  return order;
}

/**
 * Finds the threshold whose mean patch size over `rows` is closest to `targetMeanPatchSize`. The
 * mean patch size is a step function of θ that only changes at the candidate values (the distinct
 * float32 entropies in `'entropy'` mode, the distinct float32 entropy rises in `'monotonic'` mode,
 * over the positions that can open a patch), so the search is exact: candidates are visited in
 * increasing order (radix-sorted), removing one patch start at a time from a linked list, max-length
 * splits included: O(M) time and memory for M tokens in all.
 *
 * The returned threshold is the candidate value itself (patches start where the value is strictly
 * greater), or the float32 just below the smallest candidate for the "every candidate starts a
 * patch" step. Ties go to the larger threshold (fewer patches). Calling {@link findPatchBoundaries}
 * on every row with this threshold and the same options gives exactly `patches` and `bytes`.
 *
 * @param rows - the rows' tokens (only their count N is read) and N entropies each
 * @param targetMeanPatchSize - the wanted bytes per patch, > 0 (the paper targets e.g. 4.5)
 * @param options - the rule to calibrate (`'entropy'` by default), `includeNextToken` (default
 *   `true`) and `maxPatchLength`, as in {@link PatchOptions}
 * @returns the threshold, the mean patch size it gives, and the patch and byte counts
 * @throws {PatcherError} `EMPTY_INPUT` if there are no rows, a row is empty, or no position of any
 *   row can open a patch (nothing to calibrate); `INVALID_ENTROPIES` for a row whose entropies do
 *   not match its tokens or are not finite; `INVALID_ARGUMENT` for a bad target or option
 */
export function calibrateThreshold(
  rows: ReadonlyArray<CalibrationRow>,
  targetMeanPatchSize: number,
  options: CalibrationOptions = {},
): Calibration {
  if (typeof options !== 'object' || options === null) throw invalid('options must be an object');
  const mode = options.mode ?? 'entropy';
  if (mode !== 'entropy' && mode !== 'monotonic') {
    throw invalid(`calibrateThreshold mode must be 'entropy' or 'monotonic', got ${show(mode)}`);
  }
  const include = checkIncludeNextToken(options.includeNextToken);
  const m = checkMaxPatchLength(options.maxPatchLength);
  if (typeof targetMeanPatchSize !== 'number' || !Number.isFinite(targetMeanPatchSize) || targetMeanPatchSize <= 0) {
    throw invalid(`targetMeanPatchSize must be a finite number > 0, got ${show(targetMeanPatchSize)}`);
  }
  if (!Array.isArray(rows) || rows.length === 0) throw new PatcherError('EMPTY_INPUT', 'no rows to calibrate on');

  // First pass: validate and size the node arrays. Per row, nodes are the forced starts, the
  // candidate starts (one per position t whose value decides whether t+1 starts), and a sentinel
  // at the row's end; they are laid out in position order, so a row's list is contiguous.
  const firstCandidate = mode === 'entropy' ? 1 : 2;
  let nodes = 0;
  let candidates = 0;
  let bytes = 0;
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    if (typeof row !== 'object' || row === null) throw invalid(`rows[${r}] must be { tokens, entropies }`);
    const n = row.tokens?.length;
    if (typeof n !== 'number') throw invalid(`rows[${r}].tokens must be an array of token ids`);
    if (n === 0) throw new PatcherError('EMPTY_INPUT', `rows[${r}] has no token`);
    checkEntropies(row.entropies, n, `rows[${r}]`);
    const total = include ? n + 1 : n;
    const last = include ? n - 1 : n - 2;
    const forced = 1 + (total > 1 ? 1 : 0) + (mode === 'monotonic' && last >= 1 ? 1 : 0);
    const cand = Math.max(0, last - firstCandidate + 1);
    nodes += forced + cand + 1;
    candidates += cand;
    bytes += total;
  }
  if (candidates === 0) {
    throw new PatcherError('EMPTY_INPUT', 'no position of any row can open a patch: the rows are too short to calibrate on');
  }

  const pos = new Int32Array(nodes);
  const next = new Int32Array(nodes);
  const prev = new Int32Array(nodes);
  const key = new Float32Array(candidates);
  const candNode = new Int32Array(candidates);
  let node = 0;
  let c = 0;
  for (const row of rows) {
    const n = row.tokens.length;
    const h = row.entropies;
    const total = include ? n + 1 : n;
    const last = include ? n - 1 : n - 2;
    const push = (p: number): void => {
      pos[node] = p;
      prev[node] = node - 1; // the row's first node (position 0) is never removed, so never read
      next[node] = node + 1;
      node++;
    };
    push(0);
    if (total > 1) push(1);
    if (mode === 'monotonic' && last >= 1) push(2); // forced start at 2 (architecture §3.4)
    for (let t = firstCandidate; t <= last; t++) {
      // The same float32 values findPatchBoundaries compares (see scanCandidates).
      key[c] = mode === 'entropy' ? Math.fround(h[t]!) : Math.fround(Math.fround(h[t]!) - Math.fround(h[t - 1]!));
      candNode[c++] = node;
      push(t + 1);
    }
    push(total); // sentinel: the row's end, not a patch
  }

  const patchCount = (length: number): number => (m === undefined ? 1 : Math.ceil(length / m));
  // Start with θ below every candidate: every candidate starts a patch. Sentinels are skipped:
  // a sentinel's pos is the row total and its next is the following row's first node.
  let patches = 0;
  for (let i = 0; i + 1 < nodes; i++) {
    const len = pos[i + 1]! - pos[i]!;
    if (len > 0) patches += patchCount(len);
  }

  const order = sortIndicesByKey(key);

  let bestThreshold = float32Below(key[order[0]!]!);
  let bestPatches = patches;
  let bestDistance = Math.abs(bytes / patches - targetMeanPatchSize);
  for (let i = 0; i < candidates;) {
    const value = key[order[i]!]!;
    // θ = value: every candidate with key == value stops starting a patch (strict >).
    for (; i < candidates && key[order[i]!] === value; i++) {
      const v = candNode[order[i]!]!;
      const p = prev[v]!;
      const q = next[v]!;
      patches += patchCount(pos[q]! - pos[p]!) - patchCount(pos[v]! - pos[p]!) - patchCount(pos[q]! - pos[v]!);
      next[p] = q;
      prev[q] = p;
    }
    const distance = Math.abs(bytes / patches - targetMeanPatchSize);
    if (distance <= bestDistance) {
      bestDistance = distance;
      bestThreshold = value;
      bestPatches = patches;
    }
  }
  return { threshold: bestThreshold, meanPatchSize: bytes / bestPatches, patches: bestPatches, bytes };
}
