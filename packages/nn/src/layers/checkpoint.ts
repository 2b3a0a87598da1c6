import * as tf from '@tensorflow/tfjs-core';
import type { SafetensorsFile, SafetensorsTensor } from '../safetensors.js';
import { NnError } from './errors.js';
import type { ParameterRegistry } from './parameters.js';

/** Options of {@link loadReferenceWeights}. */
export interface LoadWeightsOptions {
  /** Keys in the file that the model does not have are an error (default true). */
  readonly strict?: boolean;
  /** Only consider file keys starting with this prefix, stripped before matching (e.g. `local_encoder.`). */
  readonly prefix?: string;
}

/**
 * Loads weights saved with the reference's `state_dict` names (F32, F16 or BF16) into a model,
 * transposing Linear weights. Every problem is collected and reported at once: missing keys,
 * unexpected keys, wrong shapes, non-float dtypes, NaN or Inf values. Nothing is assigned unless
 * everything is valid, so a failed load leaves the model as it was.
 *
 * @param registry - the model's parameters
 * @param file - a parsed safetensors file
 * @param options - strictness, key prefix
 * @throws {NnError} `INVALID_CHECKPOINT` listing every problem
 */
export function loadReferenceWeights(registry: ParameterRegistry, file: SafetensorsFile, options: LoadWeightsOptions = {}): void {
  const { strict = true, prefix = '' } = options;
  const problems: string[] = [];
  const values = new Map<string, Float32Array>();
  const fileKeys = new Set(file.names().filter((n) => n.startsWith(prefix)).map((n) => n.slice(prefix.length)));
  for (const p of registry.list()) {
    if (!fileKeys.has(p.name)) {
      problems.push(`missing "${prefix}${p.name}" (expected shape [${p.referenceShape.join(', ')}])`);
      continue;
    }
    fileKeys.delete(p.name);
    const info = file.info(prefix + p.name);
    if (info.shape.join() !== p.referenceShape.join()) {
      problems.push(`"${prefix}${p.name}" has shape [${info.shape.join(', ')}], expected [${p.referenceShape.join(', ')}]`);
      continue;
    }
    if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') {
      problems.push(`"${prefix}${p.name}" has dtype ${info.dtype}, expected F32, F16 or BF16`);
      continue;
    }
    const data = file.toFloat32(prefix + p.name);
    const bad = data.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) {
      problems.push(`"${prefix}${p.name}" holds a non-finite value (${data[bad]}) at flat index ${bad}`);
      continue;
    }
    values.set(p.name, data);
  }
  if (strict) for (const k of fileKeys) problems.push(`unexpected "${prefix}${k}"`);
  if (problems.length > 0) {
    throw new NnError('INVALID_CHECKPOINT', `checkpoint does not fit the model (${problems.length} problem(s)):\n  ${problems.join('\n  ')}`);
  }
  for (const p of registry.list()) {
    tf.tidy(() => {
      const t = tf.tensor(values.get(p.name)!, p.referenceShape as number[], 'float32');
      p.variable.assign(p.transposed ? tf.transpose(t) : t);
    });
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
