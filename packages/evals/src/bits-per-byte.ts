/**
 * Bits per byte of any {@link ScoringModel} on any text, streamed: the source is read chunk by
 * chunk, turned into ids (byte + 4, or a tokenizer's ids cut only where the encoding is final),
 * cut into rows of the model's context and scored a batch at a time, so memory stays bounded by
 * one batch whatever the file size.
 */
import { bitsPerByte } from '@bytelatent/blt';
import { EvalError, checkInteger } from './errors.js';
import { type ScoringModel, type ScoringRow, encodeFor, scoreRows } from './scoring-model.js';

/** Where the bytes come from: text, bytes, or chunks of bytes (a Node read stream works as is). */
export type ByteSource = string | Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

// One definition of bits per byte, the model's (architecture §8.4); re-exported from this package.
export { bitsPerByte };

/** Options of {@link evaluateBitsPerByte}. */
export interface BitsPerByteOptions {
  /** Positions per row, BOS included (default and maximum: the model's `maxContext`). */
  readonly contextLength?: number;
  /** Rows per model call (default 8). */
  readonly batchSize?: number;
  /**
   * Positions between the starts of consecutive rows (default: `contextLength`, rows that do not
   * overlap). Smaller: a sliding window — each row after the first scores only its last `stride`
   * targets, so every byte but the first `contextLength` is predicted with at least
   * `contextLength - stride` bytes before it (the strided evaluation of fixed-context models, at
   * `contextLength / stride` times the cost).
   */
  readonly stride?: number;
  /**
   * Cut the source into windows of this many bytes (the last one may be shorter) and score each
   * window on its own, as one row `BOS, encode(window)`: every model then predicts every byte from
   * the same bytes before it, whatever its tokenizer, which is how models with different units are
   * compared fairly. A window whose ids do not fit the model's context is refused. Excludes
   * `contextLength` and `stride`.
   */
  readonly windowBytes?: number;
  /** Score only the first this many bytes of the source. */
  readonly maxBytes?: number;
  /** Called after each batch with the bytes read so far. */
  readonly onProgress?: (bytesRead: number) => void;
}

/** What {@link evaluateBitsPerByte} measures. */
export interface BitsPerByteResult {
  readonly model: string;
  readonly bitsPerByte: number;
  /** Summed negative log-likelihood of every target, in nats (float64 sum). */
  readonly nats: number;
  /** Bytes of the source that were scored. */
  readonly bytes: number;
  /** Targets scored: bytes for a byte model, tokens for a token model. */
  readonly targets: number;
  /** `bytes / targets` (1 for byte models). */
  readonly bytesPerTarget: number;
  readonly rows: number;
}

async function* chunksOf(source: ByteSource): AsyncGenerator<Uint8Array> {
  if (typeof source === 'string') yield new TextEncoder().encode(source);
  else if (source instanceof Uint8Array) yield source;
  else if (source !== null && typeof source === 'object' && (Symbol.asyncIterator in source || Symbol.iterator in source)) {
    for await (const chunk of source as AsyncIterable<Uint8Array>) {
      if (!(chunk instanceof Uint8Array)) throw new EvalError('INVALID_ARGUMENT', `source chunks must be Uint8Array, got ${typeof chunk}`);
      yield chunk;
    }
  } else throw new EvalError('INVALID_ARGUMENT', 'source must be a string, a Uint8Array or an (async) iterable of Uint8Array');
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** A growable int32 queue. */
class IdQueue {
  private buf = new Int32Array(1024);
  private start = 0;
  private end = 0;

  get length(): number {
    return this.end - this.start;
  }

  push(ids: ArrayLike<number>): void {
    if (this.end + ids.length > this.buf.length) {
      const live = this.buf.subarray(this.start, this.end);
      const next = new Int32Array(Math.max(this.buf.length, 2 * (live.length + ids.length)));
      next.set(live);
      this.buf = next;
      this.end -= this.start;
      this.start = 0;
    }
    this.buf.set(ids as ArrayLike<number>, this.end);
    this.end += ids.length;
  }

  slice(from: number, to: number): Int32Array {
    return this.buf.slice(this.start + from, this.start + to);
  }

  drop(n: number): void {
    this.start += n;
  }
}

/**
 * Bits per byte of a model on a text, streamed. The text is read as `BOS, ids...` (no EOS: bits per
 * *byte*) and cut into rows of `contextLength` positions; row k + 1 starts with row k's last target,
 * so every id after BOS is predicted exactly once (the convention of `apps/train`'s held-out
 * evaluation). With a `stride` below the context, rows overlap and each id is still counted once.
 * With `windowBytes`, each window of that many bytes is a row of its own instead. For a token model,
 * all tokens' nats are summed and divided by the source's bytes.
 *
 * @param model - any byte or token model
 * @param source - the text: a string, bytes, or chunks (e.g. `fs.createReadStream(path)`)
 * @param options - context, batch size, byte limit, progress
 * @returns bits per byte with the sums behind it
 * @throws {EvalError} `EMPTY_INPUT` when the source has no byte; `INVALID_ARGUMENT` for bad options;
 *   `INVALID_MODEL_OUTPUT` when the model's log-probabilities are malformed
 */
export async function evaluateBitsPerByte(
  model: ScoringModel,
  source: ByteSource,
  options: BitsPerByteOptions = {},
): Promise<BitsPerByteResult> {
  if (options.windowBytes !== undefined) return evaluateWindows(model, source, options);
  const context = options.contextLength ?? model.maxContext;
  checkInteger('contextLength', context, 2);
  if (context > model.maxContext)
    throw new EvalError('INVALID_ARGUMENT', `contextLength ${context} exceeds ${model.name}'s context of ${model.maxContext}`);
  const batchSize = checkInteger('batchSize', options.batchSize ?? 8, 1);
  const stride = checkInteger('stride', options.stride ?? context, 1);
  if (stride > context) throw new EvalError('INVALID_ARGUMENT', `stride ${stride} exceeds the context of ${context}`);
  const maxBytes = options.maxBytes === undefined ? Number.POSITIVE_INFINITY : checkInteger('maxBytes', options.maxBytes, 1);

  const ids = new IdQueue();
  ids.push([model.bosId]);
  let pendingBytes: Uint8Array = new Uint8Array(0); // token models: bytes not yet encoded
  let bytes = 0;
  const nats = new NatsSum();
  let targets = 0;
  let rowCount = 0;
  let queue: ScoringRow[] = [];
  // Per queued row: how many leading targets an earlier row already scored (a sliding window's overlap).
  let skips: number[] = [];
  // Targets at the front of `ids` that the last row already scored.
  let scored = 0;

  const flush = async () => {
    if (queue.length === 0) return;
    const values = await scoreRows(model, queue, batchSize);
    for (const [r, v] of values.entries()) {
      nats.add(v.subarray(skips[r]!));
      targets += v.length - skips[r]!;
    }
    rowCount += queue.length;
    queue = [];
    skips = [];
    options.onProgress?.(bytes);
  };
  const cutRows = async (final: boolean) => {
    // A row needs context + 1 ids (its targets run one further); the last row may be shorter. The
    // next row starts `stride` ids later (the whole row without overlap), skipping what was scored.
    while (ids.length >= context + 1 || (final && ids.length - 1 > scored)) {
      const n = Math.min(context, ids.length - 1);
      queue.push({ tokens: ids.slice(0, n), targets: ids.slice(1, n + 1) });
      skips.push(scored);
      const step = n < context ? n : stride;
      ids.drop(step);
      scored = n - step;
      if (queue.length >= batchSize) await flush();
    }
  };

  for await (let chunk of chunksOf(source)) {
    if (bytes >= maxBytes) break;
    if (bytes + chunk.length > maxBytes) chunk = chunk.subarray(0, maxBytes - bytes);
    bytes += chunk.length;
    if (model.kind === 'byte') ids.push(encodeFor(model, chunk));
    else {
      pendingBytes = concat(pendingBytes, chunk);
      const cut = model.tokenizer.stableLength(pendingBytes);
      if (cut > 0) {
        ids.push(model.tokenizer.encode(pendingBytes.subarray(0, cut)));
        pendingBytes = pendingBytes.slice(cut);
      }
    }
    await cutRows(false);
  }
  if (pendingBytes.length > 0 && model.kind === 'token') ids.push(model.tokenizer.encode(pendingBytes));
  if (bytes === 0) throw new EvalError('EMPTY_INPUT', 'the source has no byte to score');
  await cutRows(true);
  await flush();
  return resultOf(model, nats, bytes, targets, rowCount);
}

/** The figures of a finished evaluation. */
function resultOf(model: ScoringModel, nats: NatsSum, bytes: number, targets: number, rows: number): BitsPerByteResult {
  return {
    model: model.name,
    bitsPerByte: bitsPerByte(Math.max(0, nats.value), bytes),
    nats: nats.value,
    bytes,
    targets,
    bytesPerTarget: bytes / targets,
    rows,
  };
}

/** Adds float32 terms to a float64 sum without drift (Kahan). */
class NatsSum {
  value = 0;
  private compensation = 0;

  add(terms: ArrayLike<number>): void {
    for (let t = 0; t < terms.length; t++) {
      const y = -terms[t]! - this.compensation;
      const s = this.value + y;
      this.compensation = s - this.value - y;
      this.value = s;
    }
  }
}

/** {@link evaluateBitsPerByte} with `windowBytes`: one row `BOS, encode(window)` per window. */
async function evaluateWindows(model: ScoringModel, source: ByteSource, options: BitsPerByteOptions): Promise<BitsPerByteResult> {
  const window = checkInteger('windowBytes', options.windowBytes, 1);
  if (options.contextLength !== undefined || options.stride !== undefined)
    throw new EvalError('INVALID_ARGUMENT', 'windowBytes excludes contextLength and stride: each window is one row');
  const batchSize = checkInteger('batchSize', options.batchSize ?? 8, 1);
  const maxBytes = options.maxBytes === undefined ? Number.POSITIVE_INFINITY : checkInteger('maxBytes', options.maxBytes, 1);
  const nats = new NatsSum();
  let bytes = 0;
  let targets = 0;
  let rows = 0;
  let queue: ScoringRow[] = [];
  let pending: Uint8Array = new Uint8Array(0);
  const flush = async () => {
    if (queue.length === 0) return;
    for (const v of await scoreRows(model, queue, batchSize)) {
      nats.add(v);
      targets += v.length;
    }
    rows += queue.length;
    queue = [];
    options.onProgress?.(bytes);
  };
  const addWindow = async (w: Uint8Array) => {
    const encoded = model.kind === 'byte' ? encodeFor(model, w) : model.tokenizer.encode(w);
    const ids = new Int32Array(encoded.length + 1);
    ids[0] = model.bosId;
    ids.set(encoded, 1);
    const n = ids.length - 1;
    if (n > model.maxContext)
      throw new EvalError(
        'INVALID_ARGUMENT',
        `a window of ${w.length} bytes is ${n} positions for ${model.name}, over its context of ${model.maxContext}: use smaller windows`,
      );
    queue.push({ tokens: ids.subarray(0, n), targets: ids.subarray(1) });
    if (queue.length >= batchSize) await flush();
  };
  for await (let chunk of chunksOf(source)) {
    if (bytes >= maxBytes) break;
    if (bytes + chunk.length > maxBytes) chunk = chunk.subarray(0, maxBytes - bytes);
    bytes += chunk.length;
    pending = concat(pending, chunk);
    let at = 0;
    for (; pending.length - at >= window; at += window) await addWindow(pending.subarray(at, at + window));
    pending = pending.slice(at);
  }
  if (bytes === 0) throw new EvalError('EMPTY_INPUT', 'the source has no byte to score');
  if (pending.length > 0) await addWindow(pending);
  await flush();
  return resultOf(model, nats, bytes, targets, rows);
}
