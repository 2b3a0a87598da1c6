import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type PretrainedBlt, loadPretrained } from '@bytelatent/blt';
import { type SafetensorsFile, parseSafetensors } from '@bytelatent/nn';

/** `config.json` of a golden folder: every argument of every component (see shared/golden/README.md). */
export interface GoldenConfig {
  readonly blt_args: Readonly<Record<string, unknown>>;
  readonly entropy_model_args?: Readonly<Record<string, unknown>>;
  readonly [key: string]: unknown;
}

/** One entry of `index.json`. */
export interface GoldenCaseRef {
  readonly name: string;
  readonly seq_len?: number;
  readonly num_patches?: number;
  readonly loss?: number;
}

/** A loaded case: its JSON (integer data, scalars, texts) and its tensors. */
export interface GoldenCase {
  readonly name: string;
  readonly json: Readonly<Record<string, unknown>>;
  readonly tensors: SafetensorsFile;
  readonly config: GoldenConfig;
  /** A weights file of the folder (e.g. `entropy_model.safetensors`), or why it cannot be read. */
  weights(fileName: string): SafetensorsFile | string;
  /**
   * For a folder whose model is stored in a published layout (`config.json` `pretrained`): the BLT
   * and entropy patcher as `loadPretrained` reads them, or why they cannot be loaded.
   */
  readonly pretrained?: PretrainedBlt | string;
}

/**
 * `config.json`'s `pretrained` entry: the model is stored in a published layout under the folder,
 * and every check runs on what `loadPretrained` reads from it (arguments and patching settings included).
 */
export interface GoldenPretrainedEntry {
  /** The layout the files are in (`consolidated`, `hub`, `transformers`); the loader must detect the same. */
  readonly layout: string;
  /** The BLT's folder, relative to the golden folder. */
  readonly model: string;
  /** The entropy model's folder, when the loader is to be given one explicitly. */
  readonly entropy_model?: string | null;
}

/** A golden folder: configuration and case list, cases loaded on demand. */
export interface GoldenFolder {
  readonly dir: string;
  readonly config: GoldenConfig;
  readonly cases: readonly GoldenCaseRef[];
  /** See {@link GoldenCase.pretrained}; undefined for a folder with plain weight files. */
  readonly pretrained?: PretrainedBlt | string;
  loadCase(ref: GoldenCaseRef): Promise<GoldenCase>;
}

/** A golden folder that cannot be read: missing file, bad JSON, corrupt tensors. */
export class GoldenFolderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GoldenFolderError';
  }
}

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new GoldenFolderError(`cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new GoldenFolderError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * Opens a folder in the layout of `shared/golden/tiny`: `config.json`, `index.json` (the case list)
 * and `cases/<name>.{json,safetensors}`. Nothing about the cases is hard-coded.
 *
 * @param dir - the folder
 * @returns the folder, with cases loaded lazily
 * @throws {GoldenFolderError} when `config.json` or `index.json` is missing or malformed
 */
export async function openGoldenFolder(dir: string): Promise<GoldenFolder> {
  const config = await readJson(join(dir, 'config.json'));
  if (!isObject(config) || !isObject(config['blt_args'])) {
    throw new GoldenFolderError(`${join(dir, 'config.json')} has no "blt_args" object`);
  }
  const index = await readJson(join(dir, 'index.json'));
  const cases = isObject(index) ? index['cases'] : undefined;
  if (!Array.isArray(cases) || !cases.every((c) => isObject(c) && typeof c['name'] === 'string')) {
    throw new GoldenFolderError(`${join(dir, 'index.json')} must hold {"cases": [{"name": ...}, ...]}`);
  }
  const goldenConfig = config as GoldenConfig;
  // Weight files are read once per folder and shared by every case.
  const weightFiles = new Map<string, SafetensorsFile | string>();
  const weights = (fileName: string): SafetensorsFile | string => {
    const cached = weightFiles.get(fileName);
    if (cached !== undefined) return cached;
    let result: SafetensorsFile | string;
    try {
      result = parseSafetensors(readFileSync(join(dir, fileName)));
    } catch (e) {
      result = `cannot read ${fileName}: ${(e as Error).message}`;
    }
    weightFiles.set(fileName, result);
    return result;
  };
  const pretrained = isObject(config['pretrained']) ? await loadPretrainedEntry(dir, config['pretrained']) : undefined;
  return {
    dir,
    config: goldenConfig,
    cases: cases as GoldenCaseRef[],
    ...(pretrained !== undefined ? { pretrained } : {}),
    async loadCase(ref: GoldenCaseRef): Promise<GoldenCase> {
      const json = await readJson(join(dir, 'cases', `${ref.name}.json`));
      if (!isObject(json)) throw new GoldenFolderError(`cases/${ref.name}.json is not a JSON object`);
      const path = join(dir, 'cases', `${ref.name}.safetensors`);
      let bytes: Uint8Array;
      try {
        bytes = await readFile(path);
      } catch (e) {
        throw new GoldenFolderError(`cannot read ${path}: ${(e as Error).message}`);
      }
      let tensors: SafetensorsFile;
      try {
        tensors = parseSafetensors(bytes);
      } catch (e) {
        throw new GoldenFolderError(`${path}: ${(e as Error).message}`);
      }
      return { name: ref.name, json, tensors, config: goldenConfig, weights, ...(pretrained !== undefined ? { pretrained } : {}) };
    },
  };
}

/** Loads the model of a `pretrained` entry, checking the detected layout; an error becomes its message. */
async function loadPretrainedEntry(dir: string, entry: Record<string, unknown>): Promise<PretrainedBlt | string> {
  const { layout, model, entropy_model: entropy } = entry as Partial<GoldenPretrainedEntry>;
  if (typeof model !== 'string' || typeof layout !== 'string') return 'config.json "pretrained" needs "layout" and "model" strings';
  try {
    const loaded = await loadPretrained(join(dir, model), typeof entropy === 'string' ? { patcher: join(dir, entropy) } : {});
    if (loaded.layout !== layout) {
      loaded.dispose();
      return `the loader detected the ${loaded.layout} layout in ${model}, config.json says ${layout}`;
    }
    return loaded;
  } catch (e) {
    return `cannot load ${model}: ${(e as Error).message}`;
  }
}
