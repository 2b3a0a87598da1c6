import { EOS_ID } from '@bytelatent/bytes';
import { RELEASED_ENTROPY_WINDOW, type EntropyPatcher, type PatcherDefaults } from '@bytelatent/entropy-patcher';
import { BltError } from '@bytelatent/nn';
import {
  type CheckpointLayout,
  type SafetensorsTensor,
  TRANSFORMERS_HASH_TABLE,
  ffnHiddenDim,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  referenceStateDict,
  serializePth,
  serializeSafetensors,
  transformersTensorName,
} from '@bytelatent/nn';
import type { BltArgs } from './blt-args.js';
import type { ByteLatentTransformer } from './blt-model.js';

/** Options of {@link exportPretrained}. */
export interface ExportPretrainedOptions {
  /** `hub` (the reference's `save_pretrained` layout) or `transformers` (Hugging Face's `model_type: "blt"`). */
  readonly layout: Exclude<CheckpointLayout, 'consolidated'>;
  /** Element type of the weights: `F32` (default; import ∘ export is exact) or `BF16`/`F16` (half the size). */
  readonly dtype?: 'F32' | 'BF16' | 'F16';
  /** Patching settings to store (default: the patcher's defaults). */
  readonly patching?: PatcherDefaults;
}

/** The files of an exported model: relative path → bytes. */
export type PretrainedFiles = Map<string, Uint8Array>;

const json = (value: unknown) => new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`);

/**
 * Our patching settings as the reference's `PatcherArgs` fields. `realtime_patching` is false, with no
 * `entropy_model_checkpoint_dir`: `PatcherArgs.build()` asserts that realtime patching has a checkpoint
 * folder, so `bytelatent/hf.py`'s `load_transformers` could not build a patcher from `true` here (the
 * reference's own `convert_to_transformers` sets it to false for the copy it keeps; loaders attach the
 * entropy model themselves).
 */
function referencePatcherArgs(p: PatcherDefaults): Record<string, unknown> {
  const mode = p.mode ?? 'entropy';
  return {
    patching_mode: mode === 'monotonic' || mode === 'combined' ? 'entropy' : mode,
    threshold: p.threshold ?? 1.335442066192627,
    threshold_add: mode === 'combined' ? (p.thresholdAdd ?? null) : null,
    monotonicity: mode === 'monotonic',
    max_patch_length: p.maxPatchLength ?? null,
    patch_size: p.patchSize ?? 4.5,
    patching_device: 'cpu',
    realtime_patching: false,
  };
}

type EntropyArgs = EntropyPatcher['model']['args'];

/**
 * What a consolidated entropy folder (`params.json` + `consolidated.pth`) would lose of this entropy
 * model. The reference's `load_entropy_model` reads only `dim`, `n_layers`, `n_heads`, `max_seqlen`,
 * `ffn_dim_multiplier` and `vocab_size` from `params.json`, takes every other argument at
 * `LMTransformerArgs`' default, and forces `local_block_causal` attention with a 512-byte window
 * (our consolidated reader does the same). Empty when that rebuilds exactly this model.
 */
function consolidatedEntropyLosses(a: EntropyArgs): string[] {
  const losses: string[] = [];
  const check = (field: string, ours: unknown, reference: unknown) => {
    if (ours !== reference) losses.push(`${field} ${JSON.stringify(ours)} (load_entropy_model: ${JSON.stringify(reference)})`);
  };
  const attention = a.window !== undefined ? `local_block_causal, window ${a.window}` : a.splitDocuments ? 'block_causal' : 'causal';
  check('attention', attention, `local_block_causal, window ${RELEASED_ENTROPY_WINDOW}`);
  check('n_kv_heads', a.nKvHeads, a.nHeads);
  check('head_dim', a.headDim, Math.floor(a.dim / a.nHeads));
  check('multiple_of', a.multipleOf, 256);
  check('norm_eps', a.normEps, 1e-5);
  check('rope_theta', a.ropeTheta, 10000);
  check('eos_id', a.eosId, EOS_ID);
  return losses;
}

/**
 * Complete arguments for the reference: what ours leave to a default the reference does not share.
 * `attn_impl` defaults to `sdpa` there, which refuses the block and windowed masks every BLT uses.
 */
function referenceBltArgs(args: Readonly<BltArgs>): Record<string, unknown> {
  return { ...args, attn_impl: args['attn_impl'] ?? 'xformers' };
}

function castTensors(tensors: Map<string, SafetensorsTensor>, dtype: 'F32' | 'BF16' | 'F16'): Map<string, SafetensorsTensor> {
  if (dtype === 'F32') return tensors;
  const convert = dtype === 'BF16' ? float32ToBfloat16Bits : float32ToFloat16Bits;
  const out = new Map<string, SafetensorsTensor>();
  for (const [name, t] of tensors) {
    const src = t.data as Float32Array;
    const bits = new Uint16Array(src.length);
    for (let i = 0; i < src.length; i++) bits[i] = convert(src[i]!);
    out.set(name, { dtype, shape: t.shape, data: bits });
  }
  return out;
}

/**
 * Our model (trained by `apps/train`, or any) in a published layout, so that the reference's
 * distributed trainer — or Hugging Face transformers — can continue from it, and its result can come
 * back through {@link loadPretrained}:
 * - `hub`: `config.json` `{"args"}`, `model.safetensors` (the reference's names), `train_args.json`
 *   (`data.patcher_args` with `realtime_patching: false`, `data.tokenizer_args`,
 *   `distributed.model_dtype`), and the entropy model in `entropy_model/` as in the published
 *   `facebook/blt-1b`: `params.json` (training arguments: `entropy_model`, `data.patcher_args`, ...)
 *   + `consolidated.pth` (`torch.save({"model": state_dict})`). An entropy model that the reference's
 *   `load_entropy_model` cannot rebuild from that folder (any argument other than `dim`, `n_layers`,
 *   `n_heads`, `max_seqlen`, `ffn_dim_multiplier`, `vocab_size` away from its default, or a window
 *   other than 512) is written as `facebook/blt-entropy` is instead (`config.json` `{"args"}` +
 *   `model.safetensors`), which keeps every argument;
 * - `transformers`: `config.json` with the published converter's keys (plus the reference settings
 *   the port has no key for, so that a round trip is exact; {@link transformersLayoutProblems} lists
 *   what the port itself would run differently), `model.safetensors` with the converter's
 *   names and fused hash table (the entropy model as `model.patcher.*`), `tokenizer_config.json`.
 * Browser-safe; in Node, {@link savePretrained} writes the files.
 *
 * @param model - the BLT
 * @param patcher - its entropy patcher (its model and patching settings are exported too)
 * @param options - layout, dtype, patching settings
 * @returns the files by relative path
 */
export async function exportPretrained(
  model: ByteLatentTransformer,
  patcher: EntropyPatcher,
  options: ExportPretrainedOptions,
): Promise<PretrainedFiles> {
  const { layout, dtype = 'F32' } = options;
  if (layout !== 'hub' && layout !== 'transformers')
    throw new BltError('INVALID_ARGUMENT', `layout must be "hub" or "transformers", got ${JSON.stringify(layout)}`);
  if (dtype !== 'F32' && dtype !== 'BF16' && dtype !== 'F16')
    throw new BltError('INVALID_ARGUMENT', `dtype must be F32, BF16 or F16, got ${JSON.stringify(dtype)}`);
  const patching = options.patching ?? patcher.defaults;
  const bltArgs = referenceBltArgs(model.referenceArgs);
  const e = patcher.model.args;
  // vocab_size and ffn_dim_multiplier always written: load_entropy_model reads both keys (a missing
  // one is a KeyError there), and LMTransformerArgs' vocab_size default (-1) builds no model.
  const entropyArgs = {
    ...patcher.model.referenceArgs,
    attn_impl: patcher.model.referenceArgs.attn_impl ?? 'xformers',
    vocab_size: e.vocabSize,
    ffn_dim_multiplier: e.ffnDimMultiplier,
  };
  const modelDtype = dtype === 'F32' ? 'fp32' : dtype === 'BF16' ? 'bf16' : 'fp16';
  const bltTensors = castTensors(await model.referenceWeights(), dtype);
  const entropyTensors = castTensors(await referenceStateDict(patcher.model.registry), dtype);
  const files: PretrainedFiles = new Map();
  if (layout === 'hub') {
    files.set('config.json', json({ args: bltArgs }));
    files.set('model.safetensors', serializeSafetensors(bltTensors, { format: 'pt' }));
    files.set(
      'train_args.json',
      json({
        model: bltArgs,
        entropy_model: entropyArgs,
        data: { patcher_args: referencePatcherArgs(patching), tokenizer_args: { name: 'blt' } },
        distributed: { model_dtype: modelDtype },
      }),
    );
    if (consolidatedEntropyLosses(e).length === 0) {
      // The published blt-1b's entropy_model/ (the consolidated layout): what the reference's demo and
      // load_entropy_model read, and what transformers' convert_blt_weights_to_hf.py converts from
      // (entropy_model/params.json + entropy_model/consolidated.pth).
      files.set(
        'entropy_model/params.json',
        json({
          model: null,
          entropy_model: entropyArgs,
          train_entropy_model: true,
          data: { patcher_args: referencePatcherArgs(patching), tokenizer_args: { name: 'blt' } },
          distributed: { model_dtype: modelDtype },
        }),
      );
      files.set('entropy_model/consolidated.pth', serializePth(entropyTensors, { archiveName: 'consolidated' }));
    } else {
      // load_entropy_model would rebuild a different model from a consolidated folder (another window,
      // rope_theta, norm_eps, n_kv_heads, multiple_of, ...: see consolidatedEntropyLosses), so this
      // one keeps every argument in the blt-entropy layout instead (config.json {"args"} +
      // model.safetensors), which LMTransformer.from_pretrained and our loader read exactly; the
      // transformers converter, which needs the consolidated files, cannot convert such a folder.
      files.set('entropy_model/config.json', json({ args: entropyArgs }));
      files.set('entropy_model/model.safetensors', serializeSafetensors(entropyTensors, { format: 'pt' }));
    }
    return files;
  }
  const tensors = new Map<string, SafetensorsTensor>();
  const hash = model.args.encoder.hash;
  const hashNames = new Set<string>();
  if (hash) {
    const count = hash.groupSizes.length * hash.numFunctions;
    const tables: SafetensorsTensor[] = [];
    for (let i = 0; i < count; i++) {
      const name = `encoder_hash_tok_embedding.${i}.weight`;
      hashNames.add(name);
      tables.push(bltTensors.get(name)!);
    }
    const rows = tables.reduce((s, t) => s + t.shape[0]!, 0);
    const width = tables[0]!.shape[1]!;
    const data = dtype === 'F32' ? new Float32Array(rows * width) : new Uint16Array(rows * width);
    let offset = 0;
    for (const t of tables) {
      // Same element type on both sides (float32 values, or bf16/f16 bit patterns).
      (data as { set(values: ArrayLike<number>, at: number): void }).set(t.data as ArrayLike<number>, offset);
      offset += t.data.length;
    }
    tensors.set(TRANSFORMERS_HASH_TABLE, { dtype, shape: [rows, width], data });
  }
  for (const [name, t] of bltTensors) if (!hashNames.has(name)) tensors.set(transformersTensorName(name, 'blt'), t);
  for (const [name, t] of entropyTensors) tensors.set(transformersTensorName(name, 'patcher'), t);
  files.set('config.json', json(transformersConfig(model, patcher, patching)));
  files.set('model.safetensors', serializeSafetensors(tensors, { format: 'pt' }));
  files.set(
    'tokenizer_config.json',
    json({
      tokenizer_class: 'BltTokenizer',
      vocab_size: model.args.vocabSize,
      model_max_length: model.args.global.maxSeqLen,
      add_bos_token: true,
      add_eos_token: true,
    }),
  );
  return files;
}

/**
 * The transformers `config.json` of our model: the keys the published converter's
 * `merge_configurations` writes, plus, under the reference's own argument names, the settings the
 * port's config has no key for — local window, global mask, cross-attention windows and heads, the
 * entropy model's window — which `bltArgsFromTransformersConfig` reads back when present.
 */
function transformersConfig(model: ByteLatentTransformer, patcher: EntropyPatcher, patching: PatcherDefaults): Record<string, unknown> {
  const a = model.args;
  const ref = model.referenceArgs;
  const e = patcher.model.args;
  const p = referencePatcherArgs(patching);
  const local = (c: typeof a.encoder | typeof a.decoder, allLayers: boolean, extra: Record<string, unknown>) => ({
    vocab_size: a.vocabSize,
    cross_attn_all_layers: allLayers,
    cross_attn_k: c.crossAttnK,
    hidden_size_global: a.global.dim,
    hidden_size: c.dim,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads ?? null,
    num_hidden_layers: c.nLayers,
    norm_eps: c.normEps,
    dropout: 0,
    max_position_embeddings: c.maxSeqLen,
    rope_theta: c.ropeTheta,
    rope_scaling: { rope_type: 'default' },
    hidden_act: 'silu',
    intermediate_size: ffnHiddenDim(c.dim, c.multipleOf, c.ffnDimMultiplier ?? null),
    ...extra,
  });
  const g = a.global;
  return {
    model_type: 'blt',
    vocab_size: a.vocabSize - (Number(ref.pm_size ?? 0) || 0),
    max_position_embeddings: g.maxSeqLen,
    patch_in_forward: true,
    realtime_patching: true,
    patching_mode: p['patching_mode'],
    patch_size: p['patch_size'],
    patching_threshold: p['threshold'],
    patching_threshold_add: p['threshold_add'],
    max_patch_length: p['max_patch_length'],
    patching_batch_size: 1,
    patching_device: 'cpu',
    monotonicity: p['monotonicity'],
    cross_attn_k: a.encoder.crossAttnK,
    encoder_hash_byte_group_size: a.encoder.hash?.groupSizes ?? null,
    encoder_hash_byte_group_vocab: a.encoder.hash?.vocabSize ?? 500002,
    encoder_hash_byte_group_nb_functions: a.encoder.hash?.numFunctions ?? 1,
    pm_size: Number(ref.pm_size ?? 0) || 0,
    patcher_config: {
      vocab_size: e.vocabSize,
      hidden_size: e.dim,
      num_hidden_layers: e.nLayers,
      num_attention_heads: e.nHeads,
      num_key_value_heads: e.nKvHeads,
      max_position_embeddings: e.maxSeqLen,
      norm_eps: e.normEps,
      dropout: 0,
      rope_theta: e.ropeTheta,
      attn_impl: 'xformers',
      attn_bias_type: e.window !== undefined ? 'local_block_causal' : e.splitDocuments ? 'block_causal' : 'causal',
      intermediate_size: ffnHiddenDim(e.dim, e.multipleOf, e.ffnDimMultiplier),
      sliding_window: e.window ?? null,
    },
    encoder_config: local(a.encoder, a.encoder.crossAttnAllLayers, {}),
    decoder_config: local(a.decoder, a.decoder.crossAttnAllLayers, {}),
    global_config: {
      hidden_size: g.dim,
      num_attention_heads: g.nHeads,
      num_key_value_heads: g.nKvHeads ?? null,
      num_hidden_layers: g.nLayers,
      norm_eps: g.normEps,
      dropout: 0,
      max_position_embeddings: g.maxSeqLen,
      rope_theta: g.ropeTheta,
      rope_scaling: { rope_type: 'default' },
      hidden_act: 'silu',
      intermediate_size: ffnHiddenDim(g.dim, g.multipleOf, g.ffnDimMultiplier ?? null),
    },
    tie_word_embeddings: false,
    // The reference settings the transformers port's config has no key for (it hard-codes or drops
    // them); a loader that knows them (ours) reads them back, others ignore them.
    local_attention_window_len: a.localWindow ?? null,
    attn_bias_type: g.splitDocuments ? 'block_causal' : 'causal',
    cross_attn_window_encoder: a.encoder.crossAttnWindow ?? null,
    cross_attn_window_decoder: a.decoder.crossAttnWindow ?? null,
    cross_attn_nheads: a.encoder.crossAttnNHeads,
    eos_id: a.eosId,
  };
}

/**
 * Why Hugging Face transformers' BLT port would not run this model as the reference does, if it
 * were exported in the transformers layout: the settings its config has no key for, or that its
 * `modeling_blt.py` hard-codes (docs/architecture.md, "Released checkpoints"). Our loader reads such
 * a folder back exactly (the exporter writes those settings under the reference's names); the port
 * and the reference's tools would not. An empty list: the released models' settings throughout.
 *
 * @param model - the BLT
 * @param patcher - its entropy patcher
 * @returns one sentence per setting the port cannot carry
 */
export function transformersLayoutProblems(model: ByteLatentTransformer, patcher: EntropyPatcher): string[] {
  const a = model.args;
  const e = patcher.model.args;
  const problems: string[] = [];
  if (a.localWindow !== 512)
    problems.push(
      `local attention window ${String(a.localWindow ?? 'none')} (the port attends causally without one; the released models use 512)`,
    );
  if (!a.global.splitDocuments) problems.push('global attention "causal" (the released models split documents: block_causal)');
  if (a.encoder.crossAttnWindow !== undefined || a.decoder.crossAttnWindow !== undefined)
    problems.push('a cross-attention window (the port has none)');
  if (a.encoder.crossAttnNHeads !== a.encoder.nHeads || a.encoder.nHeads !== a.decoder.nHeads) {
    problems.push(
      `cross-attention heads ${a.encoder.crossAttnNHeads} with encoder/decoder heads ${a.encoder.nHeads}/${a.decoder.nHeads} (the port uses the local models' heads, which must agree)`,
    );
  }
  if ((a.encoder.nKvHeads ?? a.encoder.nHeads) !== a.encoder.nHeads)
    problems.push('grouped-query local attention (the port would use it in cross-attention too)');
  if (a.encoder.crossAttnAllLayers) problems.push('encoder cross-attention after every layer (the port pools again before each one)');
  if (Number(model.referenceArgs.pm_size ?? 0) !== 0) problems.push('pm_size > 0 (the port has no room for it)');
  if ([a.encoder, a.decoder, a.global].some((c) => c.normEps !== 1e-5))
    problems.push('a norm epsilon other than 1e-5 (the port reads rms_norm_eps, which the converter does not write)');
  if ([a.encoder, a.decoder, a.global].some((c) => (c.ffnDimMultiplier ?? 1) !== 1))
    problems.push('an ffn_dim_multiplier other than 1 (the converter writes intermediate_size from multiple_of alone)');
  if (e.window !== 512 || !e.splitDocuments)
    problems.push(
      `entropy model attention ${e.window === undefined ? 'without a window' : `window ${e.window}`} (the reference's load_entropy_model forces local_block_causal with 512)`,
    );
  return problems;
}

/**
 * Writes {@link exportPretrained}'s files into a folder (Node), each atomically; the folder (and
 * `entropy_model/`) is created if missing.
 *
 * @returns the paths written
 */
export async function savePretrained(
  model: ByteLatentTransformer,
  patcher: EntropyPatcher,
  dir: string,
  options: ExportPretrainedOptions,
): Promise<string[]> {
  const files = await exportPretrained(model, patcher, options);
  const [{ mkdir }, { join, dirname }, { writeFileAtomic }] = await Promise.all([
    import('node:fs/promises'),
    import('node:path'),
    import('@bytelatent/nn/node'),
  ]);
  const written: string[] = [];
  // Weights first, configuration last: a reader never finds a config.json whose weights are missing.
  const order = [...files.keys()].sort((x, y) => Number(x.endsWith('.json')) - Number(y.endsWith('.json')));
  for (const name of order) {
    const path = join(dir, name);
    await mkdir(dirname(path), { recursive: true });
    await writeFileAtomic(path, files.get(name)!);
    written.push(path);
  }
  return written;
}
