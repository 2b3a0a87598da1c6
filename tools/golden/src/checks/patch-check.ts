import { type PatchOptions, decoderPatchIdsFromLengths, findPatchBoundaries, patchIdsFromLengths } from '@bytelatent/entropy-patcher';
import { type Comparison, compareArrays } from '../compare.js';
import type { GoldenCase } from '../golden-folder.js';
import type { GoldenCheck } from './check.js';
import { goldenEntropyModel } from './entropy-check.js';

const CLAIMED = new Set(['patch_start_ids', 'patch_lengths_unsplit', 'patch_lengths', 'patch_ids', 'decoder_patch_ids']);

/** Drops the trailing padding the reference leaves in unsplit arrays (golden README, edge cases). */
function dropPadding(values: Int32Array, isPadding: (v: number) => boolean): Int32Array {
  let end = values.length;
  while (end > 0 && isPadding(values[end - 1]!)) end--;
  return values.subarray(0, end);
}

/** A field of `patcher_args` (the `PatcherArgs` the vectors were patched with), else of `blt_args`. */
function patcherField(c: GoldenCase, patcherKey: string, bltKey: string): unknown {
  const patcher = c.config['patcher_args'];
  if (patcher !== null && typeof patcher === 'object' && patcherKey in patcher) return (patcher as Record<string, unknown>)[patcherKey];
  return c.config.blt_args[bltKey];
}

/**
 * Patch boundaries end to end: our entropy model's entropies for the case's `tokens`, then the
 * reference's entropy rule as configured (`patcher_args`, else the `blt_args` patching fields):
 * `monotonicity` selects the monotonic rule, else a `threshold_add` the combined one, else the
 * global threshold (the case's `threshold`, else the configured one); `max_patch_length`;
 * `include_next_token` as the model's forward uses it. For a folder in a published layout, the
 * settings are those the loader read from its files. Integers, exact.
 */
export const patchCheck: GoldenCheck = {
  name: 'entropy-patching',
  claims: (name) => CLAIMED.has(name),
  async run(c) {
    if (!c.tensors.has('tokens')) return 'case has no "tokens" tensor';
    const model = goldenEntropyModel(c);
    if (typeof model === 'string') return model;
    const tokens = c.tensors.toInt32('tokens');
    let options: PatchOptions;
    if (c.pretrained !== undefined && typeof c.pretrained !== 'string' && c.pretrained.patcher) {
      // A published layout: the settings are the ones the loader read from the files.
      const { mode = 'entropy', threshold, thresholdAdd, maxPatchLength } = c.pretrained.patcher.defaults;
      if (mode !== 'entropy' && mode !== 'monotonic' && mode !== 'combined') return `patching mode ${mode} is not checked here`;
      options = {
        mode,
        includeNextToken: true,
        ...(threshold !== undefined ? { threshold } : {}),
        ...(thresholdAdd !== undefined ? { thresholdAdd } : {}),
        ...(maxPatchLength !== undefined ? { maxPatchLength } : {}),
      };
    } else {
      const mode = patcherField(c, 'patching_mode', 'patching_mode');
      if (mode != null && mode !== 'entropy') return `patching_mode ${String(mode)} is not checked here`;
      const threshold = c.json['threshold'] ?? patcherField(c, 'threshold', 'patching_threshold');
      if (typeof threshold !== 'number') return 'no threshold in the case JSON or config.json';
      const thresholdAdd = patcherField(c, 'threshold_add', 'patching_threshold_add');
      if (thresholdAdd != null && typeof thresholdAdd !== 'number') return `threshold_add must be a number, got ${String(thresholdAdd)}`;
      // The reference's order (find_entropy_patch_start_ids): monotonicity first, then threshold_add.
      const rule =
        patcherField(c, 'monotonicity', 'monotonicity') === true ? 'monotonic' : typeof thresholdAdd === 'number' ? 'combined' : 'entropy';
      const maxPatchLength = patcherField(c, 'max_patch_length', 'max_patch_length');
      options = {
        mode: rule,
        threshold,
        ...(rule === 'combined' ? { thresholdAdd: thresholdAdd as number } : {}),
        includeNextToken: true,
        ...(typeof maxPatchLength === 'number' ? { maxPatchLength } : {}),
      };
    }
    const entropies = (await model.entropies([tokens]))[0]!;
    const b = findPatchBoundaries(tokens, entropies, options);
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
