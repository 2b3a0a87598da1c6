/**
 * Loading a model file into a {@link ScoringModel} by what its metadata says it is: a BLT
 * (`blt_args`, as `apps/train export-blt` writes and `apps/serve` ships), an entropy model
 * (`entropy_model_args`), a token transformer (`token_model_args`), or an `apps/train` training
 * checkpoint of any of them. Node only (reads files).
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { BLT_ARGS_METADATA_KEY, ByteLatentTransformer, type BltArgs } from '@bytelatent/blt';
import { ARGS_METADATA_KEY, EntropyModel, EntropyPatcher, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import { type SafetensorsFile, loadReferenceWeights, parseSafetensors } from '@bytelatent/nn';
import { type BltPatching, bltScorer, entropyModelScorer } from './adapters.js';
import { BytePairTokenizer } from './bpe.js';
import { EvalError } from './errors.js';
import { type BltFlopsShape, type TransformerShape, bltFlopsShape, transformerShape } from './flops.js';
import type { ScoringModel } from './scoring-model.js';
import { TOKEN_MODEL_ARGS_KEY, TOKEN_MODEL_TOKENIZER_KEY, TokenTransformer, type TokenTransformerArgs, tokenTransformerScorer } from './token-transformer.js';

/** Metadata key of `apps/train` checkpoints. */
const TRAIN_STATE_KEY = 'train_state';

/** What a model file held, with what the FLOP accounting needs. */
export type LoadedModel =
  | { readonly kind: 'blt'; readonly model: ScoringModel & { patchCounts(): { positions: number; patches: number } }; readonly parameters: number; readonly shape: BltFlopsShape; readonly patching: BltPatching; readonly contextBytes: number; dispose(): void }
  | { readonly kind: 'entropy' | 'token'; readonly model: ScoringModel; readonly parameters: number; readonly shape: TransformerShape; readonly vocab: number; readonly contextTokens: number; dispose(): void };

/** Options of {@link loadModelFile}. */
export interface LoadModelOptions {
  /** BLT only: the entropy model to patch with (a file, or `pretrained`), overriding the file's metadata. */
  readonly patcher?: string;
  /** Name shown in tables (default: derived from the file). */
  readonly name?: string;
}

function json<T>(raw: string | undefined, what: string): T | undefined {
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw) as T;
  } catch {
    throw new EvalError('INVALID_MODEL_FILE', `metadata "${what}" is not valid JSON`);
  }
}

async function loadPatcher(source: string | undefined, base: string): Promise<EntropyPatcher> {
  if (source === undefined || source === 'pretrained') return EntropyPatcher.pretrained();
  return EntropyPatcher.fromSafetensors(isAbsolute(source) ? source : resolve(base, source));
}

/**
 * The shipped entropy model of `@bytelatent/entropy-patcher` as a byte-level language model.
 *
 * @returns the loaded model (dispose it when done)
 */
export async function loadPretrainedEntropyModel(): Promise<LoadedModel> {
  const patcher = await EntropyPatcher.pretrained();
  const args = patcher.model.referenceArgs;
  return {
    kind: 'entropy',
    model: entropyModelScorer(patcher.model, 'entropy-patcher (pretrained)'),
    parameters: patcher.model.registry.count(),
    shape: transformerShape(args),
    vocab: patcher.model.args.vocabSize,
    contextTokens: Math.min(patcher.model.args.window ?? patcher.model.maxSeqLen, patcher.model.maxSeqLen),
    dispose: () => patcher.dispose(),
  };
}

/**
 * Loads a model file (safetensors) of any kind this project writes.
 *
 * @param path - the file
 * @param options - BLT patcher override, display name
 * @returns the model, its kind, size and FLOP shape (dispose it when done)
 * @throws {EvalError} `DATA_UNAVAILABLE` when the file cannot be read; `INVALID_MODEL_FILE` when it
 *   is not a model this package knows
 */
export async function loadModelFile(path: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  let file: SafetensorsFile;
  try {
    file = parseSafetensors(await readFile(path));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'EISDIR' ? 'DATA_UNAVAILABLE' : 'INVALID_MODEL_FILE';
    throw new EvalError(code, `cannot load ${path}: ${(e as Error).message}`);
  }
  const base = dirname(path);
  const name = options.name ?? path.split(/[\\/]/).pop()!.replace(/\.safetensors$/, '');
  const meta = file.metadata;
  const train = json<{ kind: string; config: Record<string, unknown> }>(meta[TRAIN_STATE_KEY], TRAIN_STATE_KEY);
  const prefix = train ? 'model.' : '';
  const kind = train?.kind ?? (meta[BLT_ARGS_METADATA_KEY] ? 'blt' : meta[ARGS_METADATA_KEY] ? 'entropy' : meta[TOKEN_MODEL_ARGS_KEY] ? 'token' : undefined);
  const load = (registry: Parameters<typeof loadReferenceWeights>[0], dispose: () => void) => {
    try {
      loadReferenceWeights(registry, file, { prefix });
    } catch (e) {
      dispose();
      throw new EvalError('INVALID_MODEL_FILE', `${path}: ${(e as Error).message}`);
    }
  };
  if (kind === 'blt') {
    const args = (train ? train.config['model'] : json<BltArgs>(meta[BLT_ARGS_METADATA_KEY], BLT_ARGS_METADATA_KEY)) as BltArgs;
    const stored = (train ? train.config['patching'] : json(meta['patching'], 'patching')) as
      | { mode?: BltPatching['mode']; entropyModel?: string; threshold?: number; patchSize?: number; maxPatchLength?: number }
      | null
      | undefined;
    const mode = stored?.mode ?? 'entropy';
    const blt = new ByteLatentTransformer(args);
    load(blt.registry, () => blt.dispose());
    const patcher = mode === 'entropy' ? await loadPatcher(options.patcher ?? stored?.entropyModel, base) : undefined;
    const patching: BltPatching = {
      mode,
      ...(patcher ? { patcher } : {}),
      ...(stored?.threshold !== undefined ? { threshold: stored.threshold } : {}),
      ...(stored?.patchSize !== undefined ? { patchSize: stored.patchSize } : {}),
      ...(stored?.maxPatchLength !== undefined ? { maxPatchLength: stored.maxPatchLength } : {}),
    };
    const model = bltScorer(blt, patching, name);
    return {
      kind: 'blt',
      model,
      parameters: blt.parameterCount(),
      shape: bltFlopsShape(args),
      patching,
      contextBytes: model.maxContext,
      dispose: () => {
        blt.dispose();
        patcher?.dispose();
      },
    };
  }
  if (kind === 'entropy') {
    const args = (train ? train.config['model'] : json<EntropyModelArgs>(meta[ARGS_METADATA_KEY], ARGS_METADATA_KEY)) as EntropyModelArgs;
    const em = new EntropyModel(args);
    load(em.registry, () => em.dispose());
    return {
      kind: 'entropy',
      model: entropyModelScorer(em, name),
      parameters: em.registry.count(),
      shape: transformerShape(args),
      vocab: em.args.vocabSize,
      contextTokens: Math.min(em.args.window ?? em.maxSeqLen, em.maxSeqLen),
      dispose: () => em.dispose(),
    };
  }
  if (kind === 'token') {
    const args = (train ? train.config['model'] : json<TokenTransformerArgs>(meta[TOKEN_MODEL_ARGS_KEY], TOKEN_MODEL_ARGS_KEY)) as TokenTransformerArgs;
    const tokJson = train ? train.config['tokenizer'] : json(meta[TOKEN_MODEL_TOKENIZER_KEY], TOKEN_MODEL_TOKENIZER_KEY);
    if (tokJson === undefined) throw new EvalError('INVALID_MODEL_FILE', `${path}: a token model without its tokenizer ("${TOKEN_MODEL_TOKENIZER_KEY}")`);
    const tokenizer = BytePairTokenizer.fromJSON(tokJson);
    const tm = new TokenTransformer(args);
    load(tm.registry, () => tm.dispose());
    return {
      kind: 'token',
      model: tokenTransformerScorer(tm, tokenizer, name),
      parameters: tm.parameterCount(),
      shape: transformerShape(args),
      vocab: args.vocab_size,
      contextTokens: tm.maxSeqLen,
      dispose: () => tm.dispose(),
    };
  }
  throw new EvalError(
    'INVALID_MODEL_FILE',
    `${path} is not a model this package knows: no "${BLT_ARGS_METADATA_KEY}", "${ARGS_METADATA_KEY}", "${TOKEN_MODEL_ARGS_KEY}" or "${TRAIN_STATE_KEY}" metadata`,
  );
}
