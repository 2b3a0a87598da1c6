import * as tf from '@tensorflow/tfjs-core';
import { BOE_ID } from '@bytelatent/bytes';
import {
  type EntropyModel,
  type PatchOptions,
  StreamingPatcher,
  entropyFromLogits,
  findPatchBoundaries,
} from '@bytelatent/entropy-patcher';
import { BltError } from '@bytelatent/nn';
import type { KvCache, LayerKv } from '@bytelatent/nn';
import type { ByteLatentTransformer } from './blt-model.js';

/** What an engine knows after the row's last position went through the model. */
export interface EngineStep {
  /** Next-byte logits at the row's last position. */
  readonly logits: Float32Array;
  /** Whether the next position (the byte about to be chosen) starts a patch. */
  readonly nextStart: boolean;
  /** The patch the next position belongs to. */
  readonly nextPatch: number;
  /** The entropy (nats) at the last position, which decided `nextStart` (entropy modes), else null. */
  readonly entropy: number | null;
}

/** Work counters of an engine. */
export interface EngineCounters {
  /** Calls of the latent transformer, and the patch positions it computed over all of them. */
  latentCalls: number;
  latentPatches: number;
  /** Calls of the entropy model. */
  entropyCalls: number;
  /** Milliseconds in the entropy model, and in the BLT (encoder, latent, decoder). */
  entropyMs: number;
  bltMs: number;
}

/** The patching of a generation: the rule (always with the next-byte slot) and the entropy model it reads, if any. */
export interface ResolvedPatching {
  readonly rule: PatchOptions;
  readonly entropyModel: EntropyModel | null;
}

/**
 * Runs the model over a growing row: the prompt, then one chosen byte at a time, each time giving
 * the next-byte logits and the patching of the next position. Both engines give the same results.
 */
export interface GenerationEngine {
  /**
   * @param ids - the prompt's ids (BOS first)
   * @throws {BltError} `INVALID_ARGUMENT` when the prompt does not fit the model's context
   */
  prefill(ids: Int32Array): Promise<EngineStep>;
  /** Appends one id; null when the row no longer fits the model's context (nothing more can be generated). */
  step(id: number): Promise<EngineStep | null>;
  readonly counters: EngineCounters;
  /** Frees every tensor the engine holds (idempotent). */
  dispose(): void;
}

/** Positions (bytes or patches) per cached call while a prompt is read: bounds masks to 256 × (window + 256). */
const PREFILL_PIECE = 256;

function newCounters(): EngineCounters {
  return { latentCalls: 0, latentPatches: 0, entropyCalls: 0, entropyMs: 0, bltMs: 0 };
}

function tooLong(what: string): BltError {
  return new BltError('INVALID_ARGUMENT', `prompt does not fit the model: ${what}`);
}

/**
 * The reference loop (architecture §9.1): for every new byte, the entropy model over the whole prefix, the
 * patching of the whole prefix with the next-byte slot, and the whole BLT forward; only the last
 * position's logits are used. Quadratic; the correctness oracle of {@link CachedEngine}.
 */
export class UncachedEngine implements GenerationEngine {
  readonly counters = newCounters();
  private readonly tokens: number[] = [];

  constructor(
    private readonly model: ByteLatentTransformer,
    private readonly patching: ResolvedPatching,
  ) {}

  async prefill(ids: Int32Array): Promise<EngineStep> {
    this.tokens.push(...ids);
    const out = await this.run();
    if (out === 'context')
      throw tooLong(
        `${ids.length} tokens, or their patches, exceed max_encoder_seq_length ${this.model.args.encoder.maxSeqLen} / max_seqlen ${this.model.args.global.maxSeqLen}`,
      );
    return out;
  }

  async step(id: number): Promise<EngineStep | null> {
    this.tokens.push(id);
    const out = await this.run();
    return out === 'context' ? null : out;
  }

  dispose(): void {}

  private async run(): Promise<EngineStep | 'context'> {
    const n = this.tokens.length;
    if (n > this.model.args.encoder.maxSeqLen) return 'context';
    let entropies: Float32Array | undefined;
    if (this.patching.entropyModel) {
      const t0 = performance.now();
      entropies = (await this.patching.entropyModel.entropies([this.tokens]))[0]!;
      this.counters.entropyCalls++;
      this.counters.entropyMs += performance.now() - t0;
    }
    const b = findPatchBoundaries(this.tokens, entropies, this.patching.rule);
    const numPatches = b.patchLengths.length;
    if (numPatches > this.model.args.global.maxSeqLen) return 'context';
    const t0 = performance.now();
    const last = tf.tidy(() => {
      const logits = this.model.forward([this.tokens], [b.patchLengths]);
      return tf.slice(logits, [0, n - 1, 0], [1, 1, -1]);
    });
    const logits = (await last.data()) as Float32Array;
    last.dispose();
    this.counters.bltMs += performance.now() - t0;
    this.counters.latentCalls++;
    this.counters.latentPatches += numPatches;
    return {
      logits,
      nextStart: b.patchStarts[numPatches - 1] === n,
      nextPatch: numPatches - 1,
      entropy: entropies ? entropies[n - 1]! : null,
    };
  }
}

/** Encoder byte states (one tensor per cross-attention) of runs of positions, kept until no patch to complete reads them. */
class ByteStates {
  private chunks: Array<{ from: number; to: number; states: readonly tf.Tensor[] }> = [];

  /** Takes (keeps) the states of positions `from ..` (call inside the step's tidy). */
  add(from: number, states: readonly tf.Tensor[]): void {
    for (const s of states) tf.keep(s);
    this.chunks.push({ from, to: from + states[0]!.shape[1]!, states });
  }

  /** Per cross-attention, the states of positions `from .. to − 1` `[1, to − from, dim]` (inside a tidy). */
  gather(from: number, to: number): tf.Tensor[] {
    const parts = this.chunks
      .filter((c) => c.to > from && c.from < to)
      .map((c) => {
        const a = Math.max(from, c.from);
        const b = Math.min(to, c.to);
        return c.states.map((s) => (a === c.from && b === c.to ? s : tf.slice(s, [0, a - c.from, 0], [-1, b - a, -1])));
      });
    const covered = parts.reduce((n, p) => n + p[0]!.shape[1]!, 0);
    if (covered !== to - from) throw new BltError('INVALID_ARGUMENT', `internal: byte states ${from}..${to} are not held`);
    return parts[0]!.map((_, layer) =>
      parts.length === 1
        ? parts[0]![layer]!
        : tf.concat(
            parts.map((p) => p[layer]!),
            1,
          ),
    );
  }

  /** Frees the chunks that end at or before `position`. */
  dropBefore(position: number): void {
    while (this.chunks.length > 0 && this.chunks[0]!.to <= position) {
      const c = this.chunks.shift()!;
      // The last encoder layer's states may be shared by two entries of one chunk: dispose once.
      tf.dispose([...new Set(c.states)]);
    }
  }

  dispose(): void {
    this.dropBefore(Number.POSITIVE_INFINITY);
  }
}

/** The decoder cross-attention keys/values of completed patches, kept while a later byte may read them. */
class PatchKv {
  private chunks: Array<{ first: number; count: number; kv: readonly LayerKv[] }> = [];

  constructor(private readonly rowsPerPatch: number) {}

  /** Takes (keeps) the keys/values of patches `first ..` (call inside the step's tidy). */
  add(first: number, count: number, kv: readonly LayerKv[]): void {
    for (const l of kv) (tf.keep(l.k), tf.keep(l.v));
    this.chunks.push({ first, count, kv });
  }

  /** Per cross-attention, the key rows of patches `first .. first + count − 1` (inside a tidy). */
  gather(first: number, count: number): LayerKv[] {
    const r = this.rowsPerPatch;
    const parts = this.chunks
      .filter((c) => c.first + c.count > first && c.first < first + count)
      .map((c) => {
        const a = Math.max(first, c.first);
        const b = Math.min(first + count, c.first + c.count);
        const whole = a === c.first && b === c.first + c.count;
        const cut = (t: tf.Tensor) => (whole ? t : tf.slice(t, [0, 0, (a - c.first) * r, 0], [-1, -1, (b - a) * r, -1]));
        return { patches: b - a, kv: c.kv.map((l) => ({ k: cut(l.k), v: cut(l.v) })) };
      });
    if (parts.reduce((n, p) => n + p.patches, 0) !== count)
      throw new BltError('INVALID_ARGUMENT', `internal: patches ${first}..+${count} are not held`);
    if (parts.length === 1) return parts[0]!.kv;
    return parts[0]!.kv.map((_, layer) => ({
      k: tf.concat(
        parts.map((p) => p.kv[layer]!.k),
        2,
      ),
      v: tf.concat(
        parts.map((p) => p.kv[layer]!.v),
        2,
      ),
    }));
  }

  /** Frees the chunks whose patches all come before `patch`. */
  dropBefore(patch: number): void {
    while (this.chunks.length > 0 && this.chunks[0]!.first + this.chunks[0]!.count <= patch) {
      const c = this.chunks.shift()!;
      tf.dispose(c.kv.flatMap((l) => [l.k, l.v]));
    }
  }

  dispose(): void {
    this.dropBefore(Number.POSITIVE_INFINITY);
  }
}

/**
 * Incremental generation with KV caches (architecture §9.2, §14.11). Per new byte at position t:
 *
 * - entropy model: one cached position (its context restarts every `max_seqlen` ids, as
 *   `EntropyModel.entropies` cuts long rows), giving H[t] and so whether t+1 starts a patch;
 * - local encoder: hash embeddings of t (its last n ids only) and one cached position through the
 *   layers; the states the patch cross-attention reads are kept for the open patch;
 * - if t+1 starts a patch, the patch holding t is complete: its pooled, cross-attended states are
 *   computed once (encoder), the latent transformer runs once on it with its patch-level cache, and
 *   the decoder's cross-attention keys/values of its output are computed once;
 * - local decoder: one cached position, cross-attending to the rows of patch `patchId(t+1) − 1`
 *   (always a completed patch, architecture §7.1).
 *
 * Nothing else is recomputed: the open patch's states change with every byte but no output reads
 * them before the patch completes, and every attention is causal, so earlier outputs never change.
 * The prompt goes through the same path in pieces of {@link PREFILL_PIECE} positions.
 */
export class CachedEngine implements GenerationEngine {
  readonly counters = newCounters();
  private readonly tokens: number[] = [];
  /** Patch of every position so far. */
  private readonly patchOf: number[] = [];
  /** Start of every patch decided so far, increasing; may run one position ahead of the row. */
  private readonly starts: number[] = [0];
  private readonly startSet = new Set<number>([0]);
  /** Patches whose latent output exists: 0 .. completed − 1. */
  private completed = 0;
  private readonly patcher: StreamingPatcher;
  private readonly entropyCache: KvCache | null;
  private readonly encoderCache: KvCache;
  private readonly decoderCache: KvCache;
  private readonly globalCache: KvCache;
  private readonly byteStates = new ByteStates();
  private readonly patchKv: PatchKv;
  private disposed = false;

  constructor(
    private readonly model: ByteLatentTransformer,
    private readonly patching: ResolvedPatching,
  ) {
    this.patcher = new StreamingPatcher(patching.rule);
    const local = { window: model.args.localWindow, eosId: model.args.eosId };
    this.entropyCache = patching.entropyModel ? patching.entropyModel.createCache() : null;
    this.encoderCache = model.localEncoder.createCache(local);
    this.decoderCache = model.localDecoder.createCache(local);
    this.globalCache = model.globalTransformer.createCache();
    this.patchKv = new PatchKv(model.localDecoder.rowsPerPatch);
  }

  async prefill(ids: Int32Array): Promise<EngineStep> {
    const n = ids.length;
    const { encoder, global } = this.model.args;
    if (n > encoder.maxSeqLen) throw tooLong(`${n} tokens exceed max_encoder_seq_length ${encoder.maxSeqLen}`);
    this.tokens.push(...ids);
    const entropies = await this.entropies(0, n);
    this.advancePatching(ids, entropies);
    if (this.patchOf[n - 1]! + 1 + (this.startSet.has(n) ? 1 : 0) > global.maxSeqLen) {
      throw tooLong(`its patches exceed max_seqlen ${global.maxSeqLen}`);
    }
    const t0 = performance.now();
    const last = tf.tidy(() => {
      let logits: tf.Tensor | null = null;
      for (let a = 0; a < n; a += PREFILL_PIECE) {
        const b = Math.min(n, a + PREFILL_PIECE);
        const out = this.model.localEncoder.forwardCached(
          this.model.localEncoder.embedRange(this.tokens, a, b),
          ids.subarray(a, b),
          this.encoderCache,
        );
        this.byteStates.add(a, out.states);
        // Every patch that ends by position b is complete (patch j ends where j + 1 starts); the
        // piece's bytes read only such patches (architecture §7.1).
        const complete = this.patchOf[b - 1]! + (this.startSet.has(b) ? 1 : 0);
        if (complete > this.completed) this.completePatches(this.completed, complete - this.completed);
        logits = this.decode(out.h, a, b);
        this.release();
      }
      return tf.slice(logits!, [0, logits!.shape[1]! - 1, 0], [1, 1, -1]);
    });
    return this.finishStep(last, t0, entropies ? entropies[n - 1]! : null);
  }

  async step(id: number): Promise<EngineStep | null> {
    const t = this.tokens.length;
    const { encoder, global } = this.model.args;
    if (t + 1 > encoder.maxSeqLen) return null;
    this.tokens.push(id);
    const entropies = await this.entropies(t, t + 1);
    this.advancePatching([id], entropies);
    const nextStart = this.startSet.has(t + 1);
    if (this.patchOf[t]! + 1 + (nextStart ? 1 : 0) > global.maxSeqLen) return null;
    const t0 = performance.now();
    const last = tf.tidy(() => {
      const out = this.model.localEncoder.forwardCached(this.model.localEncoder.embedRange(this.tokens, t, t + 1), [id], this.encoderCache);
      this.byteStates.add(t, out.states);
      if (nextStart) this.completePatches(this.patchOf[t]!, 1);
      const logits = this.decode(out.h, t, t + 1);
      this.release();
      return logits;
    });
    return this.finishStep(last, t0, entropies ? entropies[0]! : null);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.entropyCache?.dispose();
    this.encoderCache.dispose();
    this.decoderCache.dispose();
    this.globalCache.dispose();
    this.byteStates.dispose();
    this.patchKv.dispose();
  }

  private async finishStep(last: tf.Tensor, t0: number, entropy: number | null): Promise<EngineStep> {
    const logits = (await last.data()) as Float32Array;
    last.dispose();
    this.counters.bltMs += performance.now() - t0;
    const n = this.tokens.length;
    const nextStart = this.startSet.has(n);
    return { logits, nextStart, nextPatch: this.patchOf[n - 1]! + (nextStart ? 1 : 0), entropy };
  }

  /**
   * Entropies of positions `from .. to − 1` through the cached entropy model (null without one), in
   * contexts of `max_seqlen` ids like `EntropyModel.entropies` (architecture §3.2: the context restarts at
   * each multiple of max_seqlen), and pieces of at most PREFILL_PIECE positions.
   */
  private async entropies(from: number, to: number): Promise<Float32Array | null> {
    const model = this.patching.entropyModel;
    const cache = this.entropyCache;
    if (!model || !cache) return null;
    const t0 = performance.now();
    const out = new Float32Array(to - from);
    const context = model.maxSeqLen;
    for (let a = from; a < to;) {
      if (a % context === 0 && a > 0) cache.reset();
      const b = Math.min(to, a + PREFILL_PIECE, (Math.floor(a / context) + 1) * context);
      const h = tf.tidy(() => entropyFromLogits(model.logitsCached(this.tokens.slice(a, b), cache)));
      out.set((await h.data()) as Float32Array, a - from);
      h.dispose();
      this.counters.entropyCalls++;
      a = b;
    }
    this.counters.entropyMs += performance.now() - t0;
    return out;
  }

  /** Feeds the new ids to the patching rule; records the starts it decides and the patch of each new position. */
  private advancePatching(ids: ArrayLike<number>, entropies: Float32Array | null): void {
    const out = this.patcher.push(ids, entropies ?? undefined);
    for (let i = 0; i < out.starts.length; i++) {
      for (const s of [out.starts[i]!, out.starts[i]! + out.lengths[i]!]) {
        if (s > this.starts[this.starts.length - 1]!) {
          this.starts.push(s);
          this.startSet.add(s);
        }
      }
    }
    for (let t = this.patchOf.length; t < this.tokens.length; t++) {
      this.patchOf.push(t === 0 ? 0 : this.patchOf[t - 1]! + (this.startSet.has(t) ? 1 : 0));
    }
  }

  /**
   * Completes patches `first .. first + count − 1` (all their bytes are in; call inside a tidy): their
   * encoder patch states from the kept byte states (architecture §5.2 step 4), one call of the latent
   * transformer with its patch cache (architecture §6), and the decoder's cross-attention keys/values of
   * its outputs (architecture §7.2 steps 2–3).
   */
  private completePatches(first: number, count: number): void {
    const enc = this.model.localEncoder;
    const encWindow = enc.config.crossAttnWindow ?? 1;
    const from = this.starts[Math.max(0, first - encWindow + 1)]!;
    const to = this.starts[first + count]!;
    const states = this.byteStates.gather(from, to);
    const ids = Int32Array.from(this.patchOf.slice(from, to));
    const patchEmbeds = enc.encodePatches(states, [ids], first, count);
    // `h_cross.view(B, P, k·d_E)` (architecture §6), and the global token of each patch: EOS if it holds one.
    const globalIn = tf.reshape(patchEmbeds, [1, count, -1]) as tf.Tensor3D;
    const globalTokens = new Int32Array(count).fill(BOE_ID);
    for (let t = this.starts[first]!; t < to; t++)
      if (this.tokens[t] === this.model.args.eosId) globalTokens[this.patchOf[t]! - first] = this.model.args.eosId;
    const globalOut = this.model.globalTransformer.forwardCached(globalIn, globalTokens, this.globalCache);
    this.counters.latentCalls++;
    this.counters.latentPatches += count;
    this.patchKv.add(first, count, this.model.localDecoder.patchKv(globalOut));
    this.completed = first + count;
  }

  /**
   * Frees what no later step reads: later patches read the bytes of their last `crossAttnWindow`
   * (encoder) patches, later bytes the rows of patch `completed − 1` and the `crossAttnWindow − 1`
   * (decoder) patches before it.
   */
  private release(): void {
    const encWindow = this.model.localEncoder.config.crossAttnWindow ?? 1;
    this.byteStates.dropBefore(this.starts[Math.max(0, this.completed - encWindow + 1)]!);
    this.patchKv.dropBefore(this.completed - (this.model.localDecoder.config.crossAttnWindow ?? 1));
  }

  /** Decoder logits of positions `a .. b − 1` from their encoder states `h` (call inside a tidy). */
  private decode(h: tf.Tensor3D, a: number, b: number): tf.Tensor {
    const dec = this.model.localDecoder;
    // Byte t reads patch patchId(t + 1) − 1 (architecture §7.1), a completed one.
    const decIds = Int32Array.from({ length: b - a }, (_, i) => {
      const t = a + i + 1;
      return (t < this.patchOf.length ? this.patchOf[t]! : this.patchOf[t - 1]! + (this.startSet.has(t) ? 1 : 0)) - 1;
    });
    const first = dec.visiblePatches(decIds[0]!).first;
    const last = decIds[decIds.length - 1]!;
    const kv = this.patchKv.gather(first, last - first + 1);
    // One byte given exactly the rows it may read needs no mask.
    const mask = b - a === 1 ? null : dec.crossMask([decIds], first, last - first + 1);
    try {
      return dec.forwardCached(h, kv, mask, this.tokens.slice(a, b), this.decoderCache);
    } finally {
      if (mask) tf.dispose([mask.bias, mask.rowValid ?? []]);
    }
  }
}
