import { BltError } from '@bytelatent/nn';
import type { LocalEncoderConfig } from '@bytelatent/local-encoder';
import type { GlobalTransformerConfig } from '@bytelatent/latent-transformer';
import type { LocalDecoderConfig } from '@bytelatent/local-decoder';
import type { HashNgramConfig } from '@bytelatent/ngram-hash';
import { type InitStdFactor, referenceAttentionProblem } from '@bytelatent/nn';

/**
 * The reference's `ByteLatentTransformerArgs`, with its names, so that a reference `config.json`
 * / `params.json` `args` object (or the golden `blt_args`) can be passed as it is. Unknown keys are
 * ignored; a missing key takes the reference's default. Only the variant of the released models is
 * supported (cross-attention encoder and decoder, pooling init, max pooling, RoPE); any other
 * setting of those flags is a `CONFIG_MISMATCH`.
 */
export interface BltArgs {
  readonly vocab_size?: number;
  readonly pm_size?: number;
  readonly dim_token?: number | null;
  readonly dim_global?: number;
  readonly dim_local_encoder?: number;
  readonly dim_local_decoder?: number;
  readonly n_layers_global?: number;
  readonly n_layers_local_encoder?: number;
  readonly n_layers_local_decoder?: number;
  readonly n_heads_global?: number;
  readonly n_heads_local_encoder?: number;
  readonly n_heads_local_decoder?: number;
  readonly n_kv_heads?: number | null;
  readonly n_kv_heads_global?: number | null;
  readonly head_dim?: number | null;
  readonly multiple_of?: number;
  readonly ffn_dim_multiplier?: number | null;
  readonly norm_eps?: number;
  readonly rope_theta?: number;
  readonly use_rope?: boolean;
  /** Global RoPE table length, in patches. */
  readonly max_seqlen?: number;
  /** Local RoPE table length, in bytes (required). */
  readonly max_encoder_seq_length?: number | null;
  readonly local_attention_window_len?: number | null;
  /** Global mask: `block_causal` (documents split after EOS patches) or `causal`. */
  readonly attn_bias_type?: string;
  readonly eos_id?: number;
  readonly init_std_factor?: string;
  readonly patch_size?: number | null;
  readonly patching_mode?: string | null;
  readonly use_local_encoder_transformer?: boolean;
  readonly share_encoder_decoder_emb?: boolean;
  readonly cross_attn_encoder?: boolean;
  readonly cross_attn_decoder?: boolean;
  readonly cross_attn_init_by_pooling?: boolean;
  readonly cross_attn_k?: number | null;
  readonly cross_attn_nheads?: number | null;
  readonly cross_attn_all_layers_encoder?: boolean;
  readonly cross_attn_all_layers_decoder?: boolean;
  readonly cross_attn_window_encoder?: number | null;
  readonly cross_attn_window_decoder?: number | null;
  readonly downsampling_by_pooling?: string | null;
  /** Hash n-gram sizes (a list, or the reference's comma-separated string); null = no hash tables. */
  readonly encoder_hash_byte_group_size?: readonly number[] | string | null;
  readonly encoder_hash_byte_group_vocab?: number;
  readonly encoder_hash_byte_group_nb_functions?: number;
  readonly encoder_enable_byte_ngrams?: boolean;
  readonly encoder_ngram_to_size_str?: string | null;
  readonly [key: string]: unknown;
}

/** The sizes of a small BLT: everything {@link bltArgsOfSize} does not fix. */
export interface BltSizes {
  readonly dimGlobal: number;
  /** Width of the local encoder and decoder. */
  readonly dimLocal: number;
  readonly layersGlobal: number;
  readonly layersEncoder?: number;
  readonly layersDecoder?: number;
  /** Bytes per training row (the encoder's and the model's context). */
  readonly seqLen: number;
  /** The local models' attention window (default `seqLen`). */
  readonly window?: number;
  /** Rows of each hash n-gram table (default 1024). */
  readonly hashVocab?: number;
  /** Recorded as `patching_mode` when given (the model does not read it). */
  readonly patchingMode?: string;
}

/**
 * Reference arguments of a BLT of the released models' variant at the given sizes: 32-wide heads,
 * SwiGLU hidden size a multiple of 64, block-causal latent attention, cross-attention encoder and
 * decoder with pooling init and k = 2, max pooling, hash n-grams of 3 to 8 bytes (one function),
 * `current_depth` initialisation. What the trainer's presets, the study and the web page's training
 * tab build their models from.
 */
export function bltArgsOfSize(s: BltSizes): BltArgs {
  const localHeads = Math.max(1, s.dimLocal / 32);
  return {
    vocab_size: 260,
    dim_global: s.dimGlobal,
    dim_local_encoder: s.dimLocal,
    dim_local_decoder: s.dimLocal,
    n_layers_global: s.layersGlobal,
    n_layers_local_encoder: s.layersEncoder ?? 1,
    n_layers_local_decoder: s.layersDecoder ?? 1,
    n_heads_global: Math.max(1, s.dimGlobal / 32),
    n_heads_local_encoder: localHeads,
    n_heads_local_decoder: localHeads,
    ffn_dim_multiplier: 1.0,
    multiple_of: 64,
    rope_theta: 10000,
    max_seqlen: s.seqLen,
    max_encoder_seq_length: s.seqLen,
    local_attention_window_len: s.window ?? s.seqLen,
    attn_bias_type: 'block_causal',
    init_std_factor: 'current_depth',
    // Where the trainer's presets have always recorded it: the key order is part of a run's resume check.
    ...(s.patchingMode !== undefined ? { patching_mode: s.patchingMode } : {}),
    use_local_encoder_transformer: true,
    cross_attn_encoder: true,
    cross_attn_decoder: true,
    cross_attn_init_by_pooling: true,
    cross_attn_k: 2,
    cross_attn_nheads: localHeads,
    cross_attn_all_layers_encoder: false,
    cross_attn_all_layers_decoder: true,
    downsampling_by_pooling: 'max',
    encoder_hash_byte_group_size: [3, 4, 5, 6, 7, 8],
    encoder_hash_byte_group_vocab: s.hashVocab ?? 1024,
    encoder_hash_byte_group_nb_functions: 1,
    eos_id: 2,
  };
}

/** The component configurations derived from {@link BltArgs} (the reference's `create_*` functions). */
export interface ResolvedBltArgs {
  readonly vocabSize: number;
  readonly eosId: number;
  /** `local_attention_window_len` of the local self-attention (undefined = unlimited). */
  readonly localWindow: number | undefined;
  readonly encoder: LocalEncoderConfig;
  readonly global: GlobalTransformerConfig;
  readonly decoder: LocalDecoderConfig;
}

const INIT_FACTORS: readonly string[] = ['disabled', 'current_depth', 'global_depth', 'dim_ratio'];

/**
 * Validates reference arguments and derives the configuration of each component.
 *
 * @param args - reference arguments
 * @returns the resolved configuration
 * @throws {BltError} `CONFIG_MISMATCH` naming the bad or unsupported argument
 */
export function resolveBltArgs(args: BltArgs): ResolvedBltArgs {
  if (typeof args !== 'object' || args === null) throw new BltError('CONFIG_MISMATCH', 'BLT args must be an object');
  const bad = (field: string, why: string) => new BltError('CONFIG_MISMATCH', `BLT args: ${field} ${why}`);
  const int = (field: keyof BltArgs & string, fallback?: number, min = 1): number => {
    const v = args[field] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw bad(field, `must be an integer >= ${min}, got ${String(v)}`);
    return v;
  };
  const optInt = (field: keyof BltArgs & string): number | undefined => (args[field] == null ? undefined : int(field));
  const flag = (field: keyof BltArgs & string, fallback: boolean): boolean => {
    const v = args[field] ?? fallback;
    if (typeof v !== 'boolean') throw bad(field, `must be a boolean, got ${String(v)}`);
    return v;
  };
  const require = (field: keyof BltArgs & string, fallback: boolean, wanted: boolean) => {
    if (flag(field, fallback) !== wanted) throw bad(field, `must be ${wanted}: only the released BLT variant is supported`);
  };
  // Reference defaults (ByteLatentTransformerArgs / BaseTransformerArgs).
  require('cross_attn_encoder', false, true);
  require('cross_attn_decoder', false, true);
  require('cross_attn_init_by_pooling', false, true);
  require('use_rope', true, true);
  if (flag('encoder_enable_byte_ngrams', false) || args.encoder_ngram_to_size_str != null) {
    throw bad('encoder_enable_byte_ngrams', 'frequency n-gram tables are not supported (dead code in the reference, architecture §2.4)');
  }
  if ((args.downsampling_by_pooling ?? null) !== 'max')
    throw bad('downsampling_by_pooling', `must be "max", got ${String(args.downsampling_by_pooling)}`);
  if (args.patching_mode === '') throw bad('patching_mode', 'must not be "" (the BOE-prefixed static variant is not supported)');
  const attnProblem = referenceAttentionProblem(args['attn_impl'], 'local_block_causal');
  if (attnProblem) throw bad('attn_impl', attnProblem);

  const vocabSize = int('vocab_size', -1) + (args.pm_size ?? 0);
  const dimEnc = int('dim_local_encoder', 512);
  const dimDec = int('dim_local_decoder', 512);
  const dimGlobal = int('dim_global', 512);
  const k = int('cross_attn_k');
  const crossHeads = int('cross_attn_nheads');
  // get_encoder_dim_token_emb: the width of the rows the encoder's patch projection reshapes to.
  const dimToken =
    args.dim_token != null
      ? int('dim_token')
      : flag('use_local_encoder_transformer', false)
        ? dimEnc
        : Math.trunc(dimGlobal / (args.patch_size ?? NaN));
  if (dimToken !== dimEnc) throw bad('dim_token', `(the encoder token width, ${dimToken}) must equal dim_local_encoder (${dimEnc})`);
  if (dimDec !== dimEnc)
    throw bad('dim_local_decoder', `(${dimDec}) must equal dim_local_encoder (${dimEnc}): the decoder reads the encoder's byte states`);
  const factor = String(args.init_std_factor ?? 'disabled');
  if (!INIT_FACTORS.includes(factor)) throw bad('init_std_factor', `must be one of ${INIT_FACTORS.join(', ')}, got ${factor}`);
  const biasType = args.attn_bias_type ?? 'causal';
  if (biasType !== 'causal' && biasType !== 'block_causal')
    throw bad('attn_bias_type', `must be "causal" or "block_causal" for the global transformer, got ${biasType}`);

  let hash: HashNgramConfig | null = null;
  const sizes = args.encoder_hash_byte_group_size;
  if (sizes != null) {
    const list =
      typeof sizes === 'string'
        ? sizes
            .split(',')
            .filter((s) => s.length > 0)
            .map(Number)
        : [...sizes];
    hash = {
      groupSizes: list,
      numFunctions: int('encoder_hash_byte_group_nb_functions', 3),
      vocabSize: int('encoder_hash_byte_group_vocab', 30000),
    };
  }
  const common = {
    nKvHeads: optInt('n_kv_heads'),
    headDim: optInt('head_dim'),
    multipleOf: int('multiple_of', 256),
    ffnDimMultiplier: args.ffn_dim_multiplier === undefined ? 1.0 : args.ffn_dim_multiplier,
    normEps: args.norm_eps ?? 1e-5,
    ropeTheta: args.rope_theta ?? 10000,
    initStdFactor: factor as InitStdFactor,
  };
  const localMax = int('max_encoder_seq_length');
  const eosId = int('eos_id', 2, 0);
  return {
    vocabSize,
    eosId,
    localWindow: optInt('local_attention_window_len'),
    encoder: {
      ...common,
      dim: dimEnc,
      nLayers: int('n_layers_local_encoder', 8),
      nHeads: int('n_heads_local_encoder', 8),
      maxSeqLen: localMax,
      vocabSize,
      crossAttnK: k,
      crossAttnNHeads: crossHeads,
      crossAttnAllLayers: flag('cross_attn_all_layers_encoder', false),
      crossAttnWindow: optInt('cross_attn_window_encoder'),
      hash,
    },
    global: {
      ...common,
      nKvHeads: optInt('n_kv_heads_global'),
      dim: dimGlobal,
      nLayers: int('n_layers_global', 8),
      nHeads: int('n_heads_global', 8),
      maxSeqLen: int('max_seqlen', 1024),
      dimTokenEmb: dimToken * k,
      splitDocuments: biasType === 'block_causal',
      eosId,
    },
    decoder: {
      ...common,
      dim: dimDec,
      nLayers: int('n_layers_local_decoder', 8),
      nHeads: int('n_heads_local_decoder', 8),
      maxSeqLen: localMax,
      vocabSize,
      dimPatchEmb: dimGlobal,
      crossAttnK: k,
      crossAttnNHeads: crossHeads,
      crossAttnAllLayers: flag('cross_attn_all_layers_decoder', false),
      crossAttnWindow: optInt('cross_attn_window_decoder'),
    },
  };
}
