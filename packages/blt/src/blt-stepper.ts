/**
 * The BLT forward pass one step at a time (architecture §9.2): the local encoder, the latent
 * transformer and the local decoder wired once, with their caches, for a caller that appends bytes
 * and completes patches as it goes (the cached generation engine, which only does the patching
 * bookkeeping). Together the steps compute what `ByteLatentTransformer.forward` computes over the
 * whole row (the generation tests compare them).
 */
import * as tf from '@tensorflow/tfjs-core';
import { BOE_ID } from '@bytelatent/bytes';
import { BltError, type KvCache, type LayerKv } from '@bytelatent/nn';
import type { ByteLatentTransformer } from './blt-model.js';

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

/** A BLT run incrementally over one row; see the module comment. Free it with {@link dispose}. */
export class BltStepper {
  private readonly encoderCache: KvCache;
  private readonly decoderCache: KvCache;
  private readonly globalCache: KvCache;
  private readonly byteStates = new ByteStates();
  private readonly patchKv: PatchKv;
  private disposed = false;

  /** @param model - the BLT (not owned) */
  constructor(private readonly model: ByteLatentTransformer) {
    const local = { window: model.args.localWindow, eosId: model.args.eosId };
    this.encoderCache = model.localEncoder.createCache(local);
    this.decoderCache = model.localDecoder.createCache(local);
    this.globalCache = model.globalTransformer.createCache();
    this.patchKv = new PatchKv(model.localDecoder.rowsPerPatch);
  }

  /**
   * Encodes positions `a .. b − 1` of the row (hash embeddings, the encoder layers with their cache)
   * and keeps the byte states the patch cross-attention will read (call inside a tidy).
   *
   * @param tokens - the row so far (at least `b` ids)
   * @returns the encoder's byte states of those positions, `[1, b − a, dim]`, for {@link decode}
   */
  encode(tokens: readonly number[], a: number, b: number): tf.Tensor3D {
    const enc = this.model.localEncoder;
    const out = enc.forwardCached(enc.embedRange(tokens, a, b), tokens.slice(a, b), this.encoderCache);
    this.byteStates.add(a, out.states);
    return out.h;
  }

  /**
   * Completes patches `first .. first + count − 1`, all of whose bytes are encoded (call inside a
   * tidy): their encoder patch states from the kept byte states (architecture §5.2 step 4), one call
   * of the latent transformer with its patch cache (architecture §6), and the decoder's
   * cross-attention keys/values of its outputs (architecture §7.2 steps 2–3).
   *
   * @param starts - the start of every patch up to `first + count` at least
   * @param patchOf - the patch of every position encoded so far
   * @param tokens - the row so far
   */
  completePatches(first: number, count: number, starts: readonly number[], patchOf: readonly number[], tokens: readonly number[]): void {
    const enc = this.model.localEncoder;
    const encWindow = enc.config.crossAttnWindow ?? 1;
    const from = starts[Math.max(0, first - encWindow + 1)]!;
    const to = starts[first + count]!;
    const states = this.byteStates.gather(from, to);
    const ids = Int32Array.from(patchOf.slice(from, to));
    const patchEmbeds = enc.encodePatches(states, [ids], first, count);
    // `h_cross.view(B, P, k·d_E)` (architecture §6), and the global token of each patch: EOS if it holds one.
    const globalIn = tf.reshape(patchEmbeds, [1, count, -1]) as tf.Tensor3D;
    const eos = this.model.args.eosId;
    const globalTokens = new Int32Array(count).fill(BOE_ID);
    for (let t = starts[first]!; t < to; t++) if (tokens[t] === eos) globalTokens[patchOf[t]! - first] = eos;
    const globalOut = this.model.globalTransformer.forwardCached(globalIn, globalTokens, this.globalCache);
    this.patchKv.add(first, count, this.model.localDecoder.patchKv(globalOut));
  }

  /**
   * Decoder logits of positions `a .. b − 1` (call inside a tidy).
   *
   * @param h - their encoder byte states, from {@link encode}
   * @param decoderPatches - per position t, the completed patch it reads: `patchId(t + 1) − 1` (architecture §7.1)
   * @param tokens - the row so far
   */
  decode(h: tf.Tensor3D, decoderPatches: Int32Array, tokens: readonly number[], a: number, b: number): tf.Tensor {
    const dec = this.model.localDecoder;
    const first = dec.visiblePatches(decoderPatches[0]!).first;
    const last = decoderPatches[decoderPatches.length - 1]!;
    const kv = this.patchKv.gather(first, last - first + 1);
    // One byte given exactly the rows it may read needs no mask.
    const mask = b - a === 1 ? null : dec.crossMask([decoderPatches], first, last - first + 1);
    try {
      return dec.forwardCached(h, kv, mask, tokens.slice(a, b), this.decoderCache);
    } finally {
      if (mask) tf.dispose([mask.bias, mask.rowValid ?? []]);
    }
  }

  /**
   * Frees what no later step reads: later patches read the bytes of their last `crossAttnWindow`
   * (encoder) patches, later bytes the rows of patch `completed − 1` and the `crossAttnWindow − 1`
   * (decoder) patches before it.
   *
   * @param completed - patches completed so far
   * @param starts - the start of every patch
   */
  release(completed: number, starts: readonly number[]): void {
    const encWindow = this.model.localEncoder.config.crossAttnWindow ?? 1;
    this.byteStates.dropBefore(starts[Math.max(0, completed - encWindow + 1)]!);
    this.patchKv.dropBefore(completed - (this.model.localDecoder.config.crossAttnWindow ?? 1));
  }

  /** Frees every cache and kept state (idempotent). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.encoderCache.dispose();
    this.decoderCache.dispose();
    this.globalCache.dispose();
    this.byteStates.dispose();
    this.patchKv.dispose();
  }
}
