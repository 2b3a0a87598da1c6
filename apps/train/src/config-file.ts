/**
 * The `--config FILE` of the train CLI: a JSON object with the fields of {@link RunConfig}, over the
 * preset's. Every field is checked before anything is built: an unknown or mistyped field is an
 * error naming it (with the field it was probably meant to be), never silently ignored.
 */
import { TrainError } from './errors.js';
import type { RunConfig } from './presets.js';

type Check = (value: unknown) => string | undefined;

const positiveInteger: Check = (v) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 1 ? undefined : 'an integer >= 1');
const nonNegativeInteger: Check = (v) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? undefined : 'an integer >= 0');
const positiveNumber: Check = (v) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? undefined : 'a number > 0');
const nonNegativeNumber: Check = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? undefined : 'a number >= 0');
const fraction: Check = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v < 1 ? undefined : 'a number in [0, 1)');
const ratio: Check = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1 ? undefined : 'a number in [0, 1]');
const finiteNumber: Check = (v) => (typeof v === 'number' && Number.isFinite(v) ? undefined : 'a finite number');
const nonEmptyString: Check = (v) => (typeof v === 'string' && v.length > 0 ? undefined : 'a non-empty string');
const object: Check = (v) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? undefined : 'a JSON object');
const oneOf =
  (...values: string[]): Check =>
  (v) =>
    typeof v === 'string' && values.includes(v) ? undefined : `one of ${values.map((x) => JSON.stringify(x)).join(', ')}`;

/** The top-level fields and what each must be (the model's own arguments are checked when it is built). */
const FIELDS: Record<keyof RunConfig, Check> = {
  kind: oneOf('entropy', 'blt'),
  model: object,
  patching: object,
  seqLen: positiveInteger,
  batchSize: positiveInteger,
  gradAccumulation: positiveInteger,
  steps: positiveInteger,
  lr: positiveNumber,
  warmupSteps: nonNegativeInteger,
  minLrRatio: ratio,
  weightDecay: nonNegativeNumber,
  beta1: fraction,
  beta2: fraction,
  clipNorm: nonNegativeNumber,
  seed: nonNegativeInteger,
  evalEvery: positiveInteger,
  evalBytesPerFile: positiveInteger,
  checkpointEvery: positiveInteger,
};

const PATCHING_FIELDS: Record<string, Check> = {
  mode: oneOf('entropy', 'monotonic', 'combined', 'space', 'static', 'byte'),
  threshold: finiteNumber,
  thresholdAdd: finiteNumber,
  patchSize: positiveInteger,
  maxPatchLength: positiveInteger,
  entropyModel: nonEmptyString,
};

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

function unknownField(where: string, name: string, known: readonly string[]): string {
  const closest = [...known].sort((x, y) => distance(name, x) - distance(name, y))[0];
  const hint =
    closest !== undefined && distance(name, closest) <= Math.max(2, Math.floor(closest.length / 3)) ? `did you mean "${closest}"? ` : '';
  return `${where}: unknown field "${name}" (${hint}known: ${known.join(', ')})`;
}

function checkFields(value: Record<string, unknown>, fields: Record<string, Check>, where: string, prefix: string): string[] {
  const problems: string[] = [];
  for (const [name, v] of Object.entries(value)) {
    const check = fields[name];
    if (!check) {
      problems.push(
        unknownField(
          where,
          `${prefix}${name}`,
          Object.keys(fields).map((k) => `${prefix}${k}`),
        ),
      );
      continue;
    }
    const expected = check(v);
    if (expected !== undefined) problems.push(`${where}: "${prefix}${name}" must be ${expected}, got ${JSON.stringify(v)}`);
  }
  return problems;
}

/**
 * Parses and checks the text of a `--config` file.
 *
 * @param text - the file's text
 * @param where - the file's name, for messages
 * @returns the fields it sets (merged over the preset by the caller)
 * @throws {TrainError} `CONFIG_INVALID` listing every problem: not JSON, not an object, unknown
 *   fields (with the closest known one), wrongly typed or out-of-range values
 */
export function parseConfigFile(text: string, where: string): Partial<RunConfig> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new TrainError('CONFIG_INVALID', `${where} is not JSON: ${(e as Error).message}`);
  }
  if (object(value) !== undefined)
    throw new TrainError(
      'CONFIG_INVALID',
      `${where} must hold a JSON object of run settings, got ${Array.isArray(value) ? 'an array' : JSON.stringify(value)}`,
    );
  const config = value as Record<string, unknown>;
  const problems = checkFields(config, FIELDS, where, '');
  if (object(config['patching']) === undefined)
    problems.push(...checkFields(config['patching'] as Record<string, unknown>, PATCHING_FIELDS, where, 'patching.'));
  if (config['kind'] !== undefined && config['model'] === undefined)
    problems.push(`${where}: "kind" without "model": give the model's arguments with the kind they belong to`);
  if (problems.length > 0) throw new TrainError('CONFIG_INVALID', problems.join('; '));
  return config as Partial<RunConfig>;
}
