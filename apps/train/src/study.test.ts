import { describe, expect, it } from 'vitest';
import { DEFAULT_STUDY, type ArmResult } from './study-plan.js';
import { renderStudyMarkdown } from './study-report.js';
import { renderStudySvg } from './study-plot.js';

function arm(id: ArmResult['id'], label: string, books: number, flops: number, cute: number): ArmResult {
  return {
    id,
    label,
    parameters: 1000,
    steps: 10,
    trainBytes: 20480,
    trainingFlops: 8e11,
    trainUnit: 4,
    trainInferenceFlopsPerByte: flops,
    unit: 4,
    inferenceFlopsPerByte: flops,
    flopsParts: id === 'bpe' ? { layers: flops * 0.75, output: flops * 0.25 } : { global: flops * 0.4, encoder: flops * 0.6 },
    books: [{ name: 'alice', bytes: 100, bitsPerByte: books }],
    booksBitsPerByte: books,
    udhr: [{ code: 'eng', bytes: 100, bitsPerByte: books + 0.1 }],
    cute: { accuracy: cute, chance: 0.286, tasks: [{ task: 'spelling', accuracy: cute, chance: 0.25, items: 25 }] },
    noise: { clean: books, noised: [{ kind: 'uppercase', bitsPerByte: books * 1.5, ratio: 1.5 }] },
    curve: [
      { step: 5, trainingFlops: 4e11, bitsPerByte: books + 1 },
      { step: 10, trainingFlops: 8e11, bitsPerByte: books },
    ],
    trainSeconds: 100,
  };
}

describe('study report', () => {
  it('states what the numbers say, computed from them', () => {
    const results = [arm('blt-entropy', 'BLT, entropy patching', 3.1, 5e5, 0.3), arm('bpe', 'BPE token transformer', 2.9, 4e5, 0.25)];
    const md = renderStudyMarkdown(results, DEFAULT_STUDY, { svg: 'x.svg', command: 'npm run study', runDir: 'runs/study/k' });
    expect(md).toContain('Lowest held-out bits per byte on the books: **BPE token transformer** (2.900)');
    expect(md).toContain('the BPE model is lower by 0.200 bits per byte');
    expect(md).toContain('Cheapest inference per byte: **BPE token transformer**');
    expect(md).toContain('best mean accuracy **BLT, entropy patching** (0.300)');
    // One task of 25 items at chance 0.25: a guesser's standard error is sqrt(0.25 · 0.75 / 25) = 0.087.
    expect(md).toContain('standard error of 0.087 for a guesser: every model is within two standard errors of chance.');
    expect(md).toContain('## Scale caveat');
    expect(md).toContain("the BLTs' latent transformer is only 40 % of their inference FLOPs per byte");
    expect(md).toContain("the BPE model's output layer is 25 % of its FLOPs");
    expect(md).toContain('![held-out bits per byte vs training FLOPs](x.svg)');
    const flipped = renderStudyMarkdown([arm('blt-entropy', 'BLT', 2.5, 5e5, 0.3), arm('bpe', 'BPE', 2.9, 4e5, 0.25)], DEFAULT_STUDY, {
      svg: 'x.svg',
      command: 'c',
      runDir: 'r',
    });
    expect(flipped).toContain('the BLT is lower by 0.400 bits per byte');
  });

  it('plots one line per run', () => {
    const svg = renderStudySvg([
      {
        label: 'a & b',
        points: [
          [1e11, 3],
          [2e11, 2.5],
        ],
      },
      { label: 'c', points: [[1e11, 3.2]] },
    ]);
    expect(svg).toMatch(/^<svg[\s\S]*<\/svg>\n$/);
    expect(svg.match(/<path /g)).toHaveLength(2);
    expect(svg).toContain('a &amp; b');
  });
});
