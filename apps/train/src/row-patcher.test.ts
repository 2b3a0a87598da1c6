import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encode } from '@bytelatent/bytes';
import { EntropyModel, EntropyPatcher, findPatchBoundaries } from '@bytelatent/entropy-patcher';
import { RowPatcher } from './row-patcher.js';
import { TINY_ENTROPY_ARGS } from './test-helpers.js';
import { TrainError } from './errors.js';

const rows = ['the cat sat on the mat', 'hello world, hello'].map((t) => encode(t, { bos: false, eos: false }));
const sum = (a: Int32Array) => a.reduce((s, x) => s + x, 0);

describe('RowPatcher', () => {
  it('static and space patching need no model; lengths cover the row, first patch 1', async () => {
    for (const p of [new RowPatcher({ mode: 'static', patchSize: 4 }), new RowPatcher({ mode: 'space' })]) {
      const lengths = await p.lengths(rows);
      lengths.forEach((l, i) => {
        expect(sum(l)).toBe(rows[i]!.length);
        expect(l[0]).toBe(1);
      });
    }
    expect(Array.from((await new RowPatcher({ mode: 'static', patchSize: 4 }).lengths([rows[0]!]))[0]!)).toEqual([1, 3, 4, 4, 4, 4, 2]);
  });

  it('entropy patching caches on disk by model and threshold; a new patcher reads the cache', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bytelatent-cache-'));
    const model = new EntropyModel(TINY_ENTROPY_ARGS, 1);
    const patcher = EntropyPatcher.fromModel(model, { threshold: 5.5 });
    const first = new RowPatcher({ mode: 'entropy' }, patcher, { dir, modelKey: 'abc' });
    const a = await first.lengths(rows);
    expect(first.misses).toBe(2);
    a.forEach((l, i) => expect(sum(l)).toBe(rows[i]!.length));
    const again = await first.lengths(rows);
    expect(first.hits).toBe(2);
    expect(again.map((l) => Array.from(l))).toEqual(a.map((l) => Array.from(l)));
    const second = new RowPatcher({ mode: 'entropy' }, patcher, { dir, modelKey: 'abc' });
    const b = await second.lengths(rows);
    expect(second.hits).toBe(2);
    expect(second.misses).toBe(0);
    expect(b.map((l) => Array.from(l))).toEqual(a.map((l) => Array.from(l)));
    // another threshold is another cache file
    new RowPatcher({ mode: 'entropy', threshold: 1 }, patcher, { dir, modelKey: 'abc' });
    await new RowPatcher({ mode: 'entropy', threshold: 1 }, patcher, { dir, modelKey: 'abc' }).lengths(rows);
    expect(readdirSync(dir)).toHaveLength(2);
    patcher.dispose();
  });

  it('every rule a released checkpoint can name: monotonic, combined (own cache files), byte; capped by maxPatchLength', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bytelatent-cache-'));
    const patcher = EntropyPatcher.fromModel(new EntropyModel(TINY_ENTROPY_ARGS, 2), { threshold: 5.5 });
    const entropies = await patcher.model.entropies(rows);
    for (const options of [
      { mode: 'monotonic' as const, threshold: 0.01 },
      { mode: 'combined' as const, threshold: 5.5, thresholdAdd: 0.01, maxPatchLength: 3 },
    ]) {
      const got = await new RowPatcher(options, patcher, { dir, modelKey: 'abc' }).lengths(rows);
      got.forEach((l, i) =>
        expect(Array.from(l)).toEqual(
          Array.from(findPatchBoundaries(rows[i]!, entropies[i], { ...options, includeNextToken: false }).patchLengths),
        ),
      );
    }
    expect(readdirSync(dir)).toHaveLength(2);
    const bytes = await new RowPatcher({ mode: 'byte' }).lengths(rows);
    bytes.forEach((l, i) => expect(Array.from(l)).toEqual(new Array(rows[i]!.length).fill(1)));
    expect(Math.max(...(await new RowPatcher({ mode: 'space', maxPatchLength: 2 }).lengths(rows)).flatMap((l) => Array.from(l)))).toBe(2);
    expect(() => new RowPatcher({ mode: 'combined', threshold: 1 }, patcher)).toThrow(/thresholdAdd/);
    patcher.dispose();
  });

  it('rejects entropy patching without a model, static without a size', () => {
    expect(() => new RowPatcher({ mode: 'entropy' })).toThrow(TrainError);
    expect(() => new RowPatcher({ mode: 'static' })).toThrow(/patchSize/);
  });
});
