import {
  decoderPatchIdsFromLengths,
  findPatchBoundaries,
  patchIdsFromLengths,
} from '@bytelatent/entropy-patcher';
import { type Comparison, compareArrays } from '../compare.js';
import type { GoldenCheck } from './check.js';
import { goldenEntropyModel } from './entropy-check.js';

const CLAIMED = new Set(['patch_start_ids', 'patch_lengths_unsplit', 'patch_lengths', 'patch_ids', 'decoder_patch_ids']);

/** Drops the trailing padding the reference leaves in unsplit arrays (golden README, edge cases). */
function dropPadding(values: Int32Array, isPadding: (v: number) => boolean): Int32Array {
  let end = values.length;
  while (end > 0 && isPadding(values[end - 1]!)) end--;
  return values.subarray(0, end);
}

/**
 * Patch boundaries end to end: our entropy model's entropies for the case's `tokens`, then the
 * entropy patching rule with the config's threshold (`patching_threshold`, or the case's
 * `threshold`) and `max_patch_length`, `include_next_token` as the model's forward uses it.
 * Integers, exact.
 */
export const patchCheck: GoldenCheck = {
  name: 'entropy-patching',
  claims: (name) => CLAIMED.has(name),
  async run(c) {
    if (!c.tensors.has('tokens')) return 'case has no "tokens" tensor';
    const mode = c.config.blt_args['patching_mode'];
    if (mode !== undefined && mode !== 'entropy') return `patching_mode ${String(mode)} is not checked here`;
    const threshold = (c.json['threshold'] ?? c.config.blt_args['patching_threshold']) as number | undefined;
    if (typeof threshold !== 'number') return 'no threshold in the case JSON or patching_threshold in config.json';
    const maxPatchLength = c.config.blt_args['max_patch_length'];
    const model = goldenEntropyModel(c);
    if (typeof model === 'string') return model;
    const tokens = c.tensors.toInt32('tokens');
    const entropies = (await model.entropies([tokens]))[0]!;
    const b = findPatchBoundaries(tokens, entropies, {
      mode: 'entropy',
      threshold,
      includeNextToken: true,
      ...(typeof maxPatchLength === 'number' ? { maxPatchLength } : {}),
    });
    const n = tokens.length;
    const ours: Record<string, Int32Array> = {
      patch_start_ids: b.patchStartsUnsplit,
      patch_lengths_unsplit: b.patchLengthsUnsplit,
      patch_lengths: b.patchLengths,
      patch_ids: patchIdsFromLengths(b.patchLengths, n),
      decoder_patch_ids: decoderPatchIdsFromLengths(b.patchLengths, n),
    };
    const out: Comparison[] = [];
    for (const name of CLAIMED) {
      if (!c.tensors.has(name)) continue;
      let expected = c.tensors.toInt32(name);
      if (name === 'patch_start_ids') expected = dropPadding(expected, (v) => v === n + 1);
      if (name === 'patch_lengths_unsplit') expected = dropPadding(expected, (v) => v === 0);
      out.push(compareArrays(name, name, expected, ours[name]!, 0));
    }
    return out;
  },
};
