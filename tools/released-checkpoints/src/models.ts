// The released models' arguments (as the reference's pydantic classes dump them) and the state-dict
// tensors the reference builds from those arguments. Sources: docs architecture §4.1, §10 (hyper-parameters of
// facebook/blt-1b, blt-7b, blt-entropy), the reference's `ByteLatentTransformerArgs`,
// `LMTransformerArgs`, `BaseTransformerArgs` (field order and defaults), `create_local_encoder`,
// `create_local_decoder`, `create_global_transformer`, `LocalEncoder/LocalDecoder/GlobalTransformer/
// LMTransformer.__init__` (which modules exist, in registration order = state-dict order).
import { PyFloat, type PyValue } from './pyjson.js';

/** A model Meta released. */
export type ReleasedModelName = 'blt-1b' | 'blt-7b' | 'blt-entropy';
export const RELEASED_MODELS: readonly ReleasedModelName[] = ['blt-1b', 'blt-7b', 'blt-entropy'];

/** `full`: the released sizes. `tiny`: the same structure (every module, projection and table kind) at toy sizes. */
export type Preset = 'full' | 'tiny';
export const PRESETS: readonly Preset[] = ['full', 'tiny'];

/** How a tensor's random values are drawn. */
export type TensorInit =
  /** uniform with this standard deviation (Linear: 1/sqrt(fan_in); embeddings: 1/sqrt(dim)) */
  | { readonly kind: 'uniform'; readonly std: number }
  /** RMSNorm weights */
  | { readonly kind: 'ones' };

/** One tensor of a reference state dict. */
export interface ReferenceTensor {
  /** The state-dict key, e.g. `local_encoder.layers.0.attention.wq.weight`. */
  readonly name: string;
  readonly shape: readonly number[];
  readonly init: TensorInit;
  /**
   * Which model the tensor belongs to: values are drawn from (seed, component, name), so the same
   * tensor has the same values in every layout (and the entropy model inside a BLT folder equals the
   * standalone one).
   */
  readonly component: 'blt' | 'entropy';
}

/** The hyper-parameters that shape a BLT model's tensors. */
interface BltShape {
  readonly dimLocalEncoder: number;
  readonly dimLocalDecoder: number;
  readonly dimGlobal: number;
  readonly nLayersLocalEncoder: number;
  readonly nLayersLocalDecoder: number;
  readonly nLayersGlobal: number;
  readonly nHeadsLocalEncoder: number;
  readonly nHeadsLocalDecoder: number;
  readonly nHeadsGlobal: number;
  readonly crossAttnK: number;
  readonly crossAttnNHeads: number;
  readonly hashVocab: number;
  readonly multipleOf: number;
}

const BLT_SHAPES: Readonly<Record<'blt-1b' | 'blt-7b', Record<Preset, BltShape>>> = {
  // Spec §10.1 (HF mirror configs + converter + paper).
  'blt-1b': {
    full: {
      dimLocalEncoder: 1024,
      dimLocalDecoder: 1024,
      dimGlobal: 2048,
      nLayersLocalEncoder: 1,
      nLayersLocalDecoder: 9,
      nLayersGlobal: 25,
      nHeadsLocalEncoder: 16,
      nHeadsLocalDecoder: 16,
      nHeadsGlobal: 16,
      crossAttnK: 2,
      crossAttnNHeads: 16,
      hashVocab: 500002,
      multipleOf: 256,
    },
    // k·d_E = d_G as in 1B: no global input projection.
    tiny: {
      dimLocalEncoder: 32,
      dimLocalDecoder: 32,
      dimGlobal: 64,
      nLayersLocalEncoder: 1,
      nLayersLocalDecoder: 2,
      nLayersGlobal: 2,
      nHeadsLocalEncoder: 2,
      nHeadsLocalDecoder: 2,
      nHeadsGlobal: 2,
      crossAttnK: 2,
      crossAttnNHeads: 2,
      hashVocab: 1002,
      multipleOf: 32,
    },
  },
  'blt-7b': {
    full: {
      dimLocalEncoder: 1280,
      dimLocalDecoder: 1280,
      dimGlobal: 4096,
      nLayersLocalEncoder: 1,
      nLayersLocalDecoder: 6,
      nLayersGlobal: 32,
      nHeadsLocalEncoder: 20,
      nHeadsLocalDecoder: 20,
      nHeadsGlobal: 32,
      crossAttnK: 4,
      crossAttnNHeads: 20,
      hashVocab: 500002,
      multipleOf: 256,
    },
    // k·d_E = 160 ≠ d_G = 128 as in 7B (5120 ≠ 4096): global token_embedding_projection exists.
    tiny: {
      dimLocalEncoder: 40,
      dimLocalDecoder: 40,
      dimGlobal: 128,
      nLayersLocalEncoder: 1,
      nLayersLocalDecoder: 2,
      nLayersGlobal: 2,
      nHeadsLocalEncoder: 2,
      nHeadsLocalDecoder: 2,
      nHeadsGlobal: 4,
      crossAttnK: 4,
      crossAttnNHeads: 2,
      hashVocab: 1002,
      multipleOf: 32,
    },
  },
};

interface EntropyShape {
  readonly dim: number;
  readonly nLayers: number;
  readonly nHeads: number;
}

// Spec §4.1 / configs/entropy_model.yaml. The tiny one keeps multiple_of 256: `load_entropy_model`
// does not pass multiple_of, so the reference always builds the FFN with 256.
const ENTROPY_SHAPES: Readonly<Record<Preset, EntropyShape>> = {
  full: { dim: 768, nLayers: 14, nHeads: 12 },
  tiny: { dim: 32, nLayers: 2, nHeads: 2 },
};

/** The released patcher threshold (architecture §3.3, §10.1). */
export const RELEASED_ENTROPY_THRESHOLD = 1.335442066192627;
const EOS_ID = 2;

/** `BaseTransformerArgs` fields in declaration order (pydantic dumps them first). */
function baseTransformerArgs(v: {
  dim: number;
  nLayers: number;
  nHeads: number;
  ffnDimMultiplier: PyFloat | null;
  multipleOf: number;
  ropeTheta: number;
  maxSeqlen: number;
  attnImpl: string | null;
  attnBiasType: string | null;
}): Record<string, PyValue> {
  return {
    dim: v.dim,
    n_layers: v.nLayers,
    head_dim: null,
    n_heads: v.nHeads,
    n_kv_heads: null,
    ffn_dim_multiplier: v.ffnDimMultiplier,
    multiple_of: v.multipleOf,
    norm_eps: new PyFloat(1e-5),
    rope_theta: new PyFloat(v.ropeTheta),
    rope_use_fp32_in_outer_product: false,
    init_base_std: null,
    init_std_factor: 'disabled',
    max_seqlen: v.maxSeqlen,
    attn_impl: v.attnImpl,
    attn_bias_type: v.attnBiasType,
    eos_id: EOS_ID,
  };
}

/**
 * `ByteLatentTransformerArgs` of a released BLT, every field in the order pydantic dumps it. Values
 * that shape tensors or the forward pass come from architecture §10.1; the generic `dim`/`n_layers`/`n_heads`
 * (read by no module that makes a tensor) are set to the global transformer's, the rest are the
 * reference defaults.
 */
export function bltModelArgs(model: 'blt-1b' | 'blt-7b', preset: Preset): Record<string, PyValue> {
  const s = BLT_SHAPES[model][preset];
  return {
    ...baseTransformerArgs({
      dim: s.dimGlobal,
      nLayers: s.nLayersGlobal,
      nHeads: s.nHeadsGlobal,
      ffnDimMultiplier: new PyFloat(1.0),
      multipleOf: s.multipleOf,
      ropeTheta: 500000,
      maxSeqlen: 4096,
      attnImpl: 'xformers',
      attnBiasType: 'block_causal',
    }),
    seed: 42,
    vocab_size: 260,
    weight_tying: false,
    patch_in_forward: false,
    dim_token: null,
    dim_global: s.dimGlobal,
    dim_local_decoder: s.dimLocalDecoder,
    dim_local_encoder: s.dimLocalEncoder,
    n_layers_global: s.nLayersGlobal,
    n_layers_local_decoder: s.nLayersLocalDecoder,
    n_layers_local_encoder: s.nLayersLocalEncoder,
    patch_size: new PyFloat(4),
    patching_mode: 'entropy',
    patching_threshold: new PyFloat(RELEASED_ENTROPY_THRESHOLD),
    patching_threshold_add: null,
    monotonicity: false,
    patching_batch_size: 1,
    patching_device: 'cuda',
    max_patch_length: null,
    tie_local_encoder_decoder_logits: false,
    use_local_encoder_transformer: true,
    encoder_lm_loss: false,
    max_encoder_seq_length: 24576,
    pad_to_max_length: true,
    encoder_enable_byte_ngrams: false,
    encoder_enable_byte_group_hash: false,
    ngram_vocab_sizes: null,
    cross_attn_encoder: true,
    cross_attn_decoder: true,
    cross_attn_window_encoder: null,
    cross_attn_window_decoder: null,
    cross_attn_k: s.crossAttnK,
    cross_attn_nheads: s.crossAttnNHeads,
    cross_attn_all_layers_decoder: true,
    cross_attn_all_layers_encoder: false,
    cross_attn_use_flex_attention: true,
    cross_attn_init_by_pooling: true,
    encoder_hash_byte_group_size: [3, 4, 5, 6, 7, 8],
    encoder_hash_byte_group_vocab: s.hashVocab,
    encoder_hash_byte_group_nb_functions: 1,
    log_patch_lengths: false,
    non_linearity: 'swiglu',
    use_rope: true,
    recompute_fc1_out: false,
    recompute_fc3_out: false,
    recompute_attn: true,
    custom_bwd: false,
    layer_ckpt: 'all',
    init_use_gaussian: true,
    init_use_depth: 'current',
    alpha_depth: 'disabled',
    max_length: 2048,
    norm_affine: true,
    pre_norm: true,
    norm_type: 'rmsnorm',
    // `dropout: float = 0`: an int default, but every released dump went through validation (0.0).
    dropout: new PyFloat(0),
    output_size: -1,
    architecture: 'vanilla',
    share_encoder_decoder_emb: true,
    global_local_decoder_residual_layer: null,
    tokenize_with_bpe_delimiter: false,
    patching_thresholds_str: null,
    tie_local_encoder_decoder: false,
    encoder_preds_low_entropy_toks: null,
    encoder_preds_random_toks: null,
    dim_token_emb: null,
    dim_patch_emb: null,
    encoder_ngram_table_dir: null,
    encoder_ngram_to_size_str: null,
    entropy_model_checkpoint_dir: null,
    entropy_model_is_ngram_model: false,
    downsampling_by_pooling: 'max',
    n_heads_global: s.nHeadsGlobal,
    n_heads_local_decoder: s.nHeadsLocalDecoder,
    n_heads_local_encoder: s.nHeadsLocalEncoder,
    n_kv_heads_global: null,
    conv_kernel_size: null,
    local_attention_window_len: 512,
    sequence_parallel: false,
    loss_parallel: false,
    fuse_sequence_parallel: false,
    use_fsdp: true,
    attn_to_keep: 'all',
    pm_size: 0,
    full_logging_n_layers: 4,
  };
}

/**
 * `LMTransformerArgs` of the entropy model. `params.json` holds what `configs/entropy_model.yaml`
 * sets; `load_entropy_model` rebuilds the args from dim, n_layers, n_heads, max_seqlen,
 * ffn_dim_multiplier and vocab_size and forces xformers / local_block_causal / window 512, which is
 * also what the hub `config.json` of facebook/blt-entropy holds.
 */
export function entropyModelArgs(preset: Preset): Record<string, PyValue> {
  const s = ENTROPY_SHAPES[preset];
  return {
    ...baseTransformerArgs({
      dim: s.dim,
      nLayers: s.nLayers,
      nHeads: s.nHeads,
      ffnDimMultiplier: new PyFloat(1.0),
      multipleOf: 256,
      ropeTheta: 10000,
      maxSeqlen: 8192,
      attnImpl: 'xformers',
      attnBiasType: 'local_block_causal',
    }),
    seed: 42,
    vocab_size: 260,
    weight_tying: false,
    sliding_window: 512,
  };
}

/** `PatcherArgs` dump. */
function patcherArgs(mode: 'entropy' | 'byte', patchSize: number): Record<string, PyValue> {
  return {
    patching_mode: mode,
    patching_device: 'cuda',
    entropy_model_checkpoint_dir: null,
    realtime_patching: false,
    threshold: new PyFloat(RELEASED_ENTROPY_THRESHOLD),
    threshold_add: null,
    max_patch_length: null,
    patch_size: new PyFloat(patchSize),
    patching_batch_size: 1,
    device: 'cuda',
    monotonicity: false,
    log_time: false,
  };
}

/** `DataloaderArgs` dump. */
function dataloaderArgs(v: {
  seqLen: number;
  maxEncoderSeqLength: number;
  addPatches: boolean;
  patcher: Record<string, PyValue>;
}): Record<string, PyValue> {
  return {
    s3_profile: null,
    root_dir: null,
    sources: {},
    batch_size: 2,
    seq_len: v.seqLen,
    seed: 42,
    add_bos: true,
    add_eos: true,
    load_async: true,
    async_persist_type: 'exact',
    prefetch_size: 64,
    preprocess_dir: null,
    dataset_files: null,
    entropy_model_name: 'transformer_100m',
    arrow_batch_size: 20,
    buffer_size: 64,
    file_format: 'arrow',
    pad_to_max_length: true,
    max_encoder_seq_length: v.maxEncoderSeqLength,
    enable_byte_ngrams: false,
    add_patches: v.addPatches,
    tokenizer_args: { name: 'blt', init_kwargs: null },
    patcher_args: v.patcher,
  };
}

/** A `TrainArgs` dump around a model's args (the reference's `params.json`). */
function trainArgs(v: {
  model: Record<string, PyValue> | null;
  entropyModel: Record<string, PyValue> | null;
  trainEntropyModel: boolean;
  data: Record<string, PyValue>;
}): Record<string, PyValue> {
  return {
    name: 'lingua',
    dump_dir: '',
    seed: 42,
    debug_dynamo: false,
    grad_acc_steps: 1,
    gc_collect_freq: 1000,
    probe_freq: null,
    steps: 1000,
    max_steps: null,
    data: v.data,
    optim: {
      lr: new PyFloat(3e-4),
      weight_decay: new PyFloat(0.1),
      epsilon: new PyFloat(1e-8),
      beta1: new PyFloat(0.9),
      beta2: new PyFloat(0.95),
      clip: new PyFloat(1.0),
      scheduler: 'cosine',
      warmup: 2000,
      lr_min_ratio: new PyFloat(0.1),
      cycle_length: new PyFloat(1.0),
      cosine_theta: new PyFloat(1.0),
      annealing_step: 1000,
      decay_fraction: new PyFloat(0.1),
      exp_factor: new PyFloat(0.5),
    },
    model: v.model,
    entropy_model: v.entropyModel,
    train_entropy_model: v.trainEntropyModel,
    distributed: {
      dp_shard: 1,
      dp_replicate: 1,
      tp_size: 1,
      selective_activation_checkpointing: false,
      compile: false,
      fsdp_type: 'full_shard',
      model_dtype: 'bf16',
      float8_recipe: null,
      float8_filter: 'layers\\.[0-9]+\\.',
      matmul_allow_tf32: false,
      allow_bf16_reduced_precision_reduction: true,
      detect_anomaly: false,
      compile_cache_size_limit: 8,
      spawn_method: 'forkserver',
    },
    env: {
      MKL_SERVICE_FORCE_INTEL: 'GNU',
      OMP_NUM_THREADS: '1',
      MKL_NUM_THREADS: '1',
      ENABLE_INTRA_NODE_COMM: '1',
      TORCH_NCCL_AVOID_RECORD_STREAMS: '1',
      NCCL_IB_TIMEOUT: '22',
      NCCL_DEBUG: 'INFO',
      TORCH_NCCL_ASYNC_ERROR_HANDLING: '1',
    },
    checkpoint: {
      dump: { every: 1000, keep: 0 },
      eval: { every: 1000, keep: 0 },
      path: null,
      init_ckpt_path: null,
      continue_training_from_init: false,
      s3_profile: null,
    },
    profiling: { run: false, trace_folder: 'profiling', mem_warmup: 100, mem_steps: 2, profile_warmup: 102, profile_steps: 2 },
    logging: { freq: 10, acc_freq: null, wandb: null },
    async_eval_gpus: null,
    eval: null,
    eval_on_gpus: null,
  };
}

/** `params.json` of `blt_1b/` / `blt_7b/` (also the hub layout's `train_args.json`). */
export function bltTrainArgs(model: 'blt-1b' | 'blt-7b', preset: Preset): Record<string, PyValue> {
  const args = bltModelArgs(model, preset);
  return trainArgs({
    model: args,
    entropyModel: null,
    trainEntropyModel: false,
    data: dataloaderArgs({ seqLen: 4096, maxEncoderSeqLength: 24576, addPatches: true, patcher: patcherArgs('entropy', 4) }),
  });
}

/** `params.json` of `entropy_model/` (configs/entropy_model.yaml: byte patching, 8192-byte rows). */
export function entropyTrainArgs(preset: Preset): Record<string, PyValue> {
  return trainArgs({
    model: null,
    entropyModel: entropyModelArgs(preset),
    trainEntropyModel: true,
    data: dataloaderArgs({ seqLen: 8192, maxEncoderSeqLength: 8192, addPatches: false, patcher: patcherArgs('byte', 4.5) }),
  });
}

// ---------------------------------------------------------------------------------------------------
// Tensors, derived from the (plain JSON) args the way the reference's constructors do.

type Args = Readonly<Record<string, unknown>>;

function num(args: Args, key: string): number {
  const v = args[key];
  if (typeof v !== 'number') throw new Error(`args.${key} must be a number, got ${JSON.stringify(v)}`);
  return v;
}
function optNum(args: Args, key: string): number | null {
  const v = args[key];
  if (v === null || v === undefined) return null;
  return num(args, key);
}
function bool(args: Args, key: string): boolean {
  return args[key] === true;
}

/** SwiGLU hidden size: `multiple_of * ceil(int(ffn_dim_multiplier * int(2 * 4d / 3)) / multiple_of)`. */
export function ffnHidden(dim: number, multipleOf: number, ffnDimMultiplier: number | null): number {
  let hidden = Math.trunc((2 * 4 * dim) / 3);
  if (ffnDimMultiplier !== null) hidden = Math.trunc(ffnDimMultiplier * hidden);
  return multipleOf * Math.ceil(hidden / multipleOf);
}

class TensorList {
  readonly tensors: ReferenceTensor[] = [];
  constructor(private readonly component: 'blt' | 'entropy') {}
  linear(name: string, out: number, inp: number): void {
    this.tensors.push({
      name: `${name}.weight`,
      shape: [out, inp],
      init: { kind: 'uniform', std: 1 / Math.sqrt(inp) },
      component: this.component,
    });
  }
  embedding(name: string, rows: number, dim: number): void {
    this.tensors.push({
      name: `${name}.weight`,
      shape: [rows, dim],
      init: { kind: 'uniform', std: 1 / Math.sqrt(dim) },
      component: this.component,
    });
  }
  norm(name: string, dim: number): void {
    this.tensors.push({ name: `${name}.weight`, shape: [dim], init: { kind: 'ones' }, component: this.component });
  }
  /** `TransformerBlock`: attention (wq, wk, wv, wo), feed_forward (w1, w3, w2), attention_norm, ffn_norm. */
  block(prefix: string, dim: number, nHeads: number, nKvHeads: number | null, headDim: number | null, ffn: number): void {
    const hd = headDim ?? dim / nHeads;
    const kv = nKvHeads ?? nHeads;
    this.linear(`${prefix}.attention.wq`, nHeads * hd, dim);
    this.linear(`${prefix}.attention.wk`, kv * hd, dim);
    this.linear(`${prefix}.attention.wv`, kv * hd, dim);
    this.linear(`${prefix}.attention.wo`, dim, nHeads * hd);
    this.linear(`${prefix}.feed_forward.w1`, ffn, dim);
    this.linear(`${prefix}.feed_forward.w3`, ffn, dim);
    this.linear(`${prefix}.feed_forward.w2`, dim, ffn);
    this.norm(`${prefix}.attention_norm`, dim);
    this.norm(`${prefix}.ffn_norm`, dim);
  }
  /** `CrossAttention`: cross_attn_norm_q, cross_attn_norm_kv, wq, wk, wv, wo (all dim × dim). */
  crossAttention(prefix: string, dim: number): void {
    this.norm(`${prefix}.cross_attn_norm_q`, dim);
    this.norm(`${prefix}.cross_attn_norm_kv`, dim);
    for (const w of ['wq', 'wk', 'wv', 'wo']) this.linear(`${prefix}.${w}`, dim, dim);
  }
}

/** The state dict of `ByteLatentTransformer(args)`, in `state_dict()` order. */
export function bltTensors(args: Args): ReferenceTensor[] {
  const t = new TensorList('blt');
  const vocab = num(args, 'vocab_size') + num(args, 'pm_size');
  const multipleOf = num(args, 'multiple_of');
  const ffnMult = optNum(args, 'ffn_dim_multiplier');
  const headDim = optNum(args, 'head_dim');
  const nKv = optNum(args, 'n_kv_heads');
  const dimGlobal = num(args, 'dim_global');
  const k = num(args, 'cross_attn_k');
  const crossEnc = bool(args, 'cross_attn_encoder');
  const crossDec = bool(args, 'cross_attn_decoder');
  const initByPooling = bool(args, 'cross_attn_init_by_pooling');
  if (!crossEnc || !crossDec) throw new Error('only the released structure (cross-attention in encoder and decoder) is generated');

  // get_encoder_dim_token_emb / get_decoder_dim_token_emb (share_encoder_decoder_emb)
  const dimToken = optNum(args, 'dim_token');
  const encTokenEmb =
    dimToken ?? (bool(args, 'use_local_encoder_transformer') ? num(args, 'dim_local_encoder') : dimGlobal / num(args, 'patch_size'));
  const decTokenEmb = bool(args, 'share_encoder_decoder_emb') ? encTokenEmb : (dimToken ?? num(args, 'dim_local_decoder'));

  // Local encoder: LocalModelBase (layers, token/patch projections), tok_embeddings, cross_attn_layers.
  const dE = num(args, 'dim_local_encoder');
  const ffnE = ffnHidden(dE, multipleOf, ffnMult);
  for (let i = 0; i < num(args, 'n_layers_local_encoder'); i++) {
    t.block(`local_encoder.layers.${i}`, dE, num(args, 'n_heads_local_encoder'), nKv, headDim, ffnE);
  }
  if (encTokenEmb !== dE) t.linear('local_encoder.token_embedding_projection', dE, encTokenEmb);
  const encPatchEmb = initByPooling ? dE : dimGlobal; // get_encoder_dim_patch_emb
  if (encPatchEmb !== dE || initByPooling) t.linear('local_encoder.patch_embedding_projection', encTokenEmb * k, encPatchEmb);
  t.embedding('local_encoder.tok_embeddings', vocab, dE);
  const encCross = bool(args, 'cross_attn_all_layers_encoder') ? num(args, 'n_layers_local_encoder') : 1;
  for (let i = 0; i < encCross; i++) t.crossAttention(`local_encoder.cross_attn_layers.${i}`, dE);

  // Global transformer: layers, then token_embedding_projection when k·d_token ≠ d_G.
  const ffnG = ffnHidden(dimGlobal, multipleOf, ffnMult);
  for (let i = 0; i < num(args, 'n_layers_global'); i++) {
    t.block(`global_transformer.layers.${i}`, dimGlobal, num(args, 'n_heads_global'), optNum(args, 'n_kv_heads_global'), headDim, ffnG);
  }
  const globalIn = encTokenEmb * k; // get_global_dim_patch_emb with cross_attn_encoder
  if (globalIn !== dimGlobal) t.linear('global_transformer.token_embedding_projection', dimGlobal, globalIn);

  // Local decoder: layers, projections, norm, cross_attn_layers, output.
  const dD = num(args, 'dim_local_decoder');
  const ffnD = ffnHidden(dD, multipleOf, ffnMult);
  for (let i = 0; i < num(args, 'n_layers_local_decoder'); i++) {
    t.block(`local_decoder.layers.${i}`, dD, num(args, 'n_heads_local_decoder'), nKv, headDim, ffnD);
  }
  if (decTokenEmb !== dD) t.linear('local_decoder.token_embedding_projection', dD, decTokenEmb);
  // dim_patch_emb = dim_global; created on a width mismatch (cross_attn_init_by_pooling is off here).
  if (dimGlobal !== dD) t.linear('local_decoder.patch_embedding_projection', decTokenEmb * k, dimGlobal);
  t.norm('local_decoder.norm', dD);
  const decCross = bool(args, 'cross_attn_all_layers_decoder') ? num(args, 'n_layers_local_decoder') : 1;
  for (let i = 0; i < decCross; i++) t.crossAttention(`local_decoder.cross_attn_layers.${i}`, dD);
  t.linear('local_decoder.output', vocab, dD);

  // Hash n-gram tables: nb_functions × group sizes, each [vocab, d_E].
  const sizes = args['encoder_hash_byte_group_size'];
  if (!Array.isArray(sizes)) throw new Error('args.encoder_hash_byte_group_size must be a list');
  const tables = num(args, 'encoder_hash_byte_group_nb_functions') * sizes.length;
  for (let i = 0; i < tables; i++) t.embedding(`encoder_hash_tok_embedding.${i}`, num(args, 'encoder_hash_byte_group_vocab'), dE);
  return t.tensors;
}

/** The state dict of `LMTransformer(args)` (the entropy model), in `state_dict()` order. */
export function entropyTensors(args: Args): ReferenceTensor[] {
  const t = new TensorList('entropy');
  const dim = num(args, 'dim');
  const ffn = ffnHidden(dim, num(args, 'multiple_of'), optNum(args, 'ffn_dim_multiplier'));
  for (let i = 0; i < num(args, 'n_layers'); i++) {
    t.block(`layers.${i}`, dim, num(args, 'n_heads'), optNum(args, 'n_kv_heads'), optNum(args, 'head_dim'), ffn);
  }
  t.embedding('tok_embeddings', num(args, 'vocab_size'), dim);
  t.norm('norm', dim);
  t.linear('output', num(args, 'vocab_size'), dim);
  return t.tensors;
}

/** Elements of a shape. */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
