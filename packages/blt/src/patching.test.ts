import { EntropyModel, EntropyPatcher, findPatchBoundaries } from '@bytelatent/entropy-patcher';
import { BltError } from '@bytelatent/nn';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { ByteLatentTransformer } from './blt-model.js';
import { rowLogProbs } from './metrics.js';
import { bltPatchingFromSettings, bltPatchingOfModel, patchOptionsOf, patchRows, patchingOfMetadata } from './patching.js';
import { SMALL_ARGS } from './test-fixtures.js';

const patcher = EntropyPatcher.fromModel(new EntropyModel({ dim: 16, n_layers: 1, n_heads: 1, vocab_size: 260, max_seqlen: 64 }, 3), {
  threshold: 5.5,
  maxPatchLength: 3,
});
afterAll(() => patcher.dispose());
const row = Int32Array.from([1, ...new TextEncoder().encode('patches scale better')].map((b, i) => (i === 0 ? b : b + 4)));

describe('BltPatching: one object for every BLT scorer', () => {
  it("takes the files' settings over the patcher's, keeping the patcher only where the rule reads it", () => {
    expect(bltPatchingFromSettings({ threshold: 2, maxPatchLength: 16 }, patcher)).toEqual({
      mode: 'entropy',
      patcher,
      threshold: 2,
      maxPatchLength: 16,
    });
    expect(bltPatchingFromSettings({ mode: 'space' }, patcher)).toEqual({ mode: 'space' });
  });

  it("a loaded model's patching: what its files record over the patcher's defaults, the recorded source not read", () => {
    expect(bltPatchingOfModel({ maxPatchLength: 16, entropyModel: 'elsewhere.safetensors' }, patcher)).toEqual({
      mode: 'entropy',
      patcher,
      threshold: 5.5,
      maxPatchLength: 16,
    });
    expect(bltPatchingOfModel(null, patcher)).toEqual(bltPatchingFromSettings(patcher.defaults, patcher));
    expect(bltPatchingOfModel({ mode: 'static', patchSize: 4 }, undefined)).toEqual({ mode: 'static', patchSize: 4 });
  });

  it('patches rows as training does: no next-token slot, the maximum length applied', async () => {
    const patching = bltPatchingFromSettings(patcher.defaults, patcher);
    const [lengths] = await patchRows(patching, [row]);
    const h = (await patcher.model.entropies([row]))[0]!;
    expect(Array.from(lengths!)).toEqual(
      Array.from(findPatchBoundaries(row, h, { mode: 'entropy', threshold: 5.5, maxPatchLength: 3, includeNextToken: false }).patchLengths),
    );
    expect(lengths!.reduce((a, b) => a + b, 0)).toBe(row.length);
    expect(Math.max(...lengths!)).toBeLessThanOrEqual(3);
  });

  it('refuses, before any row, what cannot patch byte rows or lacks what the rule needs', () => {
    for (const bad of [
      { mode: 'entropy' as const },
      { mode: 'static' as const },
      { mode: 'combined' as const, patcher },
      { mode: 'bpe' as const },
      { mode: 'bpe-patcher' as const },
    ])
      expect(() => patchOptionsOf(bad)).toThrow(BltError);
  });

  it('reads the patching a weights file records, and refuses a malformed entry', () => {
    expect(patchingOfMetadata({ patching: JSON.stringify({ mode: 'space', maxPatchLength: 16 }) })).toEqual({
      mode: 'space',
      maxPatchLength: 16,
    });
    expect(patchingOfMetadata({ patching: 'null' })).toBeUndefined();
    expect(patchingOfMetadata({})).toBeUndefined();
    expect(() => patchingOfMetadata({ patching: '{' })).toThrow(/not JSON/);
    expect(() => patchingOfMetadata({ patching: '[1]' })).toThrow(/JSON object/);
  });

  it('rowLogProbs: ln p of every target under the rows patched that way, leaving no tensor', async () => {
    const blt = new ByteLatentTransformer(SMALL_ARGS, 2);
    try {
      const patching = bltPatchingFromSettings({ mode: 'static', patchSize: 3 }, undefined);
      const tokens = row.subarray(0, row.length - 1);
      const targets = row.subarray(1);
      const before = tf.memory().numTensors;
      const { logProbs, patchLengths } = await rowLogProbs(blt, patching, [{ tokens, targets }]);
      expect(tf.memory().numTensors).toBe(before);
      const losses = blt.tokenLosses([tokens], patchLengths, [targets]);
      const expected = Array.from((await losses.data()) as Float32Array, (x) => -x);
      losses.dispose();
      expect(Array.from(logProbs[0]!)).toEqual(expected);
    } finally {
      blt.dispose();
    }
  });
});
