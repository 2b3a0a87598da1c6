import * as tf from '@tensorflow/tfjs-core';
import { EntropyModel, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import { type Comparison, FLOAT_TOLERANCE, compareArrays, mergeComparisons } from '../compare.js';
import type { GoldenCase } from '../golden-folder.js';
import type { GoldenCheck } from './check.js';

// Layer-level activations the model exposes through its tap; finer ones (wq, w1...) stay skipped.
const TAPPED = /^act\.entropy\.(tok_embeddings|layers\.\d+|norm|output)$/;

/** Loads the entropy model of a folder once per folder (weights file + `entropy_model_args`). */
const models = new WeakMap<object, EntropyModel>();
export function goldenEntropyModel(c: GoldenCase): EntropyModel | string {
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
 * The entropy model end to end from the case's `tokens`: `entropy.logits`, `entropies` and the
 * layer outputs `act.entropy.{tok_embeddings, layers.N, norm, output}` (floats, 1e-4).
 */
export const entropyCheck: GoldenCheck = {
  name: 'entropy-model',
  claims: (name) => name === 'entropy.logits' || name === 'entropies' || TAPPED.test(name),
  run(c) {
    if (!c.tensors.has('tokens')) return 'case has no "tokens" tensor';
    const model = goldenEntropyModel(c);
    if (typeof model === 'string') return model;
    const tokens = c.tensors.toInt32('tokens');
    const captured = new Map<string, Float32Array>();
    const entropies = tf.tidy(() => {
      const logits = model.logits([tokens], (path, value) => captured.set(`act.entropy.${path}`, value.dataSync() as Float32Array));
      captured.set('entropy.logits', logits.dataSync() as Float32Array);
      const logp = tf.logSoftmax(logits);
      return tf.neg(tf.sum(tf.mul(tf.exp(logp), logp), -1)).dataSync() as Float32Array;
    });
    captured.set('entropies', entropies);
    const out: Comparison[] = [];
    const acts: Comparison[] = [];
    for (const name of c.tensors.names()) {
      if (!entropyCheck.claims(name)) continue;
      const ours = captured.get(name);
      if (!ours) continue;
      const cmp = compareArrays(name.startsWith('act.') ? 'act.entropy' : name, name, c.tensors.toFloat32(name), ours, FLOAT_TOLERANCE);
      (name.startsWith('act.') ? acts : out).push(cmp);
    }
    if (acts.length > 0) out.push(mergeComparisons('act.entropy', acts));
    return out;
  },
};
