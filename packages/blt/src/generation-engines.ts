import * as tf from '@tensorflow/tfjs-core';
import {
  type EntropyModel,
  type PatchOptions,
  StreamingPatcher,
  entropyFromLogits,
  findPatchBoundaries,
} from '@bytelatent/entropy-patcher';
import { BltError } from '@bytelatent/nn';
import type { KvCache } from '@bytelatent/nn';
import type { ByteLatentTransformer } from './blt-model.js';
import type { BltStepper } from './blt-stepper.js';

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
  /** The BLT's forward pass, one step at a time. */
  private readonly stepper: BltStepper;
  private disposed = false;

  constructor(
    private readonly model: ByteLatentTransformer,
    private readonly patching: ResolvedPatching,
  ) {
    this.patcher = new StreamingPatcher(patching.rule);
    this.entropyCache = patching.entropyModel ? patching.entropyModel.createCache() : null;
    this.stepper = model.createStepper();
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
        const h = this.stepper.encode(this.tokens, a, b);
        // Every patch that ends by position b is complete (patch j ends where j + 1 starts); the
        // piece's bytes read only such patches (architecture §7.1).
        const complete = this.patchOf[b - 1]! + (this.startSet.has(b) ? 1 : 0);
        if (complete > this.completed) this.completePatches(this.completed, complete - this.completed);
        logits = this.decode(h, a, b);
        this.stepper.release(this.completed, this.starts);
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
      const h = this.stepper.encode(this.tokens, t, t + 1);
      if (nextStart) this.completePatches(this.patchOf[t]!, 1);
      const logits = this.decode(h, t, t + 1);
      this.stepper.release(this.completed, this.starts);
      return logits;
    });
    return this.finishStep(last, t0, entropies ? entropies[0]! : null);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.entropyCache?.dispose();
    this.stepper.dispose();
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

  /** Completes patches `first .. first + count − 1` (all their bytes are in; call inside a tidy). */
  private completePatches(first: number, count: number): void {
    this.stepper.completePatches(first, count, this.starts, this.patchOf, this.tokens);
    this.counters.latentCalls++;
    this.counters.latentPatches += count;
    this.completed = first + count;
  }

  /** Decoder logits of positions `a .. b − 1` from their encoder states `h` (call inside a tidy). */
  private decode(h: tf.Tensor3D, a: number, b: number): tf.Tensor {
    // Byte t reads patch patchId(t + 1) − 1 (architecture §7.1), a completed one.
    const decoderPatches = Int32Array.from({ length: b - a }, (_, i) => {
      const t = a + i + 1;
      return (t < this.patchOf.length ? this.patchOf[t]! : this.patchOf[t - 1]! + (this.startSet.has(t) ? 1 : 0)) - 1;
    });
    return this.stepper.decode(h, decoderPatches, this.tokens, a, b);
  }
}
