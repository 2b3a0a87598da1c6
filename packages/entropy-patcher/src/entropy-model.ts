import * as tf from '@tensorflow/tfjs-core';
import { BOE_ID, EOS_ID, VOCAB_SIZE } from '@bytelatent/bytes';
import {
  type InitStdFactor,
  KvCache,
  NnError,
  ParameterRegistry,
  type ParameterRegistryOptions,
  ParameterScope,
  type TensorSource,
  dtypeByteSize,
  CheckpointInitializer,
  referenceStateDict,
  serializeSafetensors,
  referenceAttentionProblem,
  seededUniform,
  softmaxEntropy,
  LMTransformer,
} from '@bytelatent/nn';
import { PatcherError } from './errors.js';

/** Metadata key under which our checkpoints store the entropy model's arguments (JSON). */
export const ARGS_METADATA_KEY = 'entropy_model_args';

/** Contexts per model call when a long input is cut into contexts. */
const CONTEXT_BATCH = 4;

/** Context groups queued at each helper: three kept two threads busier than one (docs/performance.md §5d). */
const HELPER_REQUESTS_IN_FLIGHT = 3;

/** One other thread computing context entropies with a copy of the same model. */
export interface ContextHelper {
  /** Resolves to true once the helper can take work, false if it never will. */
  readonly ready: Promise<boolean>;
  /** {@link EntropyModel.contextEntropies} there; may fail (the group is then computed here). */
  run(contexts: ArrayLike<number>[]): Promise<Float32Array[]>;
}

/**
 * Other threads to share a call's contexts with (the patcher's worker threads,
 * `./entropy-workers.ts`): `start(groups)` returns the helpers worth involving in a call of that
 * many context groups (none for a single group).
 */
export interface ContextHelpers {
  start(groups: number): ContextHelper[];
}

/**
 * Arguments of the entropy model with the reference's names (`LMTransformerArgs`), so a reference
 * `params.json` / golden `entropy_model_args` object can be passed as it is. Unknown keys are ignored.
 */
export interface EntropyModelArgs {
  readonly dim: number;
  readonly n_layers: number;
  readonly n_heads: number;
  readonly head_dim?: number | null;
  readonly n_kv_heads?: number | null;
  readonly ffn_dim_multiplier?: number | null;
  readonly multiple_of?: number;
  readonly norm_eps?: number;
  readonly rope_theta?: number;
  /** RoPE table length: the longest sequence the model accepts. */
  readonly max_seqlen: number;
  readonly vocab_size?: number;
  /** `local_block_causal` (window + documents, the released model), `block_causal` (documents) or `causal`. */
  readonly attn_bias_type?: string;
  /** The reference's attention kernel; `sdpa` only allows `causal` masks (as in the reference). */
  readonly attn_impl?: string | null;
  /** Window of `local_block_causal` attention (released: 512). */
  readonly sliding_window?: number | null;
  readonly eos_id?: number;
  readonly init_std_factor?: string;
}

/**
 * Reference arguments of a small byte-level entropy model of the released model's variant: 32-wide
 * heads, SwiGLU hidden size a multiple of 64, sliding-window (`local_block_causal`) attention over
 * the whole context, `current_depth` initialisation. What the trainer's presets, the study and the
 * web page's training tab build their entropy models from.
 *
 * @param dim - model width
 * @param layers - transformer layers
 * @param seqLen - the longest row (RoPE table and attention window)
 */
export function entropyModelArgsOfSize(dim: number, layers: number, seqLen: number): EntropyModelArgs {
  return {
    dim,
    n_layers: layers,
    n_heads: Math.max(1, dim / 32),
    max_seqlen: seqLen,
    vocab_size: 260,
    attn_bias_type: 'local_block_causal',
    sliding_window: seqLen,
    multiple_of: 64,
    norm_eps: 1e-5,
    rope_theta: 10000,
    init_std_factor: 'current_depth',
    eos_id: 2,
  };
}

interface ResolvedArgs {
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  ffnDimMultiplier: number | null;
  multipleOf: number;
  normEps: number;
  ropeTheta: number;
  maxSeqLen: number;
  vocabSize: number;
  window: number | undefined;
  splitDocuments: boolean;
  eosId: number;
  initStdFactor: InitStdFactor;
}

function resolve(args: EntropyModelArgs): ResolvedArgs {
  const bad = (field: string, why: string) => new PatcherError('CONFIG_MISMATCH', `entropy model args: ${field} ${why}`);
  for (const f of ['dim', 'n_layers', 'n_heads', 'max_seqlen'] as const) {
    const v = args[f];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw bad(f, `must be an integer >= 1, got ${String(v)}`);
  }
  const type = args.attn_bias_type ?? 'causal';
  const attnProblem = referenceAttentionProblem(args.attn_impl, type);
  if (attnProblem) throw bad('attn_impl', attnProblem);
  if (!['local_block_causal', 'block_causal', 'causal'].includes(type)) {
    throw bad('attn_bias_type', `must be local_block_causal, block_causal or causal, got ${type}`);
  }
  const window = type === 'local_block_causal' ? (args.sliding_window ?? undefined) : undefined;
  if (type === 'local_block_causal' && (typeof window !== 'number' || window < 1)) {
    throw bad('sliding_window', `must be set (>= 1) for local_block_causal attention, got ${String(args.sliding_window)}`);
  }
  const factor = (args.init_std_factor ?? 'disabled') as InitStdFactor;
  return {
    dim: args.dim,
    nLayers: args.n_layers,
    nHeads: args.n_heads,
    nKvHeads: args.n_kv_heads ?? args.n_heads,
    headDim: args.head_dim ?? args.dim / args.n_heads,
    ffnDimMultiplier: args.ffn_dim_multiplier ?? null,
    multipleOf: args.multiple_of ?? 256,
    normEps: args.norm_eps ?? 1e-5,
    ropeTheta: args.rope_theta ?? 10000,
    maxSeqLen: args.max_seqlen,
    vocabSize: args.vocab_size ?? VOCAB_SIZE,
    window,
    splitDocuments: type !== 'causal',
    eosId: args.eos_id ?? EOS_ID,
    initStdFactor: factor,
  };
}

/**
 * Receives intermediate outputs by reference module path (`tok_embeddings`, `layers.0`,
 * `layers.0.attention.wq`, `layers.0.feed_forward.w1`, ..., `norm`, `output`).
 */
export type ActivationTap = (modulePath: string, value: tf.Tensor) => void;

/**
 * The entropy model: the reference's byte-level `LMTransformer` (architecture §4) — token embedding, pre-norm
 * blocks with sliding-window, document-split causal attention, final norm, output head — built from
 * the shared `@bytelatent/nn` blocks. Weight names are the reference `state_dict` keys.
 */
export class EntropyModel {
  readonly args: Readonly<ResolvedArgs>;
  /** The arguments as given, with the reference's names (stored with the weights by {@link toSafetensors}). */
  readonly referenceArgs: Readonly<EntropyModelArgs>;
  readonly registry: ParameterRegistry;
  /** The reference's `LMTransformer` these arguments describe (nn's, shared with the token baselines). */
  private readonly lm: LMTransformer;

  /**
   * A randomly initialised model (reference init, architecture §11).
   *
   * @param args - reference arguments
   * @param seed - initialisation seed
   * @param options - `maxParameters`: refuse to build a model with more trainable scalars (checked
   *   weight by weight before allocating it; {@link fromSafetensors} derives it from the checkpoint's size);
   *   `initialValues`: values replacing the initialisation (a checkpoint's, see `CheckpointInitializer`)
   * @throws {PatcherError} `CONFIG_MISMATCH` for invalid arguments; `INVALID_CHECKPOINT` when the
   *   arguments describe more than `maxParameters` parameters
   */
  constructor(args: EntropyModelArgs, seed = 0, options: ParameterRegistryOptions = {}) {
    this.args = resolve(args);
    this.referenceArgs = { ...args };
    this.registry = new ParameterRegistry(options);
    const a = this.args;
    const random = seededUniform(seed);
    try {
      this.lm = new LMTransformer(new ParameterScope(this.registry), a, random);
    } catch (e) {
      this.registry.dispose();
      if (e instanceof NnError && e.code === 'TOO_LARGE') {
        throw new PatcherError('INVALID_CHECKPOINT', `the entropy model args describe a model far larger than its weights: ${e.message}`);
      }
      if (e instanceof NnError) throw new PatcherError('CONFIG_MISMATCH', `entropy model args: ${e.message}`);
      throw e;
    }
  }

  /**
   * Builds the model and loads reference weights (`tok_embeddings.weight`, `layers.N...`, `norm.weight`,
   * `output.weight`).
   *
   * @param file - the weights with reference names: a parsed safetensors file, or any
   *   `TensorSource` (a `.pth`, shards, a renamed view; read tensor by tensor)
   * @param args - the model's arguments
   * @throws {PatcherError} `INVALID_CHECKPOINT` listing every missing, unexpected, mis-shaped or
   *   non-finite weight, or when `args` describe far more parameters than the file holds (over twice
   *   as many plus 2^20: refused before allocating them); `CONFIG_MISMATCH` for invalid arguments
   */
  static fromSafetensors(file: TensorSource, args: EntropyModelArgs): EntropyModel {
    // Arguments claiming a huge model (an untrusted file's metadata) fail here, weight by weight,
    // instead of allocating it. The limit leaves room for a model somewhat larger than the file (one
    // layer too many, say), so that every missing or mis-shaped weight can be listed.
    // Each weight is created from the file (no random initialisation, no second copy of the model).
    const init = new CheckpointInitializer(file);
    const model = new EntropyModel(args, 0, { maxParameters: parameterLimit(file), initialValues: init.initialValues });
    try {
      init.finish(model.registry);
    } catch (e) {
      model.dispose();
      if (e instanceof NnError) throw new PatcherError('INVALID_CHECKPOINT', e.message);
      throw e;
    }
    return model;
  }

  /** Longest row the model accepts (its RoPE table). */
  get maxSeqLen(): number {
    return this.args.maxSeqLen;
  }

  /**
   * Next-byte logits for a batch of rows. Rows are right-padded to the longest one; each row has its
   * own causal mask, so rows never see each other (unlike the reference's `calculate_entropies`,
   * which concatenates the batch, architecture §3.2) and padding never reaches real positions.
   *
   * @param rows - token ids per row (each non-empty, within `[0, vocab)`, at most `maxSeqLen`)
   * @param tap - optional receiver of intermediate activations
   * @returns `[rows.length, longest, vocab]` logits; positions past a row's end are padding
   * @throws {PatcherError} `EMPTY_INPUT`, `INPUT_TOO_LONG`, `INVALID_ARGUMENT` (bad id)
   */
  logits(rows: readonly ArrayLike<number>[], tap?: ActivationTap): tf.Tensor3D {
    const { ids, seqLen } = this.packRows(rows);
    return this.lm.logits(ids, rows, seqLen, tap);
  }

  /**
   * A KV cache for {@link logitsCached}, with this model's window and document split.
   *
   * @returns an empty cache (the caller disposes it)
   */
  createCache(): KvCache {
    const a = this.args;
    return new KvCache({ nLayers: a.nLayers, window: a.window, eosId: a.splitDocuments ? a.eosId : undefined });
  }

  /**
   * Next-byte logits of new positions of one row whose earlier positions are in `cache` (architecture §9.2:
   * the entropy model is causal, so earlier positions never change). Equal to the last S positions
   * of {@link logits} over the whole row, at the cost of S positions. The cache advances by S.
   *
   * @param tokens - the S >= 1 new token ids
   * @param cache - from {@link createCache}, holding the row's earlier positions
   * @returns `[1, S, vocab]` logits
   * @throws {PatcherError} `INPUT_TOO_LONG` past `maxSeqLen` positions (start a new cache for a new
   *   context, as {@link entropies} does), `EMPTY_INPUT`, `INVALID_ARGUMENT` (bad id)
   */
  logitsCached(tokens: ArrayLike<number>, cache: KvCache): tf.Tensor3D {
    const { ids, seqLen } = this.packRows([tokens]);
    if (cache.position + seqLen > this.args.maxSeqLen) {
      throw new PatcherError(
        'INPUT_TOO_LONG',
        `positions ${cache.position}..${cache.position + seqLen - 1} exceed the entropy model's max_seqlen ${this.args.maxSeqLen}`,
      );
    }
    return this.lm.logitsCached(ids, cache);
  }

  /**
   * Next-byte entropy in nats at every position, `H_t = −Σ p log p` over the logits at t
   * (the uncertainty about byte t+1, architecture §3.2), computed per row.
   *
   * A row longer than `maxSeqLen` is cut into contexts of `maxSeqLen` ids, each run on its own —
   * exactly what the reference's `calculate_entropies` does for one sequence (its 8192-id chunks,
   * architecture §3.2 and §14.9) — so memory stays bounded by the context, whatever the input length.
   *
   * @param rows - token ids per row (any length)
   * @param helpers - other threads to share the contexts with (see {@link ContextHelpers})
   * @returns one Float32Array per row, of the row's length
   */
  async entropies(rows: readonly ArrayLike<number>[], helpers?: ContextHelpers): Promise<Float32Array[]> {
    const out = rows.map((r) => new Float32Array(r.length));
    const contexts = this.contextsOf(rows);
    // Contexts go through the model a few at a time, so a huge input never holds more than
    // CONTEXT_BATCH contexts of activations (per thread). Smaller groups, to share a short input
    // between threads, measured slower than one thread: the model's cost per call dominates.
    const groups: (typeof contexts)[] = [];
    for (let i = 0; i < contexts.length; i += CONTEXT_BATCH) groups.push(contexts.slice(i, i + CONTEXT_BATCH));
    const helping = helpers?.start(groups.length) ?? [];
    let next = 0;
    /** The next group, unless fewer than `reserve` are left (kept for less loaded threads). */
    const take = (reserve = 0) => (groups.length - next > reserve ? groups[next++] : undefined);
    const store = (group: typeof contexts, values: Float32Array[]) => group.forEach((c, b) => out[c.row]!.set(values[b]!, c.start));
    // Helpers (worker threads) pull groups as they fall idle; the rest runs here. A group is the
    // same whoever computes it, and every thread runs the same backend and kernels, so the
    // entropies do not depend on where a group ran.
    let localDone: () => void = () => undefined;
    const finished = new Promise<false>((resolve) => (localDone = () => resolve(false)));
    // Several requests in flight per helper: its next groups wait in its queue while this thread,
    // busy with a group of its own, has not yet read the previous answer. The extra requests stop
    // near the end, so that no thread is left waiting on another's queue.
    const threads = 1 + helping.length;
    const slots = helping.flatMap((helper) =>
      Array.from({ length: HELPER_REQUESTS_IN_FLIGHT }, (_, slot) => ({ helper, reserve: slot * threads })),
    );
    const remote = slots.map(async ({ helper, reserve }) => {
      // A helper still starting when this thread has taken every group is not waited for.
      if (!(await Promise.race([helper.ready, finished]))) return;
      for (let group = take(reserve); group !== undefined; group = take(reserve)) {
        const ids = group.map((c) => c.ids);
        store(group, await helper.run(ids).catch(() => this.contextEntropies(ids)));
      }
    });
    let failed = false;
    let failure: unknown;
    try {
      for (let group = take(); group !== undefined; group = take()) {
        store(group, await this.contextEntropies(group.map((c) => c.ids)));
        // Let the helpers' replies in, so that they take the next groups while this thread works.
        if (helping.length > 0) await yieldToEvents();
      }
    } catch (e) {
      [failed, failure] = [true, e];
      next = groups.length; // the helpers take nothing more
    } finally {
      localDone();
    }
    // Every helper request is settled before this call returns or throws: none is left running.
    const settled = await Promise.allSettled(remote);
    if (failed) throw failure;
    for (const result of settled) if (result.status === 'rejected') throw result.reason;
    return out;
  }

  /** Every row cut into contexts of at most `maxSeqLen` ids, each run on its own (see {@link entropies}). */
  private contextsOf(rows: readonly ArrayLike<number>[]): Array<{ row: number; start: number; ids: ArrayLike<number> }> {
    const contexts: Array<{ row: number; start: number; ids: ArrayLike<number> }> = [];
    rows.forEach((r, row) => {
      if (r.length === 0) throw new PatcherError('EMPTY_INPUT', `row ${row} is empty`);
      for (let start = 0; start < r.length; start += this.args.maxSeqLen) {
        const end = Math.min(start + this.args.maxSeqLen, r.length);
        contexts.push({ row, start, ids: Array.prototype.slice.call(r, start, end) as number[] });
      }
    });
    return contexts;
  }

  /**
   * The id the model predicts next (the argmax of its logits; the first on ties, as torch's max)
   * at every position, per row, rows cut into contexts as {@link entropies} does. A model trained to
   * predict the BPE delimiter drives the `'bpe-patcher'` rule (the reference's `apply_bpe_patcher`).
   *
   * @param rows - token ids per row (any length)
   * @returns one Int32Array per row, of the row's length
   */
  async predictions(rows: readonly ArrayLike<number>[]): Promise<Int32Array[]> {
    const out = rows.map((r) => new Int32Array(r.length));
    for (const c of this.contextsOf(rows)) {
      const ids = tf.tidy(() => tf.argMax(this.logits([c.ids]), -1));
      try {
        out[c.row]!.set((await ids.data()) as Int32Array, c.start);
      } finally {
        ids.dispose();
      }
    }
    return out;
  }

  /**
   * Entropies of a few contexts (each at most `maxSeqLen` ids) in one model call: one array per
   * context, of its length. {@link entropies} cuts any input into such contexts.
   *
   * @param contexts - token ids per context
   */
  async contextEntropies(contexts: readonly ArrayLike<number>[]): Promise<Float32Array[]> {
    const h = tf.tidy(() => entropyFromLogits(this.logits(contexts)));
    try {
      const flat = (await h.data()) as Float32Array;
      const seqLen = h.shape[1]!;
      return contexts.map((c, b) => flat.slice(b * seqLen, b * seqLen + c.length));
    } finally {
      h.dispose();
    }
  }

  /**
   * The weights as a safetensors file with the reference's names, the arguments stored in the
   * metadata (key `entropy_model_args`) so that {@link EntropyPatcher.fromSafetensors} needs nothing else.
   *
   * @param metadata - extra metadata entries (e.g. patcher defaults)
   */
  async toSafetensors(metadata: Readonly<Record<string, string>> = {}): Promise<Uint8Array> {
    const tensors = await referenceStateDict(this.registry);
    return serializeSafetensors(tensors, { ...metadata, [ARGS_METADATA_KEY]: JSON.stringify(this.referenceArgs) });
  }

  /** Frees the weights. */
  dispose(): void {
    this.registry.dispose();
  }

  private packRows(rows: readonly ArrayLike<number>[]): { ids: Int32Array; batch: number; seqLen: number } {
    if (rows.length === 0) throw new PatcherError('EMPTY_INPUT', 'no rows to run the entropy model on');
    const seqLen = Math.max(...rows.map((r) => r.length));
    rows.forEach((r, b) => {
      if (r.length === 0) throw new PatcherError('EMPTY_INPUT', `row ${b} is empty`);
      if (r.length > this.args.maxSeqLen) {
        throw new PatcherError(
          'INPUT_TOO_LONG',
          `row ${b} has ${r.length} ids, more than the entropy model's max_seqlen ${this.args.maxSeqLen}`,
        );
      }
    });
    const ids = new Int32Array(rows.length * seqLen).fill(BOE_ID);
    rows.forEach((r, b) => {
      for (let t = 0; t < r.length; t++) {
        const id = r[t]!;
        if (!Number.isInteger(id) || id < 0 || id >= this.args.vocabSize) {
          throw new PatcherError('INVALID_ARGUMENT', `rows[${b}][${t}] = ${id} is not a token id in [0, ${this.args.vocabSize})`);
        }
        ids[b * seqLen + t] = id;
      }
    });
    return { ids, batch: rows.length, seqLen };
  }
}

/** Resolves after pending events (worker messages) ran: `setImmediate` in Node, else a timer. */
function yieldToEvents(): Promise<void> {
  return new Promise<void>((resolve) => (typeof setImmediate === 'function' ? setImmediate(resolve) : setTimeout(resolve, 0)));
}

/**
 * The most parameters a model loaded from `file` may get: twice the scalars the file holds (read from
 * its header; no data is touched), plus 2^20.
 */
function parameterLimit(file: TensorSource): number {
  const scalars = file.names().reduce((sum, name) => sum + file.info(name).byteLength / dtypeByteSize(file.info(name).dtype), 0);
  return 2 * scalars + 2 ** 20;
}

/**
 * Shannon entropy in nats of the softmax over the last axis, `−Σ p·log p` (nn's `softmaxEntropy`:
 * one fused kernel on cpu, a vectorised softmax elsewhere).
 *
 * @param logits - `[..., vocab]`
 * @returns `[...]`
 */
export function entropyFromLogits(logits: tf.Tensor): tf.Tensor {
  return softmaxEntropy(logits);
}
