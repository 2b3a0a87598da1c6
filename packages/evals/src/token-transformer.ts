/**
 * The baseline token model: a decoder-only transformer over any vocabulary, built from the same
 * `@bytelatent/nn` blocks as every other model here (the entropy model is the same stack over
 * bytes). With the {@link byteTokenizer} vocabulary it is the plain byte-level transformer; with a
 * {@link BytePairTokenizer} vocabulary it is the BPE baseline of the paper's comparison.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BOE_ID, BOS_ID, EOS_ID } from '@bytelatent/bytes';
import {
  type InitStdFactor,
  LMTransformer,
  NnError,
  ParameterRegistry,
  ParameterScope,
  type SafetensorsFile,
  loadReferenceWeights,
  referenceStateDict,
  seededUniform,
  serializeSafetensors,
  sparseCrossEntropy,
} from '@bytelatent/nn';
import { EvalError } from './errors.js';
import type { ScoringRow, TokenScoringModel, Tokenizer } from './scoring-model.js';

/** Metadata key of the arguments in a saved token model. */
export const TOKEN_MODEL_ARGS_KEY = 'token_model_args';
/** Metadata key of the tokenizer (BPE JSON) in a saved token model. */
export const TOKEN_MODEL_TOKENIZER_KEY = 'token_model_tokenizer';

/** Arguments, named as the reference's `LMTransformerArgs`. */
export interface TokenTransformerArgs {
  readonly dim: number;
  readonly n_layers: number;
  readonly n_heads: number;
  readonly vocab_size: number;
  /** Longest row (RoPE table length). */
  readonly max_seqlen: number;
  readonly multiple_of?: number;
  readonly ffn_dim_multiplier?: number | null;
  readonly norm_eps?: number;
  readonly rope_theta?: number;
  /** `block_causal` (default: documents split after EOS, as training rows hold several) or `causal`. */
  readonly attn_bias_type?: 'block_causal' | 'causal';
  readonly eos_id?: number;
  readonly init_std_factor?: InitStdFactor;
}

function check(
  args: TokenTransformerArgs,
): Required<Omit<TokenTransformerArgs, 'ffn_dim_multiplier'>> & { ffn_dim_multiplier: number | null } {
  for (const f of ['dim', 'n_layers', 'n_heads', 'vocab_size', 'max_seqlen'] as const) {
    const v = args[f];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      throw new EvalError('INVALID_ARGUMENT', `token transformer args: ${f} must be an integer >= 1, got ${String(v)}`);
  }
  if (args.dim % args.n_heads !== 0)
    throw new EvalError('INVALID_ARGUMENT', `token transformer args: dim ${args.dim} is not a multiple of n_heads ${args.n_heads}`);
  const type = args.attn_bias_type ?? 'block_causal';
  if (type !== 'block_causal' && type !== 'causal')
    throw new EvalError('INVALID_ARGUMENT', `token transformer args: attn_bias_type must be block_causal or causal, got ${String(type)}`);
  return {
    dim: args.dim,
    n_layers: args.n_layers,
    n_heads: args.n_heads,
    vocab_size: args.vocab_size,
    max_seqlen: args.max_seqlen,
    multiple_of: args.multiple_of ?? 256,
    ffn_dim_multiplier: args.ffn_dim_multiplier ?? null,
    norm_eps: args.norm_eps ?? 1e-5,
    rope_theta: args.rope_theta ?? 10000,
    attn_bias_type: type,
    eos_id: args.eos_id ?? EOS_ID,
    init_std_factor: args.init_std_factor ?? 'disabled',
  };
}

/** A decoder-only transformer: embedding, pre-norm blocks, final norm, output head. */
export class TokenTransformer {
  readonly args: Readonly<TokenTransformerArgs>;
  readonly registry = new ParameterRegistry();
  private readonly resolved: ReturnType<typeof check>;
  /** The reference's `LMTransformer` (nn's, shared with the entropy model). */
  private readonly lm: LMTransformer;

  /**
   * A randomly initialised model (the reference init).
   *
   * @param args - sizes
   * @param seed - initialisation seed
   * @throws {EvalError} `INVALID_ARGUMENT` for invalid sizes
   */
  constructor(args: TokenTransformerArgs, seed = 0) {
    const a = check(args);
    this.resolved = a;
    this.args = { ...args };
    const random = seededUniform(seed);
    try {
      this.lm = new LMTransformer(
        new ParameterScope(this.registry),
        {
          dim: a.dim,
          nLayers: a.n_layers,
          nHeads: a.n_heads,
          multipleOf: a.multiple_of,
          ffnDimMultiplier: a.ffn_dim_multiplier,
          normEps: a.norm_eps,
          ropeTheta: a.rope_theta,
          maxSeqLen: a.max_seqlen,
          initStdFactor: a.init_std_factor,
          vocabSize: a.vocab_size,
          splitDocuments: a.attn_bias_type === 'block_causal',
          eosId: a.eos_id,
        },
        random,
      );
    } catch (e) {
      this.registry.dispose();
      if (e instanceof NnError) throw new EvalError('INVALID_ARGUMENT', `token transformer args: ${e.message}`);
      throw e;
    }
  }

  /**
   * Builds a model from weights saved by {@link toSafetensors} (arguments in the metadata).
   *
   * @param file - a parsed safetensors file
   * @param args - arguments (default: the file's `token_model_args` metadata)
   * @throws {EvalError} `INVALID_MODEL_FILE` when arguments are missing or the weights do not fit
   */
  static fromSafetensors(file: SafetensorsFile, args?: TokenTransformerArgs): TokenTransformer {
    let a = args;
    if (!a) {
      const raw = file.metadata[TOKEN_MODEL_ARGS_KEY];
      if (raw === undefined) throw new EvalError('INVALID_MODEL_FILE', `no "${TOKEN_MODEL_ARGS_KEY}" metadata and no arguments given`);
      a = JSON.parse(raw) as TokenTransformerArgs;
    }
    const model = new TokenTransformer(a);
    try {
      loadReferenceWeights(model.registry, file);
    } catch (e) {
      model.dispose();
      throw new EvalError('INVALID_MODEL_FILE', (e as Error).message);
    }
    return model;
  }

  /** Longest row. */
  get maxSeqLen(): number {
    return this.resolved.max_seqlen;
  }

  /** Number of trainable scalars. */
  parameterCount(): number {
    return this.registry.count();
  }

  /**
   * Next-token logits for right-padded rows (each row has its own causal, document-split mask, so
   * padding never reaches a real position).
   *
   * @param rows - token ids per row (non-empty, each id in `[0, vocab)`, at most `max_seqlen`)
   * @returns `[rows, longest, vocab]`
   * @throws {EvalError} `INVALID_ARGUMENT` for an empty, over-long or out-of-vocabulary row
   */
  logits(rows: readonly ArrayLike<number>[]): tf.Tensor3D {
    const a = this.resolved;
    if (rows.length === 0) throw new EvalError('INVALID_ARGUMENT', 'no rows');
    const seqLen = Math.max(...rows.map((r) => r.length));
    const ids = new Int32Array(rows.length * seqLen).fill(BOE_ID);
    rows.forEach((r, b) => {
      if (r.length === 0) throw new EvalError('INVALID_ARGUMENT', `row ${b} is empty`);
      if (r.length > a.max_seqlen)
        throw new EvalError('INVALID_ARGUMENT', `row ${b} has ${r.length} ids, more than max_seqlen ${a.max_seqlen}`);
      for (let t = 0; t < r.length; t++) {
        const id = r[t]!;
        if (!Number.isInteger(id) || id < 0 || id >= a.vocab_size)
          throw new EvalError('INVALID_ARGUMENT', `rows[${b}][${t}] = ${id} is not an id in [0, ${a.vocab_size})`);
        ids[b * seqLen + t] = id;
      }
    });
    return this.lm.logits(ids, rows, seqLen);
  }

  /**
   * Σ −ln p(target) over the real positions of the rows, as a scalar (differentiable: what training minimises).
   *
   * @param rows - ids and targets per row
   * @returns scalar nats
   */
  sumLoss(rows: readonly ScoringRow[]): tf.Scalar {
    return tf.tidy(() => tf.neg(tf.sum(this.pickLogProbs(rows))) as tf.Scalar);
  }

  /**
   * ln p(target) at every position, `[rows, longest]`, 0 on padding.
   *
   * @param rows - ids and targets per row
   */
  pickLogProbs(rows: readonly ScoringRow[]): tf.Tensor2D {
    const [batch, seqLen] = [rows.length, Math.max(...rows.map((r) => r.tokens.length))];
    const flat = new Int32Array(batch * seqLen);
    const valid = new Float32Array(batch * seqLen);
    rows.forEach((r, b) => {
      if (r.targets.length !== r.tokens.length)
        throw new EvalError('INVALID_ARGUMENT', `row ${b} has ${r.tokens.length} ids and ${r.targets.length} targets`);
      r.targets.forEach((y, t) => {
        if (!Number.isInteger(y) || y < 0 || y >= this.resolved.vocab_size)
          throw new EvalError('INVALID_ARGUMENT', `targets[${b}][${t}] = ${y} is not an id in [0, ${this.resolved.vocab_size})`);
      });
      flat.set(r.targets, b * seqLen);
      valid.fill(1, b * seqLen, b * seqLen + r.targets.length);
    });
    return tf.tidy(() => {
      const picked = tf.neg(sparseCrossEntropy(this.logits(rows.map((r) => r.tokens)), flat));
      return tf.mul(picked, tf.tensor2d(valid, [batch, seqLen])) as tf.Tensor2D;
    });
  }

  /**
   * The weights as safetensors, arguments (and optionally the tokenizer) in the metadata.
   *
   * @param metadata - extra metadata entries
   */
  async toSafetensors(metadata: Readonly<Record<string, string>> = {}): Promise<Uint8Array> {
    const tensors = await referenceStateDict(this.registry);
    return serializeSafetensors(tensors, { ...metadata, [TOKEN_MODEL_ARGS_KEY]: JSON.stringify(this.args) });
  }

  /** Frees the weights. */
  dispose(): void {
    this.registry.dispose();
  }
}

/**
 * A {@link TokenTransformer} with its tokenizer as a scoring model.
 *
 * @param model - the transformer (its vocabulary must cover the tokenizer's)
 * @param tokenizer - turns bytes into the model's ids
 * @param name - for tables (default `token-transformer/<tokenizer>`)
 * @returns a token scoring model (disposing it disposes the transformer)
 * @throws {EvalError} `INVALID_ARGUMENT` when the vocabularies differ
 */
export function tokenTransformerScorer(model: TokenTransformer, tokenizer: Tokenizer, name?: string): TokenScoringModel {
  if (tokenizer.vocabSize !== model.args.vocab_size) {
    throw new EvalError(
      'INVALID_ARGUMENT',
      `the tokenizer has ${tokenizer.vocabSize} ids, the model's vocabulary ${model.args.vocab_size}`,
    );
  }
  return {
    kind: 'token',
    name: name ?? `token-transformer/${tokenizer.name}`,
    maxContext: model.maxSeqLen,
    bosId: BOS_ID,
    tokenizer,
    async logProbs(rows) {
      const picked = model.pickLogProbs(rows);
      const seqLen = picked.shape[1];
      let data: Float32Array;
      try {
        data = (await picked.data()) as Float32Array;
      } finally {
        picked.dispose();
      }
      return rows.map((r, b) => data.slice(b * seqLen, b * seqLen + r.targets.length));
    },
    dispose: () => model.dispose(),
  };
}
