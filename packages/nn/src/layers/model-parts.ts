/**
 * Pieces the BLT's three model packages share (local encoder, latent transformer, local decoder):
 * a reference block with its activation taps, cross-attention, the masks each stage builds, and one
 * set of argument checks. They live here so that no model package reaches into another.
 */
import * as tf from '@tensorflow/tfjs-core';
import { type AttentionMask, type CrossAttention, prefixTap } from './attention.js';
import { BltError } from './blt-error.js';
import { type MaskTensors, causalMask, documentIds, groupMask, localAttentionBlockSize, maskTensors } from './masks.js';
import type { TransformerBlock } from './transformer-block.js';

/**
 * Receives intermediate outputs, named by the reference module path whose forward hook would see
 * them (`local_encoder.layers.0`, `local_decoder.cross_attn_layers.1.wq`, ...), a `:input` suffix for
 * a module's input (`local_decoder.norm:input`). The tensors are only valid during the call: keep a
 * clone (`tf.keep(tf.clone(t))`) to use them afterwards.
 */
export type ActivationTap = (modulePath: string, value: tf.Tensor) => void;

/** cos/sin RoPE tables for the positions of one call, each `[S, headDim / 2]`. */
export interface RopeTables {
  readonly cos: tf.Tensor;
  readonly sin: tf.Tensor;
}

/**
 * One pre-norm block (golden Semantics 11), reporting every sub-module output under its reference
 * path through the block's own tap (`<path>.attention_norm`, `.attention.wq|wk|wv|wo`, `.attention`,
 * `.ffn_norm`, `.feed_forward.w1|w3|w2`, `.feed_forward`), and `<path>` itself.
 *
 * @param block - the block
 * @param x - `[B, S, dim]`
 * @param mask - self-attention mask
 * @param rope - RoPE tables for the positions of `x`, or null
 * @param path - reference module path of the block, e.g. `local_encoder.layers.0`
 * @param tap - optional receiver of intermediate activations
 * @returns `[B, S, dim]`
 */
export function applyBlock(
  block: TransformerBlock,
  x: tf.Tensor,
  mask: AttentionMask,
  rope: RopeTables | null,
  path: string,
  tap?: ActivationTap,
): tf.Tensor {
  const out = block.apply(x, mask, rope, prefixTap(tap, path));
  tap?.(path, out);
  return out;
}

/**
 * One cross-attention module, `x + wo(attn(norm_q(x), norm_kv(kv)))` (architecture §5.3). The caller adds
 * `x` once more, reproducing the reference's doubled residual (architecture §5.2, §7.2). With a tap, the
 * module reports `<path>.cross_attn_norm_q|cross_attn_norm_kv|wq|wk|wv|wo`, and this `<path>`.
 *
 * @param layer - the module
 * @param x - queries `[B, Q, dim]`
 * @param kv - keys/values `[B, K, dim]`
 * @param mask - `[B, Q, K]`; a query with no visible key gets attention 0 (golden Semantics 8)
 * @param path - reference module path, e.g. `local_encoder.cross_attn_layers.0`
 * @param tap - optional receiver of intermediate activations
 * @returns `[B, Q, dim]`, the module's output (residual included once)
 */
export function applyCrossAttention(
  layer: CrossAttention,
  x: tf.Tensor,
  kv: tf.Tensor,
  mask: MaskTensors,
  path: string,
  tap?: ActivationTap,
): tf.Tensor {
  const out = layer.apply(x, kv, mask, prefixTap(tap, path));
  tap?.(path, out);
  return out;
}

/**
 * Validates size fields of a component's config: each required field, and each optional one that
 * is set, must be an integer >= 1.
 *
 * @param component - prefix of the message, e.g. `local decoder`
 * @throws {BltError} `CONFIG_MISMATCH` naming the component, the field and the value
 */
export function checkPositiveInts<T extends object>(
  component: string,
  config: T,
  required: ReadonlyArray<keyof T & string>,
  optional: ReadonlyArray<keyof T & string> = [],
): void {
  const fields = [...required, ...optional.filter((f) => config[f] !== undefined)];
  for (const f of fields) {
    const v = config[f];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
      throw new BltError('CONFIG_MISMATCH', `${component}: ${f} must be an integer >= 1, got ${String(v)}`);
    }
  }
}

/** Options of {@link localSelfAttentionMask}. */
export interface LocalMaskOptions {
  /** Query i sees key j only if `i − window < j ≤ i`; undefined = unlimited. */
  readonly window?: number;
  /** Documents are split after each token with this id (default 2, EOS). */
  readonly eosId?: number;
  /** Split documents at EOS (default true); false: one document per row, as plain `causal`. */
  readonly splitDocuments?: boolean;
  /** Compute windowed attention block by block above this many positions (memory N·window instead
   * of N²; default `localAttentionBlockSize(window)` of @bytelatent/nn). */
  readonly blockSize?: number;
}

/**
 * The self-attention mask of the local encoder and decoder (architecture §5.2 step 2, golden Semantics 5):
 * causal, split into documents after each EOS, windowed. Rows shorter than `seqLen` are padded at
 * the end; the padding forms a document of its own, and being causal it never reaches a real position.
 *
 * @param rows - token ids of each row (each at most `seqLen` long)
 * @param seqLen - padded row length
 * @param options - window, EOS id
 * @returns tensors (or a block-wise spec for long windowed rows); free with {@link disposeMask}
 */
export function localSelfAttentionMask(rows: readonly ArrayLike<number>[], seqLen: number, options: LocalMaskOptions = {}): AttentionMask {
  const docs = paddedDocumentIds(rows, seqLen, options.splitDocuments === false ? -1 : (options.eosId ?? 2));
  const batch = rows.length;
  if (options.window !== undefined) {
    const blockSize = options.blockSize ?? localAttentionBlockSize(options.window);
    // Without an explicit block size, attention chooses per call between blocks and one dense product.
    if (seqLen > blockSize)
      return {
        kind: 'local',
        batch,
        seqLen,
        window: options.window,
        documents: docs,
        ...(options.blockSize !== undefined ? { blockSize } : {}),
      };
  }
  return maskTensors(causalMask(batch, seqLen, { window: options.window, documents: docs }), batch, seqLen, seqLen);
}

/**
 * Block-causal self-attention over `seqLen` positions, documents split after each EOS (the global
 * transformer's `block_causal`, architecture §6), or plainly causal.
 *
 * @param rows - per row, the token of each position (global: BOE or EOS per patch)
 * @param seqLen - padded row length
 * @param splitDocuments - false for plain `causal`
 * @param eosId - the EOS id
 * @returns mask tensors; free with {@link disposeMask}
 */
export function blockCausalMask(rows: readonly ArrayLike<number>[], seqLen: number, splitDocuments: boolean, eosId = 2): MaskTensors {
  const docs = splitDocuments ? paddedDocumentIds(rows, seqLen, eosId) : undefined;
  return maskTensors(causalMask(rows.length, seqLen, { documents: docs }), rows.length, seqLen, seqLen);
}

/**
 * The document of every position of right-padded rows: documents split after each EOS
 * ({@link documentIds}), the padding a document of its own (causal, so it never reaches a real
 * position). The one implementation behind every model's padded masks.
 *
 * @param rows - token ids per row (each at most `seqLen` long)
 * @param seqLen - padded length
 * @param eosId - the EOS id (an id no token has, such as −1, keeps each row one document)
 * @throws {BltError} `INVALID_ARGUMENT` for a row longer than `seqLen`
 */
export function paddedDocumentIds(rows: readonly ArrayLike<number>[], seqLen: number, eosId: number): Int32Array[] {
  return rows.map((r, b) => {
    if (r.length > seqLen) throw new BltError('INVALID_ARGUMENT', `row ${b} has ${r.length} positions, more than ${seqLen}`);
    const d = documentIds(r, eosId);
    const full = new Int32Array(seqLen);
    full.set(d);
    full.fill((d[d.length - 1] ?? 0) + 1, d.length);
    return full;
  });
}

/**
 * Cross-attention mask between patch rows and bytes by group (the reference's
 * `create_patch_mask_from_ids`, architecture §5.4 and §7.2 step 4): query q sees key k iff
 * `kg == qg` (no window) or `kg ≤ qg < kg + window`. A negative group (padding) sees and is seen by nothing.
 *
 * @param queryGroups - per row, the group of each query
 * @param keyGroups - per row, the group of each key
 * @param window - optional window in groups (`cross_attn_window_encoder/decoder`)
 * @returns mask tensors `[B, Q, K]`; free with {@link disposeMask}
 */
export function groupCrossMask(queryGroups: readonly Int32Array[], keyGroups: readonly Int32Array[], window?: number): MaskTensors {
  const batch = queryGroups.length;
  if (batch === 0 || keyGroups.length !== batch) {
    throw new BltError(
      'INVALID_ARGUMENT',
      `queryGroups and keyGroups need the same non-zero number of rows, got ${batch} and ${keyGroups.length}`,
    );
  }
  return maskTensors(groupMask(queryGroups, keyGroups, window), batch, queryGroups[0]!.length, keyGroups[0]!.length);
}

/**
 * The group of each of the `numPatches · k` patch rows: row `p·k + r` belongs to patch p (architecture §5.2:
 * the k sub-vectors of a patch share its mask).
 */
export function patchRowGroups(numPatches: number, k: number): Int32Array {
  const out = new Int32Array(numPatches * k);
  for (let p = 0; p < numPatches; p++) out.fill(p, p * k, p * k + k);
  return out;
}

/** Frees a mask made by this module (a block-wise spec holds no tensor). */
export function disposeMask(mask: AttentionMask): void {
  if (!('kind' in mask)) tf.dispose([mask.bias, mask.rowValid ?? []]);
}
