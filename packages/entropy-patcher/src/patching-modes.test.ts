// The rules added for the reference's remaining patching modes, on hand-made rows. The reference's
// own outputs for them are checked in reference-patching.test.ts.
import { describe, expect, it } from 'vitest';
import { BPE_ID } from '@bytelatent/bytes';
import { EntropyModel } from './entropy-model.js';
import { EntropyPatcher } from './patcher.js';
import { findPatchBoundaries, patchingSignal } from './patching.js';
import { patcherDefaultsFromReference } from './pretrained.js';

const ids = (n: number) => Int32Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 100 + i));

describe("'entropy-top-k'", () => {
  it('starts patches after the floor(N / patchSize) - 2 highest entropies, besides 0 and 1', () => {
    // N = 10, patchSize 4: k = 2 - 2 = 0 -> only [0, 1].
    const h = Float32Array.from([9, 0.1, 5, 0.2, 4, 0.3, 0.4, 3, 0.5, 0.6]);
    expect(Array.from(findPatchBoundaries(ids(10), h, { mode: 'entropy-top-k', patchSize: 4 }).patchStartsUnsplit)).toEqual([0, 1]);
    // patchSize 2.5: k = 4 - 2 = 2 -> the two highest of H[1..9] are H[2] = 5 and H[4] = 4 -> starts 3 and 5.
    // H[0] is never read (position 1 always starts a patch).
    const b = findPatchBoundaries(ids(10), h, { mode: 'entropy-top-k', patchSize: 2.5 });
    expect(Array.from(b.patchStartsUnsplit)).toEqual([0, 1, 3, 5]);
    expect(Array.from(b.patchLengths)).toEqual([1, 2, 2, 6]); // N + 1 slots with the next token
    // patchSize 2: k = 3 -> H[7] = 3 joins: start 8.
    expect(Array.from(findPatchBoundaries(ids(10), h, { mode: 'entropy-top-k', patchSize: 2 }).patchStartsUnsplit)).toEqual([
      0, 1, 3, 5, 8,
    ]);
  });

  it('breaks ties by position, compares in float32, and without the next slot drops a start at N', () => {
    const h = Float32Array.from([0, 1, 2, 2, 2, 1]); // N = 6, patchSize 1.5: k = 4 - 2 = 2
    expect(Array.from(findPatchBoundaries(ids(6), h, { mode: 'entropy-top-k', patchSize: 1.5 }).patchStartsUnsplit)).toEqual([0, 1, 3, 4]);
    // 1 + 1e-9 rounds to 1 in float32: it does not beat the earlier 1.
    const near = [0, 1, 0, 0, 0, 1 + 1e-9];
    expect(Array.from(findPatchBoundaries(ids(6), near, { mode: 'entropy-top-k', patchSize: 2 }).patchStartsUnsplit)).toEqual([0, 1, 2]);
    const last = Float32Array.from([0, 0, 0, 0, 0, 9]); // the highest entropy is the last position: start N
    expect(Array.from(findPatchBoundaries(ids(6), last, { mode: 'entropy-top-k', patchSize: 2 }).patchStartsUnsplit)).toEqual([0, 1, 6]);
    const without = findPatchBoundaries(ids(6), last, { mode: 'entropy-top-k', patchSize: 2, includeNextToken: false });
    expect(Array.from(without.patchLengths)).toEqual([1, 5]);
  });

  it('needs a patchSize > 0 and entropies', () => {
    expect(() => findPatchBoundaries(ids(4), [0, 0, 0, 0], { mode: 'entropy-top-k' })).toThrow(/patchSize/);
    expect(() => findPatchBoundaries(ids(4), [0, 0, 0, 0], { mode: 'entropy-top-k', patchSize: 0 })).toThrow(/patchSize/);
    expect(() => findPatchBoundaries(ids(4), undefined, { mode: 'entropy-top-k', patchSize: 2 })).toThrow(/entropies/);
  });
});

describe("'bpe'", () => {
  it('ends a patch at every delimiter, never starting one after the last token', () => {
    // BOS, delim, h, i, delim, space, delim
    const D = BPE_ID;
    const row = Int32Array.from([1, D, 108, 109, D, 36, D]);
    const b = findPatchBoundaries(row, undefined, { mode: 'bpe' });
    expect(Array.from(b.patchStartsUnsplit)).toEqual([0, 1, 2, 5]);
    expect(Array.from(b.patchLengths)).toEqual([1, 1, 3, 3]); // the last delimiter's patch takes the next slot
    const without = findPatchBoundaries(row, undefined, { mode: 'bpe', includeNextToken: false });
    expect(Array.from(without.patchLengths)).toEqual([1, 1, 3, 2]);
    expect(patchingSignal('bpe')).toBeUndefined();
  });
});

describe("EntropyPatcher and 'bpe'", () => {
  it('refuses text in bpe mode, pointing to the BPE-delimiter tokenizer', async () => {
    const patcher = EntropyPatcher.fromModel(new EntropyModel({ dim: 16, n_layers: 1, n_heads: 1, vocab_size: 260, max_seqlen: 32 }));
    try {
      await expect(patcher.patch('some text', { mode: 'bpe' })).rejects.toThrow(/encodeWithBpeDelimiters/);
    } finally {
      patcher.dispose();
    }
  });
});

describe("'bpe-patcher'", () => {
  it('starts a patch after every position whose predicted id is the delimiter', () => {
    const D = BPE_ID;
    const predictions = Int32Array.from([-1, 50, D, 60, D, D]);
    const b = findPatchBoundaries(ids(6), predictions, { mode: 'bpe-patcher' });
    expect(Array.from(b.patchStartsUnsplit)).toEqual([0, 1, 3, 5, 6]);
    const without = findPatchBoundaries(ids(6), predictions, { mode: 'bpe-patcher', includeNextToken: false });
    expect(Array.from(without.patchStartsUnsplit)).toEqual([0, 1, 3, 5]);
    expect(patchingSignal('bpe-patcher')).toBe('predictions');
    expect(() => findPatchBoundaries(ids(6), undefined, { mode: 'bpe-patcher' })).toThrow(/entropies are required/);
  });
});

describe('patcherDefaultsFromReference: every mode of the reference', () => {
  it('maps bpe, bpe_patcher and entropy without a threshold (top-k by patch_size)', () => {
    expect(patcherDefaultsFromReference({ patching_mode: 'bpe' }, 'x').mode).toBe('bpe');
    expect(patcherDefaultsFromReference({ patching_mode: 'bpe_patcher' }, 'x').mode).toBe('bpe-patcher');
    expect(patcherDefaultsFromReference({ patching_mode: 'entropy', threshold: null, patch_size: 6 }, 'x')).toEqual({
      mode: 'entropy-top-k',
      patchSize: 6,
    });
    // The reference's default patch_size (4.5) is kept as the mean aimed at.
    expect(patcherDefaultsFromReference({ patching_mode: 'entropy', threshold: null }, 'x')).toMatchObject({
      mode: 'entropy-top-k',
      patchSize: 4.5,
    });
    // A missing threshold is the reference's default, not top-k.
    expect(patcherDefaultsFromReference({ patching_mode: 'entropy' }, 'x').mode).toBe('entropy');
    expect(() => patcherDefaultsFromReference({ patching_mode: 'entropy', threshold: null, patch_size: null }, 'p.json')).toThrow(
      /p\.json: patch_size must be a number > 0 for entropy patching without a threshold/,
    );
  });
});
