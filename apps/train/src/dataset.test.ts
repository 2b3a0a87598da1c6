import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BOS_ID, EOS_ID } from '@bytelatent/bytes';
import { ByteDataset, evaluationRows, resolveDataFiles, seededPermutation } from './dataset.js';
import { TrainError } from './errors.js';
import { makeTextFolder } from './test-helpers.js';

describe('ByteDataset', () => {
  const folder = makeTextFolder();
  const files = resolveDataFiles([folder.train]);

  it('gives the same rows for the same seed and step, different rows for another seed', () => {
    const a = new ByteDataset({ files, seqLen: 16, seed: 1 });
    const b = new ByteDataset({ files, seqLen: 16, seed: 1 });
    const c = new ByteDataset({ files, seqLen: 16, seed: 2 });
    for (const g of [0, 5, 17, a.rowsPerEpoch + 3]) expect(Array.from(b.row(g).tokens)).toEqual(Array.from(a.row(g).tokens));
    const differs = [0, 1, 2, 3].some((g) => a.row(g).tokens.join() !== c.row(g).tokens.join());
    expect(differs).toBe(true);
  });

  it('reads a row anywhere in the run without replaying the earlier ones (resumption)', () => {
    const fresh = new ByteDataset({ files, seqLen: 16, seed: 4 });
    const walked = new ByteDataset({ files, seqLen: 16, seed: 4 });
    for (let g = 0; g < 40; g++) walked.row(g);
    expect(Array.from(fresh.row(40).targets)).toEqual(Array.from(walked.row(40).targets));
  });

  it('packs documents as BOS bytes+4 EOS and visits every stream position once per epoch', () => {
    const ds = new ByteDataset({ files, seqLen: 16, seed: 0 });
    const counts = new Map<number, number>();
    let bos = 0;
    let eos = 0;
    for (let g = 0; g < ds.rowsPerEpoch; g++) {
      const { tokens, targets } = ds.row(g);
      expect(tokens.length).toBe(16);
      expect(targets.length).toBe(16);
      // targets are tokens shifted by one
      for (let t = 0; t + 1 < 16; t++) expect(targets[t]).toBe(tokens[t + 1]);
      for (const x of tokens) {
        counts.set(x, (counts.get(x) ?? 0) + 1);
        if (x === BOS_ID) bos++;
        if (x === EOS_ID) eos++;
      }
    }
    expect(ds.totalTokens).toBe(ds.totalBytes + 2 * files.length);
    // Every token of the epoch's stream but the tail (< one row) is a row input exactly once.
    const seen = [...counts.values()].reduce((s, n) => s + n, 0);
    expect(seen).toBe(ds.rowsPerEpoch * 16);
    expect(ds.totalTokens - seen).toBeLessThan(17);
    expect(bos).toBeGreaterThanOrEqual(files.length - 1);
    expect(eos).toBeGreaterThanOrEqual(files.length - 1);
  });

  it('shuffles differently in each epoch', () => {
    const ds = new ByteDataset({ files, seqLen: 16, seed: 0 });
    const e0 = Array.from({ length: 5 }, (_, g) => ds.row(g).tokens.join());
    const e1 = Array.from({ length: 5 }, (_, g) => ds.row(ds.rowsPerEpoch + g).tokens.join());
    expect(e1).not.toEqual(e0);
  });

  it('rejects bad arguments and too little data with typed errors', () => {
    expect(() => new ByteDataset({ files, seqLen: 0, seed: 0 })).toThrow(TrainError);
    expect(() => new ByteDataset({ files: [], seqLen: 8, seed: 0 })).toThrow(/no training files/);
    expect(() => new ByteDataset({ files: [join(folder.heldout, 'book.txt')], seqLen: 100_000, seed: 0 })).toThrow(/fewer than one row/);
  });
});

describe('resolveDataFiles', () => {
  const folder = makeTextFolder();

  it('expands folders and globs, sorted', () => {
    const all = resolveDataFiles([folder.dir]);
    expect(all).toHaveLength(7);
    expect([...all].sort()).toEqual(all);
    expect(resolveDataFiles([join(folder.dir, '**/doc-*.txt')])).toHaveLength(6);
    expect(resolveDataFiles([join(folder.train, 'doc-[1].txt').replace('[1]', '?')])).toHaveLength(6);
  });

  it('names the spec that matches nothing', () => {
    expect(() => resolveDataFiles([join(folder.dir, 'nope')])).toThrow(/does not exist/);
    expect(() => resolveDataFiles([join(folder.dir, '*.md')])).toThrow(/matches no file/);
  });
});

describe('evaluationRows', () => {
  it('scores every byte once, in order, from BOS', () => {
    const folder = makeTextFolder();
    const file = join(folder.heldout, 'book.txt');
    const { rows, byteTargets } = evaluationRows([file], 16);
    const bytes = 'the dog sat in the park. '.repeat(6).length;
    expect(byteTargets).toBe(bytes);
    expect(rows[0]!.tokens[0]).toBe(BOS_ID);
    expect(rows.reduce((s, r) => s + r.targets.length, 0)).toBe(bytes);
    expect(evaluationRows([file], 16, 20).byteTargets).toBe(20);
  });
});

describe('seededPermutation', () => {
  it('is a permutation, fixed by the seed', () => {
    const p = seededPermutation(100, 7);
    expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(Array.from(seededPermutation(100, 7))).toEqual(Array.from(p));
    expect(Array.from(seededPermutation(100, 8))).not.toEqual(Array.from(p));
  });
});
