/**
 * How a BLT patches the rows it scores: one object carrying the rule the model was trained with, its
 * settings as the model's files give them, and the entropy patcher the rule reads. Built once from a
 * loaded model (`bltPatchingFromSettings(pretrained.patching, pretrained.patcher)`) and used by every
 * scorer (`rowLogProbs` here, `@bytelatent/evals`' `bltScorer`, the server's `/v1/score`), so the
 * same file is patched the same way everywhere.
 */
import { BltError } from '@bytelatent/nn';
import {
  type EntropyPatcher,
  type PatchOptions,
  type PatcherDefaults,
  findPatchBoundaries,
  patchingSignal,
} from '@bytelatent/entropy-patcher';

/** The patching rule of a BLT, with the entropy patcher its entropy modes read. */
export interface BltPatching {
  /** Any rule of `findPatchBoundaries` that reads at most the row and its entropies. */
  readonly mode: PatchOptions['mode'];
  /** Entropy modes: the entropy model (its `defaults.threshold` unless `threshold` is given). */
  readonly patcher?: EntropyPatcher;
  readonly threshold?: number;
  /** `combined` mode: the relative threshold (the reference's `threshold_add`). */
  readonly thresholdAdd?: number;
  /** `static`: bytes per patch; `entropy-top-k`: the mean patch size aimed at. */
  readonly patchSize?: number;
  readonly maxPatchLength?: number;
}

/** Whether a patching rule reads an entropy model. */
export function usesEntropyModel(patching: Pick<BltPatching, 'mode'>): boolean {
  return patchingSignal(patching.mode) === 'entropies';
}

/**
 * The patching of a BLT loaded with its settings (`loadPretrained`'s `patching`, an entropy
 * patcher's `defaults`): mode (entropy when unset), thresholds, patch size and maximum patch length
 * as the files give them. The patcher is kept only when the mode reads it.
 *
 * @param settings - the patching settings
 * @param patcher - the entropy patcher
 */
export function bltPatchingFromSettings(settings: PatcherDefaults, patcher: EntropyPatcher | undefined): BltPatching {
  const mode = settings.mode ?? 'entropy';
  return {
    mode,
    ...(usesEntropyModel({ mode }) && patcher ? { patcher } : {}),
    ...(settings.threshold !== undefined ? { threshold: settings.threshold } : {}),
    ...(settings.thresholdAdd !== undefined ? { thresholdAdd: settings.thresholdAdd } : {}),
    ...(settings.patchSize !== undefined ? { patchSize: settings.patchSize } : {}),
    ...(settings.maxPatchLength !== undefined ? { maxPatchLength: settings.maxPatchLength } : {}),
  };
}

/**
 * The patching of a loaded model: the settings its files record (a folder's, or a weights file's
 * `patching` entry) over the entropy patcher's own defaults, as the reference lets the model's
 * `patcher_args` win. A recorded entropy-model source is not read here: `patcher` is the one used.
 * The one rule for every loader (`bytelatent-eval`, the server).
 *
 * @param recorded - what the files record (undefined or null: nothing)
 * @param patcher - the entropy patcher loaded for the model
 */
export function bltPatchingOfModel(recorded: StoredPatching | null | undefined, patcher: EntropyPatcher | undefined): BltPatching {
  const { entropyModel: _source, ...settings } = recorded ?? {};
  return bltPatchingFromSettings({ ...patcher?.defaults, ...settings }, patcher);
}

/**
 * The `findPatchBoundaries` options of a patching, checked: an entropy mode needs a patcher and a
 * threshold; rules that read a tokenizer's delimiters or another model (`bpe`, `bpe-patcher`) cannot
 * patch byte rows.
 *
 * @throws {BltError} `INVALID_ARGUMENT` naming what is missing
 */
export function patchOptionsOf(patching: BltPatching): PatchOptions {
  const { mode, patcher } = patching;
  if (mode === 'bpe' || mode === 'bpe-patcher')
    throw new BltError('INVALID_ARGUMENT', `patching mode '${mode}' cannot patch byte rows (it reads BPE delimiters or another model)`);
  const threshold = patching.threshold ?? patcher?.defaults.threshold;
  if (usesEntropyModel(patching) && !patcher)
    throw new BltError('INVALID_ARGUMENT', `${mode} patching needs an entropy patcher (patching.patcher)`);
  if ((mode === 'entropy' || mode === 'monotonic' || mode === 'combined') && threshold === undefined)
    throw new BltError('INVALID_ARGUMENT', `${mode} patching needs a threshold (patching.threshold or the patcher's defaults)`);
  const options: PatchOptions = {
    mode,
    ...(threshold !== undefined && mode !== 'entropy-top-k' ? { threshold } : {}),
    ...(mode === 'combined' ? { thresholdAdd: patching.thresholdAdd } : {}),
    ...(patching.patchSize !== undefined ? { patchSize: patching.patchSize } : {}),
    ...(patching.maxPatchLength !== undefined ? { maxPatchLength: patching.maxPatchLength } : {}),
    includeNextToken: false,
  };
  // The rule's own checks (an unknown mode, a missing thresholdAdd or patch size), before any row.
  try {
    findPatchBoundaries(Int32Array.of(1), Float32Array.of(0), options);
  } catch (e) {
    throw new BltError('INVALID_ARGUMENT', `patching: ${(e as Error).message}`);
  }
  return options;
}

/**
 * Patch lengths of token rows as our training patches them (`apps/train`'s row patcher): each row
 * on its own, its first position a patch of its own, no next-token slot, maximum length applied.
 *
 * @param patching - the patching
 * @param rows - token ids per row (BOS first)
 * @returns the lengths per row (each sums to the row's length)
 * @throws {BltError} `INVALID_ARGUMENT` for a patching that cannot patch rows (see {@link patchOptionsOf});
 *   the patcher's errors for bad rows
 */
export async function patchRows(patching: BltPatching, rows: readonly Int32Array[]): Promise<Int32Array[]> {
  const options = patchOptionsOf(patching);
  const entropies = usesEntropyModel(patching) && rows.length > 0 ? await patching.patcher!.model.entropies(rows) : undefined;
  return rows.map((tokens, i) => findPatchBoundaries(tokens, entropies?.[i], options).patchLengths);
}

/** What a BLT weights file records of its patching (`patching` metadata, as `bytelatent-train export-blt` writes it). */
export type StoredPatching = PatcherDefaults & {
  /** The entropy model the run patched with: a file, a folder, or a shipped name. */
  readonly entropyModel?: string;
};

/**
 * The patching settings a BLT weights file records in its `patching` metadata entry: the training
 * run's rule, thresholds, patch size, maximum patch length and entropy model; undefined when the
 * file records none (`null` or no entry).
 *
 * @param metadata - the safetensors metadata
 * @throws {BltError} `INVALID_CHECKPOINT` when the entry is not a JSON object
 */
export function patchingOfMetadata(metadata: Readonly<Record<string, string>>): StoredPatching | undefined {
  const raw = metadata['patching'];
  if (raw === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (e) {
    throw new BltError('INVALID_CHECKPOINT', `metadata "patching" is not JSON: ${(e as Error).message}`);
  }
  if (value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value))
    throw new BltError('INVALID_CHECKPOINT', `metadata "patching" must be a JSON object, got ${raw.slice(0, 80)}`);
  return value as StoredPatching;
}
