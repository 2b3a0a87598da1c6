// Which files each published layout has, with which names, configurations and tensors.
import {
  bltModelArgs,
  bltTensors,
  bltTrainArgs,
  entropyModelArgs,
  entropyTensors,
  entropyTrainArgs,
  type Preset,
  type ReferenceTensor,
  type ReleasedModelName,
} from './models.js';
import { TRANSFORMERS_HASH_TABLE, transformersTensorName } from '@bytelatent/nn';
import { planPth, type PthFlavor, type PthPlan } from './pth-writer.js';
import { PyFloat, pydanticJson, pythonJson, toPlainJson, type PyValue } from './pyjson.js';
import { safetensorsFileBytes } from './safetensors-writer.js';
import { asOutput, outputByteLength, stacked, type OutputTensor } from './tensors.js';
import type { Dtype } from './values.js';

/**
 * - `consolidated`: the reference's own download (facebook/blt → `hf-weights/`): `blt_1b/` (or
 *   `blt_7b/`) and `entropy_model/`, each `params.json` + `consolidated.pth`.
 * - `hub`: `PyTorchModelHubMixin.save_pretrained` (facebook/blt-1b, blt-7b, blt-entropy): `config.json`
 *   `{"args": ...}` + `model.safetensors`; a BLT adds `train_args.json` and `entropy_model/` (consolidated).
 * - `transformers`: the output of transformers' `convert_blt_weights_to_hf.py` (`model_type: "blt"`),
 *   saved the way `save_pretrained` shards: `model.safetensors`, or `model-0000i-of-0000n.safetensors`
 *   + `model.safetensors.index.json` when larger than the shard size.
 */
export type Layout = 'consolidated' | 'hub' | 'transformers';
export const LAYOUTS: readonly Layout[] = ['consolidated', 'hub', 'transformers'];

/** One file of a planned checkpoint (path relative to the output folder, `/`-separated). */
export type PlannedFile =
  | { readonly kind: 'text'; readonly path: string; readonly text: string; readonly bytes: number }
  | {
      readonly kind: 'safetensors';
      readonly path: string;
      readonly tensors: readonly OutputTensor[];
      readonly metadata: Readonly<Record<string, string>> | undefined;
      readonly bytes: number;
    }
  | { readonly kind: 'pth'; readonly path: string; readonly plan: PthPlan; readonly bytes: number };

export interface PlanOptions {
  readonly model: ReleasedModelName;
  readonly layout: Layout;
  readonly preset: Preset;
  readonly dtype: Dtype;
  /** Include `entropy_model/` next to a BLT (consolidated and hub layouts; default true). */
  readonly withEntropy?: boolean;
  /** transformers layout: largest shard in bytes (default 5e9, transformers' "5GB"). */
  readonly shardBytes?: number;
  /** `.pth` records of torch >= 2.1 (default) or of older torch. */
  readonly pthFlavor?: PthFlavor;
}

export interface CheckpointPlan {
  readonly files: readonly PlannedFile[];
  /** Every reference tensor written (each once, whatever its file or name). */
  readonly tensors: readonly ReferenceTensor[];
  readonly totalBytes: number;
}

const HUB_METADATA = { format: 'pt' } as const;

function textFile(path: string, text: string): PlannedFile {
  return { kind: 'text', path, text, bytes: new TextEncoder().encode(text).byteLength };
}

function safetensorsFile(
  path: string,
  tensors: readonly OutputTensor[],
  dtype: Dtype,
  metadata: Readonly<Record<string, string>> | undefined,
): PlannedFile {
  return { kind: 'safetensors', path, tensors, metadata, bytes: safetensorsFileBytes(tensors, dtype, metadata) };
}

function pthFile(path: string, tensors: readonly OutputTensor[], dtype: Dtype, flavor: PthFlavor): PlannedFile {
  const base = path.slice(path.lastIndexOf('/') + 1);
  const plan = planPth(base.replace(/\.[^.]*$/, ''), tensors, dtype, flavor);
  return { kind: 'pth', path, plan, bytes: plan.totalBytes };
}

/** `entropy_model/params.json` + `consolidated.pth`. */
function consolidatedEntropy(folder: string, o: PlanOptions): PlannedFile[] {
  const args = toPlainJson(entropyModelArgs(o.preset)) as Record<string, unknown>;
  return [
    textFile(`${folder}params.json`, pydanticJson(entropyTrainArgs(o.preset))),
    pthFile(
      `${folder}consolidated.pth`,
      entropyTensors(args).map((t) => asOutput(t)),
      o.dtype,
      o.pthFlavor ?? 'torch2',
    ),
  ];
}

function bltFolderName(model: 'blt-1b' | 'blt-7b'): string {
  return model.replace('-', '_');
}

function intermediate(hidden: number, multipleOf: number): number {
  return multipleOf * Math.ceil(Math.trunc((8 * hidden) / 3) / multipleOf);
}

/**
 * The `config.json` the published converter (`merge_configurations`) writes from a hub `config.json`
 * and `entropy_model/params.json`, key for key, in its order.
 */
export function transformersConfig(model: 'blt-1b' | 'blt-7b', preset: Preset): Record<string, PyValue> {
  const a = bltModelArgs(model, preset);
  const entropyParams = entropyTrainArgs(preset);
  const e = entropyParams['entropy_model'] as Record<string, PyValue>;
  const patcher = (entropyParams['data'] as Record<string, PyValue>)['patcher_args'] as Record<string, PyValue>;
  const get = (o: Record<string, PyValue>, k: string, dflt: PyValue): PyValue => (k in o ? (o[k] as PyValue) : dflt);
  const n = (v: PyValue): number => (v instanceof PyFloat ? v.value : (v as number));
  const patchSize = get(patcher, 'patch_size', 8);
  const ropeDefault = new PyFloat(10000);
  const pHidden = n(get(e, 'dim', 512));
  const rope = { rope_type: 'default' };
  const encHidden = n(get(a, 'dim_local_encoder', 1024));
  const decHidden = n(get(a, 'dim_local_decoder', 1024));
  const gHidden = n(get(a, 'dim_global', 2048));
  const mult = n(get(a, 'multiple_of', 256));
  const maxEnc = get(a, 'max_encoder_seq_length', null) ?? get(a, 'max_seqlen', 1024);
  return {
    model_type: 'blt',
    vocab_size: get(a, 'vocab_size', 256),
    max_position_embeddings: get(a, 'max_seqlen', 1024),
    patch_in_forward: true,
    realtime_patching: true,
    patching_mode: 'entropy',
    patch_size: Math.trunc(n(patchSize)),
    patching_threshold: get(patcher, 'threshold', new PyFloat(0.5)),
    patching_threshold_add: get(patcher, 'threshold_add', new PyFloat(0)),
    max_patch_length: get(patcher, 'max_patch_length', null),
    patching_batch_size: get(patcher, 'patching_batch_size', 1),
    patching_device: get(patcher, 'patching_device', 'cuda'),
    monotonicity: get(patcher, 'monotonicity', false),
    cross_attn_k: get(a, 'cross_attn_k', 2),
    encoder_hash_byte_group_size: get(a, 'encoder_hash_byte_group_size', null),
    encoder_hash_byte_group_vocab: get(a, 'encoder_hash_byte_group_vocab', 30000),
    encoder_hash_byte_group_nb_functions: get(a, 'encoder_hash_byte_group_nb_functions', 3),
    pm_size: get(a, 'pm_size', 0),
    patcher_config: {
      vocab_size: Math.trunc(n(get(e, 'vocab_size', 256))),
      hidden_size: pHidden,
      num_hidden_layers: Math.trunc(n(get(e, 'n_layers', 8))),
      num_attention_heads: Math.trunc(n(get(e, 'n_heads', 8))),
      num_key_value_heads: get(e, 'n_kv_heads', null) === null ? null : Math.trunc(n(get(e, 'n_kv_heads', null))),
      max_position_embeddings: Math.trunc(n(get(e, 'max_seqlen', 1024))),
      norm_eps: get(e, 'norm_eps', new PyFloat(1e-5)),
      dropout: get(e, 'dropout', new PyFloat(0)),
      rope_theta: get(e, 'rope_theta', ropeDefault),
      attn_impl: get(e, 'attn_impl', 'sdpa'),
      attn_bias_type: get(e, 'attn_bias_type', 'causal'),
      intermediate_size: intermediate(pHidden, Math.trunc(n(get(e, 'multiple_of', 256)))),
    },
    encoder_config: {
      vocab_size: get(a, 'vocab_size', 256),
      cross_attn_all_layers: get(a, 'cross_attn_all_layers_encoder', false),
      cross_attn_k: get(a, 'cross_attn_k', 2),
      hidden_size_global: get(a, 'dim_global', 2048),
      pm_size: get(a, 'pm_size', 0),
      hidden_size: encHidden,
      num_attention_heads: get(a, 'n_heads_local_encoder', 16),
      num_key_value_heads: get(a, 'n_kv_heads', null),
      num_hidden_layers: get(a, 'n_layers_local_encoder', 1),
      norm_eps: get(a, 'norm_eps', new PyFloat(1e-5)),
      dropout: get(a, 'dropout', new PyFloat(0)),
      max_position_embeddings: maxEnc,
      rope_theta: get(a, 'rope_theta', ropeDefault),
      rope_scaling: rope,
      hidden_act: get(a, 'hidden_act', 'silu'),
      _attn_implementation: get(a, '_attn_implementation', 'sdpa'),
      intermediate_size: intermediate(encHidden, mult),
    },
    decoder_config: {
      vocab_size: get(a, 'vocab_size', 256),
      cross_attn_all_layers: get(a, 'cross_attn_all_layers_decoder', false),
      cross_attn_k: get(a, 'cross_attn_k', 2),
      hidden_size_global: get(a, 'dim_global', 2048),
      hidden_size: decHidden,
      num_attention_heads: get(a, 'n_heads_local_decoder', 16),
      num_key_value_heads: get(a, 'n_kv_heads', null),
      num_hidden_layers: get(a, 'n_layers_local_decoder', 9),
      norm_eps: get(a, 'norm_eps', new PyFloat(1e-5)),
      dropout: get(a, 'dropout', new PyFloat(0)),
      max_position_embeddings: maxEnc,
      rope_theta: get(a, 'rope_theta', ropeDefault),
      rope_scaling: rope,
      hidden_act: get(a, 'hidden_act', 'silu'),
      _attn_implementation: get(a, '_attn_implementation', 'sdpa'),
      intermediate_size: intermediate(decHidden, mult),
    },
    global_config: {
      hidden_size: gHidden,
      num_attention_heads: get(a, 'n_heads_global', 16),
      num_key_value_heads: get(a, 'n_kv_heads_global', null),
      num_hidden_layers: get(a, 'n_layers_global', 25),
      norm_eps: get(a, 'norm_eps', new PyFloat(1e-5)),
      dropout: get(a, 'dropout', new PyFloat(0)),
      max_position_embeddings: get(a, 'max_seqlen', 1024),
      rope_theta: get(a, 'rope_theta', ropeDefault),
      rope_scaling: rope,
      hidden_act: get(a, 'hidden_act', 'silu'),
      _attn_implementation: get(a, '_attn_implementation', 'sdpa'),
      intermediate_size: intermediate(gHidden, mult),
    },
    tie_word_embeddings: false,
  };
}

/** The converter's `create_tokenizer_config` (its `max_seqlen` lookup misses, hence 1024). */
function tokenizerConfig(config: Record<string, PyValue>): Record<string, PyValue> {
  return {
    tokenizer_class: 'BltTokenizer',
    vocab_size: config['vocab_size'] ?? 256,
    model_max_length: config['max_seqlen'] ?? 1024,
    add_bos_token: true,
    add_eos_token: true,
    bos_token: '<s>',
    eos_token: '</s>',
    pad_token: '<pad>',
    unk_token: '<unk>',
  };
}

/**
 * The transformers checkpoint's tensors in `BltForCausalLM.state_dict()` order (model.local_encoder,
 * global_transformer, local_decoder, the fused hash table, patcher, then lm_head), which is the order
 * save_pretrained fills shards in.
 */
export function transformersTensors(blt: readonly ReferenceTensor[], entropy: readonly ReferenceTensor[]): OutputTensor[] {
  const hash = blt.filter((t) => /^encoder_hash_tok_embedding\.\d+\.weight$/.test(t.name));
  hash.sort((x, y) => Number(x.name.split('.')[1]) - Number(y.name.split('.')[1]));
  const head = blt.find((t) => t.name === 'local_decoder.output.weight');
  if (!head) throw new Error('the BLT has no local_decoder.output.weight');
  const out: OutputTensor[] = [];
  for (const t of blt) {
    if (hash.includes(t) || t === head) continue;
    out.push(asOutput(t, transformersTensorName(t.name, 'blt')));
  }
  out.push(stacked(TRANSFORMERS_HASH_TABLE, hash));
  for (const t of entropy) out.push(asOutput(t, transformersTensorName(t.name, 'patcher')));
  out.push(asOutput(head, transformersTensorName(head.name, 'blt')));
  return out;
}

/** huggingface_hub's `split_torch_state_dict_into_shards` (greedy, an oversized tensor alone). */
export function splitIntoShards(tensors: readonly OutputTensor[], dtype: Dtype, maxShardBytes: number): OutputTensor[][] {
  const shards: OutputTensor[][] = [];
  let current: OutputTensor[] = [];
  let currentBytes = 0;
  for (const t of tensors) {
    const size = outputByteLength(t, dtype);
    if (size > maxShardBytes) {
      shards.push([t]);
      continue;
    }
    if (currentBytes + size > maxShardBytes) {
      shards.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(t);
    currentBytes += size;
  }
  if (current.length > 0) shards.push(current);
  return shards;
}

function transformersWeights(tensors: readonly OutputTensor[], o: PlanOptions): PlannedFile[] {
  const shards = splitIntoShards(tensors, o.dtype, o.shardBytes ?? 5e9);
  if (shards.length === 1) return [safetensorsFile('model.safetensors', shards[0] as OutputTensor[], o.dtype, HUB_METADATA)];
  const pad = (i: number) => String(i).padStart(5, '0');
  const files: PlannedFile[] = [];
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  let totalParameters = 0;
  shards.forEach((shard, i) => {
    const name = `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`;
    files.push(safetensorsFile(name, shard, o.dtype, HUB_METADATA));
    for (const t of shard) {
      weightMap[t.name] = name;
      totalSize += outputByteLength(t, o.dtype);
      totalParameters += t.shape.reduce((a, b) => a * b, 1);
    }
  });
  const index = { metadata: { total_parameters: totalParameters, total_size: totalSize }, weight_map: weightMap };
  files.push(textFile('model.safetensors.index.json', `${pythonJson(index, { indent: 2, sortKeys: true })}\n`));
  return files;
}

/** Every file of a model in a layout, with its size. */
export function planCheckpoint(o: PlanOptions): CheckpointPlan {
  const withEntropy = o.withEntropy ?? true;
  const flavor = o.pthFlavor ?? 'torch2';
  const entropyArgs = toPlainJson(entropyModelArgs(o.preset)) as Record<string, unknown>;
  const entropy = entropyTensors(entropyArgs);
  let files: PlannedFile[];
  let tensors: ReferenceTensor[];
  if (o.model === 'blt-entropy') {
    tensors = entropy;
    if (o.layout === 'consolidated') files = consolidatedEntropy('entropy_model/', o);
    else if (o.layout === 'hub') {
      files = [
        textFile('config.json', pythonJson({ args: entropyModelArgs(o.preset) }, { indent: 2, sortKeys: true })),
        safetensorsFile(
          'model.safetensors',
          entropy.map((t) => asOutput(t)),
          o.dtype,
          HUB_METADATA,
        ),
      ];
    } else {
      throw new Error('blt-entropy has no transformers layout (there the entropy model is the patcher inside a BLT checkpoint)');
    }
  } else {
    const args = bltModelArgs(o.model, o.preset);
    const blt = bltTensors(toPlainJson(args) as Record<string, unknown>);
    tensors = blt;
    const paramsJson = pydanticJson(bltTrainArgs(o.model, o.preset));
    if (o.layout === 'consolidated') {
      const folder = `${bltFolderName(o.model)}/`;
      files = [
        textFile(`${folder}params.json`, paramsJson),
        pthFile(
          `${folder}consolidated.pth`,
          blt.map((t) => asOutput(t)),
          o.dtype,
          flavor,
        ),
      ];
      if (withEntropy) {
        files.push(...consolidatedEntropy('entropy_model/', o));
        tensors = [...blt, ...entropy];
      }
    } else if (o.layout === 'hub') {
      files = [
        textFile('config.json', pythonJson({ args }, { indent: 2, sortKeys: true })),
        safetensorsFile(
          'model.safetensors',
          blt.map((t) => asOutput(t)),
          o.dtype,
          HUB_METADATA,
        ),
        textFile('train_args.json', paramsJson),
      ];
      if (withEntropy) {
        files.push(...consolidatedEntropy('entropy_model/', o));
        tensors = [...blt, ...entropy];
      }
    } else {
      const config = transformersConfig(o.model, o.preset);
      files = [
        textFile('config.json', pythonJson(config, { indent: 2 })),
        ...transformersWeights(transformersTensors(blt, entropy), o),
        textFile('tokenizer_config.json', pythonJson(tokenizerConfig(config), { indent: 2 })),
      ];
      tensors = [...blt, ...entropy];
    }
  }
  return { files, tensors, totalBytes: files.reduce((a, f) => a + f.bytes, 0) };
}
