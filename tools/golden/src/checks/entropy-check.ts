import * as tf from '@tensorflow/tfjs-core';
import { EntropyModel, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import { type Comparison, FLOAT_TOLERANCE, compareArrays, mergeComparisons } from '../compare.js';
import type { GoldenCase } from '../golden-folder.js';
import type { GoldenCheck } from './check.js';

/** Loads the entropy model of a folder once per folder (weights file + `entropy_model_args`, or the `pretrained` layout). */
const models = new WeakMap<object, EntropyModel>();
export function goldenEntropyModel(c: GoldenCase): EntropyModel | string {
  if (c.pretrained !== undefined) {
    if (typeof c.pretrained === 'string') return c.pretrained;
    return c.pretrained.patcher?.model ?? 'the pretrained folder has no entropy model';
  }
  const cached = models.get(c.config);
  if (cached) return cached;
  const args = c.config.entropy_model_args;
  if (!args) return 'config.json has no entropy_model_args';
  const weights = c.weights('entropy_model.safetensors');
  if (typeof weights === 'string') return weights;
  const model = EntropyModel.fromSafetensors(weights, args as unknown as EntropyModelArgs);
  models.set(c.config, model);
  return model;
}

/**
 * The entropy model end to end from the case's `tokens`: `entropy.logits`, `entropies` and every
 * module output `act.entropy.*` (embeddings, each block and its sub-modules, norm, output), floats 1e-4.
 */
export const entropyCheck: GoldenCheck = {
  name: 'entropy-model',
  claims: (name) => name === 'entropy.logits' || name === 'entropies' || name.startsWith('act.entropy.'),
  async run(c) {
    if (!c.tensors.has('tokens')) return 'case has no "tokens" tensor';
    const model = goldenEntropyModel(c);
    if (typeof model === 'string') return model;
    const tokens = c.tensors.toInt32('tokens');
    // Tensors are kept and read asynchronously: WebGPU in Node cannot read back synchronously.
    const kept = new Map<string, tf.Tensor>();
    tf.tidy(() => {
      const logits = model.logits([tokens], (path, value) => kept.set(`act.entropy.${path}`, tf.keep(tf.clone(value))));
      kept.set('entropy.logits', tf.keep(tf.clone(logits)));
      const logp = tf.logSoftmax(logits);
      kept.set('entropies', tf.keep(tf.neg(tf.sum(tf.mul(tf.exp(logp), logp), -1))));
    });
    const captured = new Map<string, Float32Array>();
    for (const [name, t] of kept) captured.set(name, (await t.data()) as Float32Array);
    tf.dispose([...kept.values()]);
    const out: Comparison[] = [];
    const acts: Comparison[] = [];
    for (const name of c.tensors.names()) {
      if (!entropyCheck.claims(name)) continue;
      const ours = captured.get(name);
      if (!ours) {
        // Claimed but not produced: a failure, never a silent gap in the report.
        acts.push({
          group: 'act.entropy',
          items: [name],
          values: 0,
          maxAbsDiff: Number.POSITIVE_INFINITY,
          tolerance: FLOAT_TOLERANCE,
          ok: false,
          firstMismatch: `${name}: not produced by the model`,
        });
        continue;
      }
      const cmp = compareArrays(name.startsWith('act.') ? 'act.entropy' : name, name, c.tensors.toFloat32(name), ours, FLOAT_TOLERANCE);
      (name.startsWith('act.') ? acts : out).push(cmp);
    }
    if (acts.length > 0) out.push(mergeComparisons('act.entropy', acts));
    return out;
  },
};
