import * as tf from '@tensorflow/tfjs-core';
import type { SafetensorsDtype, SafetensorsTensor } from '../safetensors.js';
import { type TensorSource, bytesToFloat32, bytesToFloat32Transposed, firstNonFinite } from '../tensor-source.js';
import { NnError } from '../errors.js';
import type { ParameterRegistry } from './parameters.js';

/** Options of {@link loadReferenceWeights}. */
export interface LoadWeightsOptions {
  /** Keys in the file that the model does not have are an error (default true). */
  readonly strict?: boolean;
  /** Only consider file keys starting with this prefix, stripped before matching (e.g. `local_encoder.`). */
  readonly prefix?: string;
  /**
   * Check every value before assigning any (default true), so a failed load leaves the model as it
   * was. This reads each tensor twice (the check looks at the raw bits: no float32 copy). With
   * `false`, each tensor is read once and checked just before it is assigned: a non-finite value is
   * still reported (with every other one), but the parameters before it already hold their new
   * values. Use `false` for a large checkpoint on disk when a failed load discards the model anyway.
   */
  readonly atomic?: boolean;
}

const FLOAT_DTYPES: ReadonlySet<SafetensorsDtype> = new Set(['F32', 'F16', 'BF16']);

/**
 * Loads weights saved with the reference's `state_dict` names (F32, F16 or BF16) into a model,
 * transposing Linear weights. The source can be any {@link TensorSource}: a parsed safetensors file,
 * a file opened with `openSafetensorsFile`, a torch checkpoint (`parsePth`, `openPthFile`), shards.
 *
 * Every problem is collected and reported at once: missing keys, unexpected keys, wrong shapes,
 * non-float dtypes, NaN or Inf values. Names, shapes and dtypes are checked first, before any
 * tensor is read; then each parameter is read, widened to float32, checked, assigned and dropped,
 * so the memory needed beyond the model is one tensor's float32 copy (and its raw bytes when the
 * source reads from disk). With `atomic` (the default), nothing is assigned unless every value is
 * finite, so a failed load leaves the model as it was.
 *
 * @param registry - the model's parameters
 * @param source - the weights
 * @param options - strictness, key prefix, atomicity
 * @throws {NnError} `INVALID_CHECKPOINT` listing every problem
 * @throws whatever the source throws when a read fails (an I/O error of a file, say)
 */
export function loadReferenceWeights(registry: ParameterRegistry, source: TensorSource, options: LoadWeightsOptions = {}): void {
  const { strict = true, prefix = '', atomic = true } = options;
  const problems: string[] = [];
  const fileKeys = new Set(
    source
      .names()
      .filter((n) => n.startsWith(prefix))
      .map((n) => n.slice(prefix.length)),
  );
  const params = registry.list();
  const fail = (note = '') => {
    throw new NnError(
      'INVALID_CHECKPOINT',
      `checkpoint does not fit the model (${problems.length} problem(s)):\n  ${problems.join('\n  ')}${note}`,
    );
  };
  const nonFinite = (name: string, bytes: Uint8Array, dtype: SafetensorsDtype): boolean => {
    const bad = firstNonFinite(bytes, dtype);
    if (bad < 0) return false;
    const size = dtype === 'F32' ? 4 : 2;
    const value = bytesToFloat32(bytes.subarray(bad * size, (bad + 1) * size), dtype, name)[0];
    problems.push(`"${prefix}${name}" holds a non-finite value (${value}) at flat index ${bad}`);
    return true;
  };
  for (const p of params) {
    if (!fileKeys.has(p.name)) {
      problems.push(`missing "${prefix}${p.name}" (expected shape [${p.referenceShape.join(', ')}])`);
      continue;
    }
    fileKeys.delete(p.name);
    const info = source.info(prefix + p.name);
    if (info.shape.join() !== p.referenceShape.join()) {
      problems.push(`"${prefix}${p.name}" has shape [${info.shape.join(', ')}], expected [${p.referenceShape.join(', ')}]`);
      continue;
    }
    if (!FLOAT_DTYPES.has(info.dtype)) {
      problems.push(`"${prefix}${p.name}" has dtype ${info.dtype}, expected F32, F16 or BF16`);
      continue;
    }
    // The atomic pass reads each tensor once here, checks its bits and drops it.
    if (atomic) nonFinite(p.name, source.readBytes(prefix + p.name), info.dtype);
  }
  if (strict) for (const k of fileKeys) problems.push(`unexpected "${prefix}${k}"`);
  if (problems.length > 0) fail();

  // One parameter at a time: read, widen, check, assign, drop.
  let assigned = 0;
  for (const p of params) {
    const name = prefix + p.name;
    const { dtype } = source.info(name);
    const bytes = source.readBytes(name);
    if (!atomic && nonFinite(p.name, bytes, dtype)) continue;
    if (problems.length > 0) continue;
    const what = `${source.description}: tensor "${name}"`;
    const [rows, cols] = p.referenceShape;
    const hostTransposed = p.transposed && p.referenceShape.length === 2;
    const data = hostTransposed ? bytesToFloat32Transposed(bytes, dtype, rows!, cols!, what) : bytesToFloat32(bytes, dtype, what);
    tf.tidy(() => {
      const t = tf.tensor(data, hostTransposed ? p.variable.shape : (p.referenceShape as number[]), 'float32');
      p.variable.assign(p.transposed && !hostTransposed ? tf.transpose(t) : t);
    });
    assigned++;
  }
  if (problems.length > 0)
    fail(
      `\n(${assigned} of ${params.length} parameters were assigned before the first bad value: load with atomic: true to check every value first)`,
    );
}

/**
 * Builds a model straight from a checkpoint: give {@link initialValues} to the model's
 * `ParameterRegistry` (option `initialValues`) so every weight is created from the file — read,
 * widened to float32 and turned into the variable one at a time, with no random initialisation and no
 * second copy of the model — then call {@link finish}, which reports every problem at once, as
 * {@link loadReferenceWeights} does: missing, unexpected, mis-shaped, non-float and non-finite
 * weights. A weight with a problem is created as zeros (the model is to be discarded).
 *
 * @example
 * const init = new CheckpointInitializer(source);
 * const model = new EntropyModel(args, 0, { initialValues: init.initialValues });
 * init.finish(model.registry); // throws NnError INVALID_CHECKPOINT listing every problem
 */
export class CheckpointInitializer {
  private readonly problems: string[] = [];
  private readonly used = new Set<string>();
  private readonly prefix: string;
  private readonly strict: boolean;

  /**
   * @param source - the weights, with the reference's names
   * @param options - strictness (unexpected keys are an error, default true) and key prefix
   */
  constructor(
    readonly source: TensorSource,
    options: Pick<LoadWeightsOptions, 'strict' | 'prefix'> = {},
  ) {
    this.prefix = options.prefix ?? '';
    this.strict = options.strict ?? true;
  }

  /**
   * The registry's `initialValues`: a weight's values from the source (widened to float32, and
   * transposed in the same pass when the registry keeps it transposed), or zeros when it has a problem.
   */
  readonly initialValues = (name: string, referenceShape: readonly number[], transposed: boolean): Float32Array => {
    const key = this.prefix + name;
    const size = referenceShape.reduce((a, b) => a * b, 1);
    if (!this.check(name, referenceShape)) return new Float32Array(size);
    const info = this.source.info(key);
    const bytes = this.source.readBytes(key);
    const bad = firstNonFinite(bytes, info.dtype);
    if (bad >= 0) {
      const width = info.dtype === 'F32' ? 4 : 2;
      const value = bytesToFloat32(bytes.subarray(bad * width, (bad + 1) * width), info.dtype, key)[0];
      this.problems.push(`"${key}" holds a non-finite value (${value}) at flat index ${bad}`);
      return new Float32Array(size);
    }
    // Once the load has failed, the remaining weights are only checked, not converted.
    if (this.problems.length > 0) return new Float32Array(size);
    const what = `${this.source.description}: tensor "${key}"`;
    if (transposed && referenceShape.length === 2)
      return bytesToFloat32Transposed(bytes, info.dtype, referenceShape[0]!, referenceShape[1]!, what);
    return bytesToFloat32(bytes, info.dtype, what);
  };

  /**
   * Takes a tensor the model reads from the source itself (a `HostEmbedding`) instead of as a
   * weight: checks that it is there with that shape and a float dtype (a problem is recorded for
   * {@link finish}, as for any weight) without reading its values, and marks it as taken.
   *
   * @param name - the tensor's reference name (without the prefix)
   * @param referenceShape - the shape the model needs
   * @returns whether the tensor fits
   */
  check(name: string, referenceShape: readonly number[]): boolean {
    const key = this.prefix + name;
    if (!this.source.has(key)) {
      this.problems.push(`missing "${key}" (expected shape [${referenceShape.join(', ')}])`);
      return false;
    }
    this.used.add(key);
    const info = this.source.info(key);
    if (info.shape.join() !== referenceShape.join()) {
      this.problems.push(`"${key}" has shape [${info.shape.join(', ')}], expected [${referenceShape.join(', ')}]`);
      return false;
    }
    if (!FLOAT_DTYPES.has(info.dtype)) {
      this.problems.push(`"${key}" has dtype ${info.dtype}, expected F32, F16 or BF16`);
      return false;
    }
    return true;
  }

  /**
   * Checks that the model took every tensor of the source (unless not strict) and that no weight
   * had a problem.
   *
   * @param registry - the registry built with {@link initialValues}
   * @throws {NnError} `INVALID_CHECKPOINT` listing every problem
   */
  finish(registry: ParameterRegistry): void {
    const problems = [...this.problems];
    for (const p of registry.list()) {
      if (!this.used.has(this.prefix + p.name) && !problems.some((m) => m.startsWith(`missing "${this.prefix}${p.name}"`))) {
        problems.push(`"${this.prefix}${p.name}" was not built from the checkpoint (the registry was not given initialValues)`);
      }
    }
    if (this.strict) {
      for (const name of this.source.names())
        if (name.startsWith(this.prefix) && !this.used.has(name)) problems.push(`unexpected "${name}"`);
    }
    if (problems.length > 0) {
      throw new NnError(
        'INVALID_CHECKPOINT',
        `checkpoint does not fit the model (${problems.length} problem(s)):\n  ${problems.join('\n  ')}`,
      );
    }
  }
}

/**
 * The model's weights in reference layout and names (Linear weights transposed back to
 * `[out, in]`), ready for `serializeSafetensors`.
 *
 * @param registry - the model's parameters
 * @param prefix - prepended to every name
 */
export async function referenceStateDict(registry: ParameterRegistry, prefix = ''): Promise<Map<string, SafetensorsTensor>> {
  const out = new Map<string, SafetensorsTensor>();
  for (const p of registry.list()) {
    const t = p.transposed ? tf.transpose(p.variable) : p.variable;
    const data = (await t.data()) as Float32Array;
    if (t !== p.variable) t.dispose();
    out.set(prefix + p.name, { dtype: 'F32', shape: p.referenceShape, data: Float32Array.from(data) });
  }
  return out;
}
