import * as tf from '@tensorflow/tfjs-core';
import { NnError, checkInt } from '../errors.js';
import { type MaskTensors, maskTensors } from './masks.js';
import type { RotaryEmbedding } from './rotary.js';

/**
 * Keys and values of one attention layer, heads split: `[B, heads, T, headDim]` each (self-attention:
 * `nKvHeads`, RoPE already applied to the keys).
 */
export type LayerKv = { readonly k: tf.Tensor; readonly v: tf.Tensor };

/** What every layer of a stack needs for one cached step; made by {@link KvCache.plan}. */
export interface CachedStep {
  /**
   * Mask of the step's S queries against the T cached and S new keys (`[1, 1, S, T + S]`), or null
   * when every query may see every key — always so for a single new position, since the cache holds
   * exactly the keys the next position can see.
   */
  readonly mask: MaskTensors | null;
  /** RoPE tables `[S, headDim / 2]` for the step's positions (the cache's offset on), or null. */
  readonly rope: { cos: tf.Tensor; sin: tf.Tensor } | null;
  /** How many of the last keys each layer keeps for later steps. */
  readonly keep: number;
}

/** Options of a {@link KvCache}. */
export interface KvCacheOptions {
  /** Number of attention layers of the stack. */
  readonly nLayers: number;
  /**
   * Sliding window: query i sees key j only if `i − window < j ≤ i` (xformers local attention,
   * architecture §4.1 and §5.2). The cache then never holds more than `window − 1` earlier positions. Default:
   * unlimited.
   */
  readonly window?: number;
  /**
   * Documents end after this token id (EOS): a position never sees one of an earlier document (the
   * block-causal masks of architecture §4.1, §5.2 and §6). Omit for plain causal attention.
   */
  readonly eosId?: number;
}

/**
 * The keys and values a stack of causal self-attention layers has computed for one row, so that new
 * positions cost one pass over themselves and their visible keys instead of a forward over the whole
 * row (architecture §9.2, §14.11). Shared by every transformer of BLT — the entropy model, the local
 * encoder and decoder (over bytes) and the latent transformer (over patches).
 *
 * A step over S new positions: {@link plan} (inside the caller's `tf.tidy`: it makes the step's mask
 * and RoPE tensors) → each layer's `applyCached(x, step, cache.layer(i))` → {@link commit} with the
 * layers' new keys/values. Positions are absolute (RoPE at the cache's offset). The cache keeps, per
 * layer, exactly the keys a later position can still see: at most `window − 1`, none before the
 * current document. It serves one row (batch 1) when documents are split; without an `eosId`, rows
 * of a batch share it.
 *
 * The cache owns the tensors it holds: {@link commit} disposes the ones it replaces, {@link reset}
 * and {@link dispose} all of them.
 */
export class KvCache {
  readonly nLayers: number;
  readonly window: number;
  readonly eosId: number | undefined;
  private layers: Array<LayerKv | null>;
  private next = 0;
  private firstHeld = 0;
  private docStart = 0;

  /**
   * @param options - layers, window, document split
   * @throws {NnError} `INVALID_ARGUMENT` for a bad option
   */
  constructor(options: KvCacheOptions) {
    checkInt('nLayers', options.nLayers, 1);
    if (options.window !== undefined) checkInt('window', options.window, 1);
    if (options.eosId !== undefined) checkInt('eosId', options.eosId, 0);
    this.nLayers = options.nLayers;
    this.window = options.window ?? Number.POSITIVE_INFINITY;
    this.eosId = options.eosId;
    this.layers = new Array<LayerKv | null>(this.nLayers).fill(null);
  }

  /** Positions seen so far: the absolute position of the next one. */
  get position(): number {
    return this.next;
  }

  /** Positions whose keys are held (the visible ones of the next position). */
  get held(): number {
    return this.next - this.firstHeld;
  }

  /** Layer `i`'s keys/values, or null when nothing is held. */
  layer(i: number): LayerKv | null {
    if (!Number.isInteger(i) || i < 0 || i >= this.nLayers)
      throw new NnError('INVALID_ARGUMENT', `layer index must be in [0, ${this.nLayers}), got ${i}`);
    return this.layers[i]!;
  }

  /**
   * The mask, RoPE tables and keep count of the next step. Makes tensors: call it inside the
   * `tf.tidy` of the step.
   *
   * @param tokens - the ids of the step's S >= 1 new positions (read for the document split)
   * @param rope - the stack's RoPE tables, or null when it has none
   * @returns what each layer's `applyCached` needs
   * @throws {NnError} `INVALID_ARGUMENT` for an empty step or positions past the RoPE table
   */
  plan(tokens: ArrayLike<number>, rope: RotaryEmbedding | null): CachedStep {
    const s = tokens.length;
    if (s < 1) throw new NnError('INVALID_ARGUMENT', 'a cached step needs at least one new position');
    const p0 = this.next;
    const t = p0 - this.firstHeld;
    // Query q sees exactly the keys j with lo(q) <= j <= q, lo(q) = max(q − window + 1, start of
    // q's document): the window and the document are both contiguous ranges ending at q.
    const lo = new Int32Array(s);
    let doc = this.docStart;
    let all = true;
    for (let i = 0; i < s; i++) {
      const q = p0 + i;
      lo[i] = Math.max(q - this.window + 1, doc);
      if (lo[i]! > this.firstHeld) all = false;
      if (tokens[i] === this.eosId) doc = q + 1;
    }
    let mask: MaskTensors | null = null;
    if (s > 1 || !all) {
      const m = new Uint8Array(s * (t + s));
      for (let i = 0; i < s; i++) {
        const row = i * (t + s);
        // Key column c holds absolute position firstHeld + c.
        for (let c = Math.max(0, lo[i]! - this.firstHeld); c <= t + i; c++) m[row + c] = 1;
      }
      mask = maskTensors(m, 1, s, t + s);
    }
    const end = p0 + s;
    const keepFrom = Math.max(end - this.window + 1, doc, this.firstHeld);
    return { mask, rope: rope ? rope.tables(p0, s) : null, keep: end - keepFrom };
  }

  /**
   * Installs the layers' keys/values after a step over `tokens` (the same ids given to
   * {@link plan}) and disposes the ones they replace.
   *
   * @param tokens - the step's new ids
   * @param layers - per layer, the `kv` returned by its `applyCached`. The cache owns them
   *   afterwards; called inside the step's `tf.tidy`, it `tf.keep`s them, so an error earlier in the
   *   step frees everything and leaves the cache as it was
   * @throws {NnError} `SHAPE_MISMATCH` when the layer count or a held length is not what the step
   *   planned (the cache is then unchanged and the given tensors are not taken)
   */
  commit(tokens: ArrayLike<number>, layers: ReadonlyArray<LayerKv | null>): void {
    const s = tokens.length;
    let doc = this.docStart;
    for (let i = 0; i < s; i++) if (tokens[i] === this.eosId) doc = this.next + i + 1;
    const end = this.next + s;
    const keepFrom = Math.max(end - this.window + 1, doc, this.firstHeld);
    if (layers.length !== this.nLayers)
      throw new NnError('SHAPE_MISMATCH', `commit: expected ${this.nLayers} layers, got ${layers.length}`);
    for (const kv of layers) {
      const held = kv ? kv.k.shape[2] : 0;
      if (held !== end - keepFrom)
        throw new NnError('SHAPE_MISMATCH', `commit: a layer holds ${String(held)} positions, expected ${end - keepFrom}`);
    }
    this.layers.forEach((old, i) => {
      const kv = layers[i]!;
      if (old && old.k !== kv?.k) old.k.dispose();
      if (old && old.v !== kv?.v) old.v.dispose();
      // Inside the step's tf.tidy, the new tensors would be freed at its end: the cache keeps them.
      if (kv) (tf.keep(kv.k), tf.keep(kv.v));
    });
    this.layers = [...layers];
    this.next = end;
    this.docStart = doc;
    this.firstHeld = keepFrom;
  }

  /** Forgets every position (a new row, or a new context of the entropy model) and frees the tensors. */
  reset(): void {
    for (const kv of this.layers)
      if (kv) {
        kv.k.dispose();
        kv.v.dispose();
      }
    this.layers.fill(null);
    this.next = 0;
    this.firstHeld = 0;
    this.docStart = 0;
  }

  /** Frees the held tensors. */
  dispose(): void {
    this.reset();
  }
}
