import { NnError } from './errors.js';
import { ffnHiddenDim } from './layers/feed-forward.js';
import type { ModelFolder } from './model-folder.js';
import type { TensorSource, TensorSourceInfo } from './tensor-source.js';

/**
 * The layouts Meta's BLT checkpoints are published in (see docs/architecture.md, "Released checkpoints"):
 * - `consolidated`: the reference's own download (`facebook/blt`): `params.json` (the training
 *   arguments) + `consolidated.pth` (`torch.save({"model": state_dict})`), per model folder;
 * - `hub`: `PyTorchModelHubMixin.save_pretrained` (`facebook/blt-1b`, `facebook/blt-entropy`):
 *   `config.json` = `{"args": ...}` + `model.safetensors` with the reference's names (+ `train_args.json`);
 * - `transformers`: Hugging Face transformers' `model_type: "blt"` (the published converter's output):
 *   sub-configurations, renamed weights, possibly sharded.
 */
export type CheckpointLayout = 'consolidated' | 'hub' | 'transformers';

/** What {@link detectCheckpointLayout} found. */
export interface DetectedLayout {
  readonly layout: CheckpointLayout;
  /** The configuration file (`params.json` or `config.json`), parsed. */
  readonly config: Readonly<Record<string, unknown>>;
  /** The configuration file's name in the folder. */
  readonly configFile: string;
  /** The weights file to open with {@link ModelFolder.openTensors}. */
  readonly weightsFile: string;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * Tells a folder's layout from its files, and names the weights file.
 *
 * @param folder - the model folder
 * @returns the layout, its configuration and weights file
 * @throws {NnError} `INVALID_CHECKPOINT` naming the folder and what is missing or foreign (e.g. a
 *   `config.json` of another `model_type`)
 */
export async function detectCheckpointLayout(folder: ModelFolder): Promise<DetectedLayout> {
  const bad = (why: string) => new NnError('INVALID_CHECKPOINT', why);
  if (await folder.exists('params.json')) {
    const config = await folder.readJson('params.json');
    if (!isObject(config)) throw bad(`${folder.describe('params.json')} must hold a JSON object (the reference's training arguments)`);
    if (!(await folder.exists('consolidated.pth')))
      throw bad(`${folder.describe('consolidated.pth')} is missing beside params.json (the consolidated layout needs both)`);
    return { layout: 'consolidated', config, configFile: 'params.json', weightsFile: 'consolidated.pth' };
  }
  if (!(await folder.exists('config.json'))) {
    throw bad(
      `${folder.location}: no params.json (consolidated layout) and no config.json (hub or transformers layout): not a BLT checkpoint folder`,
    );
  }
  const config = await folder.readJson('config.json');
  const where = folder.describe('config.json');
  if (!isObject(config)) throw bad(`${where} must hold a JSON object`);
  if (typeof config['model_type'] === 'string') {
    if (config['model_type'] !== 'blt') {
      throw bad(`${where} has model_type "${config['model_type']}", not "blt": this is not a BLT checkpoint`);
    }
    const weightsFile = (await folder.exists('model.safetensors.index.json'))
      ? 'model.safetensors.index.json'
      : (await folder.exists('model.safetensors'))
        ? 'model.safetensors'
        : undefined;
    if (!weightsFile) throw bad(`${where} (transformers layout) is here but neither model.safetensors nor model.safetensors.index.json is`);
    return { layout: 'transformers', config, configFile: 'config.json', weightsFile };
  }
  if (isObject(config['args'])) {
    if (!(await folder.exists('model.safetensors')))
      throw bad(`${folder.describe('model.safetensors')} is missing beside ${where} (hub layout)`);
    return { layout: 'hub', config, configFile: 'config.json', weightsFile: 'model.safetensors' };
  }
  const keys = Object.keys(config).slice(0, 8).join(', ');
  throw bad(`${where} has neither "model_type": "blt" (transformers layout) nor an "args" object (hub layout); its keys: ${keys}`);
}

// The published converter's renaming (transformers `convert_blt_weights_to_hf.py`, `apply_weight_mapping`):
// substring replacements applied in this order to every key.
const TRANSFORMERS_RENAMES: ReadonlyArray<readonly [string, string]> = [
  ['.attention.', '.self_attn.'],
  ['.feed_forward.', '.mlp.'],
  ['.attention_norm.', '.input_layernorm.'],
  ['.ffn_norm.', '.post_attention_layernorm.'],
  ['.tok_embeddings.', '.embed_tokens.'],
  ['.cross_attn_norm_q.', '.q_norm.'],
  ['.cross_attn_norm_kv.', '.k_norm.'],
  ['.w1.', '.gate_proj.'],
  ['.w2.', '.down_proj.'],
  ['.w3.', '.up_proj.'],
  ['.wq.', '.q_proj.'],
  ['.wk.', '.k_proj.'],
  ['.wv.', '.v_proj.'],
  ['.wo.', '.o_proj.'],
  ['.output.', '.lm_head.'],
];

/**
 * The transformers-layout name of a reference parameter: the converter prefixes the entropy model's
 * keys with `patcher.`, renames (`.attention.`→`.self_attn.`, `w1`→`gate_proj`, ...), moves the
 * decoder's `local_decoder.output.weight` to the top-level `lm_head.weight` and puts everything else
 * under `model.`. The fused hash table is not covered (see {@link TRANSFORMERS_HASH_TABLE}).
 *
 * @param name - reference state-dict name (`local_encoder.layers.0.attention.wq.weight`, or an
 *   entropy model's `layers.0.attention.wq.weight` with `component = 'patcher'`)
 * @param component - whose parameter it is
 */
export function transformersTensorName(name: string, component: 'blt' | 'patcher'): string {
  let key = component === 'patcher' ? `patcher.${name}` : name;
  for (const [from, to] of TRANSFORMERS_RENAMES) key = key.split(from).join(to);
  if (key === 'local_decoder.lm_head.weight') return 'lm_head.weight';
  return `model.${key}`;
}

/** The transformers layout's one fused hash table: `[functions·sizes·vocab, dim]`, table i at rows `i·vocab`. */
export const TRANSFORMERS_HASH_TABLE = 'model.encoder_hash_tok_embedding.weight';

/**
 * The reference name of a transformers-layout tensor (the converter's renaming undone), and whose it
 * is; undefined for a name the converter cannot have written (it stays unexpected for the loader).
 */
export function referenceNameFromTransformers(name: string): { readonly component: 'blt' | 'patcher'; readonly name: string } | undefined {
  if (name === 'lm_head.weight') return { component: 'blt', name: 'local_decoder.output.weight' };
  if (!name.startsWith('model.')) return undefined;
  let key = name.slice('model.'.length);
  for (const [from, to] of [...TRANSFORMERS_RENAMES].reverse()) key = key.split(to).join(from);
  const component = key.startsWith('patcher.') ? 'patcher' : 'blt';
  const reference = component === 'patcher' ? key.slice('patcher.'.length) : key;
  // Only an exact round trip is a name the converter wrote.
  return transformersTensorName(reference, component) === name ? { component, name: reference } : undefined;
}

/**
 * One component's tensors of a transformers-layout file under the reference's names: the entropy
 * model (`model.patcher.*`) or the BLT (everything else), the other component's tensors hidden, and —
 * for the BLT — the fused hash table split back into the reference's `encoder_hash_tok_embedding.{i}.weight`
 * tables of `vocab` rows each. Reads go through to the file.
 *
 * @param source - the transformers-layout tensors (one file or shards)
 * @param component - which model to view
 * @param hashTables - for the BLT: the number of tables (functions × n-gram sizes) and rows per table
 */
export function transformersComponentSource(
  source: TensorSource,
  component: 'blt' | 'patcher',
  hashTables?: { readonly count: number; readonly vocab: number },
): TensorSource {
  const mapping = new Map<string, RenamedTensor>();
  for (const name of source.names()) {
    if (name === TRANSFORMERS_HASH_TABLE) continue;
    const ref = referenceNameFromTransformers(name);
    if (ref && ref.component === component) mapping.set(ref.name, { from: name });
  }
  if (component === 'blt' && hashTables && source.has(TRANSFORMERS_HASH_TABLE)) {
    for (let i = 0; i < hashTables.count; i++) {
      mapping.set(`encoder_hash_tok_embedding.${i}.weight`, {
        from: TRANSFORMERS_HASH_TABLE,
        rows: { begin: i * hashTables.vocab, count: hashTables.vocab },
      });
    }
  }
  const other = (name: string) => {
    if (name === TRANSFORMERS_HASH_TABLE) return component === 'patcher';
    const ref = referenceNameFromTransformers(name);
    return ref !== undefined && ref.component !== component;
  };
  return renamedTensorSource(source, mapping, other);
}

/** Where a tensor of a {@link renamedTensorSource} comes from. */
export interface RenamedTensor {
  /** Name in the underlying source. */
  readonly from: string;
  /** For a block of rows of a 2-D tensor: the first row and the row count. */
  readonly rows?: { readonly begin: number; readonly count: number };
}

/**
 * A view of a source under other names (and row blocks of a tensor as tensors of their own), reading
 * through to it — no copy. Tensors of the source that no entry maps and `hidden` does not cover keep
 * their names, so a loader still reports them as unexpected.
 *
 * @param source - the underlying tensors
 * @param mapping - new name → where it comes from
 * @param hidden - source names to leave out (e.g. another component's tensors in a shared file)
 * @throws {NnError} `INVALID_CHECKPOINT` when a mapped tensor is missing from the source or a row block
 *   does not fit its tensor
 */
export function renamedTensorSource(
  source: TensorSource,
  mapping: ReadonlyMap<string, RenamedTensor>,
  hidden: (name: string) => boolean = () => false,
): TensorSource {
  const consumed = new Set<string>();
  const infos = new Map<string, TensorSourceInfo>();
  const entries = new Map<string, RenamedTensor & { readonly rowBytesElements?: number }>();
  for (const [name, entry] of mapping) {
    if (!source.has(entry.from)) continue;
    const base = source.info(entry.from);
    consumed.add(entry.from);
    if (entry.rows) {
      const [total, ...rest] = base.shape;
      const rowElements = rest.reduce((a, b) => a * b, 1);
      if (total === undefined || entry.rows.begin < 0 || entry.rows.begin + entry.rows.count > total) {
        throw new NnError(
          'INVALID_CHECKPOINT',
          `${source.description}: "${entry.from}" has shape [${base.shape.join(', ')}], too few rows for rows ${entry.rows.begin}..${entry.rows.begin + entry.rows.count} ("${name}")`,
        );
      }
      const shape = [entry.rows.count, ...rest];
      infos.set(name, { name, dtype: base.dtype, shape, byteLength: (base.byteLength / Math.max(1, total)) * entry.rows.count });
      entries.set(name, { ...entry, rowBytesElements: rowElements });
    } else {
      infos.set(name, { ...base, name });
      entries.set(name, entry);
    }
  }
  for (const name of source.names()) {
    if (consumed.has(name) || hidden(name) || infos.has(name)) continue;
    infos.set(name, source.info(name));
    entries.set(name, { from: name });
  }
  const order = [...infos.keys()];
  const lookup = (name: string) => {
    const entry = entries.get(name);
    if (!entry) throw new NnError('INVALID_ARGUMENT', `${source.description}: no tensor "${name}"`);
    return entry;
  };
  return {
    description: source.description,
    names: () => [...order],
    has: (name) => infos.has(name),
    info: (name) => {
      lookup(name);
      return infos.get(name)!;
    },
    readBytes: (name, begin, end) => {
      const entry = lookup(name);
      if (!entry.rows) return source.readBytes(entry.from, begin, end);
      const count = entry.rows.count * entry.rowBytesElements!;
      const b = begin ?? 0;
      const e = end ?? count;
      if (!(Number.isInteger(b) && Number.isInteger(e) && b >= 0 && b <= e && e <= count)) {
        throw new NnError('INVALID_ARGUMENT', `${source.description}: elements ${b}..${e} out of range for "${name}" (${count} elements)`);
      }
      const offset = entry.rows.begin * entry.rowBytesElements!;
      return source.readBytes(entry.from, offset + b, offset + e);
    },
    close: () => source.close?.(),
  };
}

/**
 * `multiple_of` / `ffn_dim_multiplier` that give a transformers config's explicit `intermediate_size`
 * of every component under the reference's rounding (`multiple_of · ceil(int(8·dim/3) / multiple_of)`;
 * the converter derives the sizes that way and ignores the multiplier). The reference has one rounding
 * for all the components of a model: the released 256 when it fits, else the largest common one.
 *
 * @param components - each component's `hidden_size`, `intermediate_size` and config path
 * @param where - the file, for messages
 * @throws {NnError} `INVALID_CHECKPOINT` when no single rounding gives every size
 */
export function ffnArgsForHiddenSizes(
  components: ReadonlyArray<{ readonly dim: number; readonly intermediate: number; readonly path: string }>,
  where: string,
): { multiple_of: number; ffn_dim_multiplier: number } {
  for (const c of components) {
    if (!Number.isInteger(c.intermediate) || c.intermediate < 1) {
      throw new NnError('INVALID_CHECKPOINT', `${where}: ${c.path}.intermediate_size must be an integer >= 1, got ${c.intermediate}`);
    }
  }
  const fits = (m: number) => components.every((c) => ffnHiddenDim(c.dim, m, 1.0) === c.intermediate);
  if (fits(256)) return { multiple_of: 256, ffn_dim_multiplier: 1.0 };
  // Every size is a multiple of the rounding: try the divisors of the smallest, largest first.
  const smallest = Math.min(...components.map((c) => c.intermediate));
  for (let m = smallest; m >= 1; m--) {
    if (components.every((c) => c.intermediate % m === 0) && fits(m)) return { multiple_of: m, ffn_dim_multiplier: 1.0 };
  }
  const shown = components.map((c) => `${c.path}: hidden_size ${c.dim}, intermediate_size ${c.intermediate}`).join('; ');
  throw new NnError(
    'INVALID_CHECKPOINT',
    `${where}: no single multiple_of gives every intermediate_size under the reference's rounding (${shown})`,
  );
}

/** A number field of a config object, or undefined when absent or null. */
function field(obj: Readonly<Record<string, unknown>>, key: string): unknown {
  return obj[key] === null ? undefined : obj[key];
}

/** `rope_theta` (converter) or `rope_parameters.rope_theta` (transformers 5) of a (sub-)config, checked. */
export function transformersRopeTheta(config: Readonly<Record<string, unknown>>, where: string): number | undefined {
  const params = config['rope_parameters'];
  const scaling = isObject(params) ? params : isObject(config['rope_scaling']) ? config['rope_scaling'] : undefined;
  const type = scaling ? (scaling['rope_type'] ?? scaling['type'] ?? 'default') : 'default';
  if (type !== 'default')
    throw new NnError(
      'INVALID_CHECKPOINT',
      `${where}: rope type ${JSON.stringify(type)} is not supported (only "default" RoPE, as the reference)`,
    );
  const theta = field(config, 'rope_theta') ?? (isObject(params) ? params['rope_theta'] : undefined);
  return typeof theta === 'number' ? theta : undefined;
}

/** `norm_eps` (converter) or `rms_norm_eps` (transformers 5). */
export function transformersNormEps(config: Readonly<Record<string, unknown>>): number | undefined {
  const eps = field(config, 'norm_eps') ?? field(config, 'rms_norm_eps');
  return typeof eps === 'number' ? eps : undefined;
}

/**
 * Whether the reference computes a model's masks with the `attn_impl` it names (its
 * `bytelatent/model/utils.py:create_causal_mask`): `xformers` and `flex_attention` build every mask
 * kind; `sdpa` only plain `causal` attention (for block or windowed masks the reference raises unless
 * `BLT_SUPPRESS_ATTN_ERROR=1`, and then silently drops them); anything else is unknown to it.
 *
 * @param attnImpl - the argument as stored (undefined/null: the reference default, `sdpa` for
 *   `LMTransformerArgs`; BLT files always name one)
 * @param maskKind - the most demanding mask the model needs (`causal`, `block_causal`, `local_block_causal`)
 * @returns why the combination is refused, or undefined when it is fine
 */
export function referenceAttentionProblem(attnImpl: unknown, maskKind: string): string | undefined {
  if (attnImpl === undefined || attnImpl === null || attnImpl === 'xformers' || attnImpl === 'flex_attention') return undefined;
  if (attnImpl === 'sdpa') {
    return maskKind === 'causal'
      ? undefined
      : `"sdpa" cannot build the ${maskKind} mask this model needs (the reference raises for it): use "xformers" or "flex_attention"`;
  }
  return `${JSON.stringify(attnImpl)} is not an attention implementation the reference knows (xformers, flex_attention, sdpa)`;
}
