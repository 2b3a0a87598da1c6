/**
 * FLOP accounting with the formulas of the BLT paper (Pagnoni et al. 2024, appendix B, table 11
 * and eqs. 13–17; architecture §12.3): forward FLOPs per token of each operation, a transformer as their
 * sum, a BLT per byte as global / patch size + local encoder + local decoder + both
 * cross-attentions, a token model per byte as its per-token FLOPs / bytes per token. Training
 * costs three forwards (the backward pass is counted as twice the forward). Embedding lookups
 * (byte, hash n-gram and token embeddings) are free, as in the paper; so are norms and the small
 * per-patch projections the paper's formula leaves out.
 */
import { resolveBltArgs, type BltArgs } from '@bytelatent/blt';
import { ffnHiddenDim } from '@bytelatent/nn';
import { EvalError, checkInteger, checkNumber } from './errors.js';

/**
 * Attention scores and weighted values: `4 · l · h_k · n_heads · (m + 1) / 2` (causal: a query
 * sees (m + 1) / 2 keys on average).
 *
 * @param layers - l
 * @param headDim - h_k
 * @param heads - n_heads
 * @param context - m, the attention context
 */
export function attentionFlops(layers: number, headDim: number, heads: number, context: number): number {
  return (4 * layers * headDim * heads * (context + 1)) / 2;
}

/**
 * Query, key, value and output projections: `(2r + 2) · 2 · l · h²` per query, r being the keys
 * projected per query (1 for self-attention).
 *
 * @param layers - l
 * @param dim - h
 * @param ratio - r
 */
export function qkvoFlops(layers: number, dim: number, ratio: number): number {
  return (2 * ratio + 2) * 2 * layers * dim * dim;
}

/**
 * Feed-forward: `2 · l · 2 · h · (d_ff · h)` — two `h × d_ff·h` matrices. A SwiGLU of hidden size F
 * has three `h × F` matrices, the same count as `d_ff = 1.5 F / h` ({@link transformerShape} uses that).
 *
 * @param layers - l
 * @param dim - h
 * @param ffnRatio - d_ff
 */
export function feedForwardFlops(layers: number, dim: number, ffnRatio: number): number {
  return 2 * layers * 2 * dim * (ffnRatio * dim);
}

/**
 * Output head: `2 · h · |V|`.
 *
 * @param dim - h
 * @param vocab - |V| (0 for a model without an output head, such as BLT's global transformer)
 */
export function deEmbeddingFlops(dim: number, vocab: number): number {
  return 2 * dim * vocab;
}

/**
 * Cross-attention: `Attention(l, h_k, n_heads, p) + QKVO(l, h_k · n_heads, r)` per query.
 *
 * @param layers - cross-attention layers
 * @param headDim - h_k
 * @param heads - n_heads
 * @param context - p, keys each query attends to
 * @param ratio - r, keys projected per query
 */
export function crossAttentionFlops(layers: number, headDim: number, heads: number, context: number, ratio: number): number {
  return attentionFlops(layers, headDim, heads, context) + qkvoFlops(layers, headDim * heads, ratio);
}

/** The sizes of a transformer stack that its FLOPs depend on. */
export interface TransformerShape {
  readonly layers: number;
  readonly dim: number;
  readonly heads: number;
  /** Default `dim / heads`. */
  readonly headDim?: number;
  /** The paper's d_ff (4 for a classic MLP; `1.5 F / dim` for a SwiGLU of hidden size F). */
  readonly ffnRatio: number;
}

function checkShape(name: string, s: TransformerShape): { layers: number; dim: number; heads: number; headDim: number; ffnRatio: number } {
  if (typeof s !== 'object' || s === null) throw new EvalError('INVALID_ARGUMENT', `${name} must be a TransformerShape object`);
  const layers = checkInteger(`${name}.layers`, s.layers, 0);
  const dim = checkInteger(`${name}.dim`, s.dim, 1);
  const heads = checkInteger(`${name}.heads`, s.heads, 1);
  const headDim = s.headDim === undefined ? dim / heads : checkNumber(`${name}.headDim`, s.headDim, Number.MIN_VALUE);
  return { layers, dim, heads, headDim, ffnRatio: checkNumber(`${name}.ffnRatio`, s.ffnRatio, 0) };
}

/**
 * Forward FLOPs per token of a transformer (paper eq. 13): `FeedForward + QKVO(r = 1) + Attention + DeEmbedding`.
 *
 * @param shape - layers, width, heads, feed-forward ratio
 * @param context - m, the attention context in tokens
 * @param vocab - output vocabulary (0: no output head)
 * @returns FLOPs per token
 * @throws {EvalError} `INVALID_ARGUMENT` for a malformed shape or a negative context / vocabulary
 */
export function transformerFlops(shape: TransformerShape, context: number, vocab: number): number {
  const s = checkShape('shape', shape);
  checkNumber('context', context, 0);
  checkInteger('vocab', vocab, 0);
  return (
    feedForwardFlops(s.layers, s.dim, s.ffnRatio) +
    qkvoFlops(s.layers, s.dim, 1) +
    attentionFlops(s.layers, s.headDim, s.heads, context) +
    deEmbeddingFlops(s.dim, vocab)
  );
}

/** The sizes of a BLT that its FLOPs depend on. */
export interface BltFlopsShape {
  /** Local encoder; `window` = its local attention window in bytes (undefined: the whole context). */
  readonly encoder: TransformerShape & { readonly window?: number };
  readonly global: TransformerShape;
  readonly decoder: TransformerShape & { readonly window?: number };
  /** k: patch vectors per patch (`cross_attn_k`). */
  readonly crossAttnK: number;
  /** Heads of both cross-attentions (`cross_attn_nheads`). */
  readonly crossAttnHeads: number;
  /** Cross-attention layers in the encoder (1, or every layer) and in the decoder. */
  readonly encoderCrossLayers: number;
  readonly decoderCrossLayers: number;
  /** The decoder's output vocabulary (the paper writes 256; our models have 260). */
  readonly vocab: number;
}

/** Per-byte forward FLOPs of a BLT, by part. */
export interface BltFlopsBreakdown {
  readonly global: number;
  readonly encoder: number;
  readonly decoder: number;
  readonly encoderCrossAttention: number;
  readonly decoderCrossAttention: number;
  /** Sum of the parts: inference FLOPs per byte. */
  readonly total: number;
}

/**
 * Forward FLOPs per byte of a BLT (paper eqs. 14–17):
 * `Transf(global, m = n_ctx / n_p, V = 0) / n_p + Transf(encoder, m = w_E, V = 0) + Transf(decoder, m = w_D, V)
 *  + CrossAttn(encoder, m = n_p, r = n_p / k) · k / n_p + CrossAttn(decoder, m = k, r = k / n_p)`.
 * Local windows larger than the context count as the context. The entropy model is not included
 * (see {@link transformerFlops} for its own cost).
 *
 * @param shape - the BLT's sizes ({@link bltFlopsShape} reads them from `BltArgs`)
 * @param meanPatchSize - n_p, mean bytes per patch
 * @param contextBytes - n_ctx, the sequence length in bytes
 * @returns FLOPs per byte, by part and in total
 * @throws {EvalError} `INVALID_ARGUMENT` for a patch size below 1 or a context below 1
 */
export function bltFlopsPerByte(shape: BltFlopsShape, meanPatchSize: number, contextBytes: number): BltFlopsBreakdown {
  const np = checkNumber('meanPatchSize', meanPatchSize, 1);
  const ctx = checkNumber('contextBytes', contextBytes, 1);
  const k = checkInteger('shape.crossAttnK', shape.crossAttnK, 1);
  const heads = checkInteger('shape.crossAttnHeads', shape.crossAttnHeads, 1);
  const enc = checkShape('shape.encoder', shape.encoder);
  const dec = checkShape('shape.decoder', shape.decoder);
  const wE = Math.min(shape.encoder.window ?? ctx, ctx);
  const wD = Math.min(shape.decoder.window ?? ctx, ctx);
  const global = transformerFlops(shape.global, ctx / np, 0) / np;
  const encoder = transformerFlops(shape.encoder, wE, 0);
  const decoder = transformerFlops(shape.decoder, wD, checkInteger('shape.vocab', shape.vocab, 1));
  const encoderCrossAttention =
    (crossAttentionFlops(checkInteger('shape.encoderCrossLayers', shape.encoderCrossLayers, 0), enc.dim / heads, heads, np, np / k) * k) /
    np;
  const decoderCrossAttention = crossAttentionFlops(
    checkInteger('shape.decoderCrossLayers', shape.decoderCrossLayers, 0),
    dec.dim / heads,
    heads,
    k,
    k / np,
  );
  return {
    global,
    encoder,
    decoder,
    encoderCrossAttention,
    decoderCrossAttention,
    total: global + encoder + decoder + encoderCrossAttention + decoderCrossAttention,
  };
}

/**
 * Forward FLOPs per byte of a token model: its per-token FLOPs (context `contextBytes / bytesPerToken`
 * tokens) divided by the bytes per token. A byte-level transformer is the case `bytesPerToken = 1`.
 *
 * @param shape - the transformer's sizes
 * @param bytesPerToken - mean bytes per token of its tokenizer on the text
 * @param contextBytes - the sequence length in bytes
 * @param vocab - the output vocabulary
 * @returns FLOPs per byte
 * @throws {EvalError} `INVALID_ARGUMENT` for bytes per token or context below 1 (a token is >= 1 byte)
 */
export function tokenModelFlopsPerByte(shape: TransformerShape, bytesPerToken: number, contextBytes: number, vocab: number): number {
  const bpt = checkNumber('bytesPerToken', bytesPerToken, 1);
  const ctx = checkNumber('contextBytes', contextBytes, 1);
  return transformerFlops(shape, ctx / bpt, vocab) / bpt;
}

/**
 * Training FLOPs: a forward and a backward pass (twice the forward) over every training byte.
 *
 * @param inferenceFlopsPerByte - forward FLOPs per byte
 * @param bytes - training bytes
 * @returns `3 · inferenceFlopsPerByte · bytes`
 */
export function trainingFlops(inferenceFlopsPerByte: number, bytes: number): number {
  return 3 * checkNumber('inferenceFlopsPerByte', inferenceFlopsPerByte, 0) * checkNumber('bytes', bytes, 0);
}

/** Reference-named transformer arguments (`LMTransformerArgs`, `EntropyModelArgs`, token transformer args). */
export interface TransformerArgsLike {
  readonly dim: number;
  readonly n_layers: number;
  readonly n_heads: number;
  readonly head_dim?: number | null;
  readonly multiple_of?: number;
  readonly ffn_dim_multiplier?: number | null;
}

/**
 * The FLOP shape of a reference-named transformer (SwiGLU feed-forward of hidden
 * `ffnHiddenDim(dim, multiple_of, ffn_dim_multiplier)`).
 *
 * @param args - reference-named sizes
 * @returns the shape
 */
export function transformerShape(args: TransformerArgsLike): TransformerShape {
  const hidden = ffnHiddenDim(args.dim, args.multiple_of ?? 256, args.ffn_dim_multiplier ?? null);
  return {
    layers: args.n_layers,
    dim: args.dim,
    heads: args.n_heads,
    headDim: args.head_dim ?? args.dim / args.n_heads,
    ffnRatio: (1.5 * hidden) / args.dim,
  };
}

/**
 * The FLOP shape of a BLT from its reference arguments.
 *
 * @param args - `BltArgs` (what a BLT checkpoint stores)
 * @returns the shape
 * @throws {BltError} `CONFIG_MISMATCH` for arguments the BLT itself would reject
 */
export function bltFlopsShape(args: BltArgs): BltFlopsShape {
  const r = resolveBltArgs(args);
  const part = (c: {
    dim: number;
    nLayers: number;
    nHeads: number;
    headDim?: number | undefined;
    multipleOf?: number | undefined;
    ffnDimMultiplier?: number | null | undefined;
  }) => {
    const hidden = ffnHiddenDim(c.dim, c.multipleOf ?? 256, c.ffnDimMultiplier ?? null);
    return { layers: c.nLayers, dim: c.dim, heads: c.nHeads, headDim: c.headDim ?? c.dim / c.nHeads, ffnRatio: (1.5 * hidden) / c.dim };
  };
  return {
    encoder: { ...part(r.encoder), ...(r.localWindow !== undefined ? { window: r.localWindow } : {}) },
    global: part(r.global),
    decoder: { ...part(r.decoder), ...(r.localWindow !== undefined ? { window: r.localWindow } : {}) },
    crossAttnK: r.encoder.crossAttnK,
    crossAttnHeads: r.encoder.crossAttnNHeads,
    encoderCrossLayers: r.encoder.crossAttnAllLayers ? r.encoder.nLayers : 1,
    decoderCrossLayers: r.decoder.crossAttnAllLayers ? r.decoder.nLayers : 1,
    vocab: r.vocabSize,
  };
}
