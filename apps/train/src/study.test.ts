import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadUdhr } from '@bytelatent/evals';
import { afterAll, describe, expect, it } from 'vitest';
import { runStudy } from './study.js';
import { DEFAULT_STUDY, QUICK_STUDY, STUDY_ARMS, stepsForBudget, trainingSeconds, type ArmResult } from './study-plan.js';
import { renderStudyMarkdown } from './study-report.js';
import { renderStudySvg } from './study-plot.js';

function arm(id: ArmResult['id'], label: string, books: number, flops: number, cute: number, seed = 0): ArmResult {
  return {
    id,
    label,
    seed,
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

  it('gives mean ± standard deviation over seeds, a table per seed, and says whether a gap exceeds the spread', () => {
    const results = [
      arm('blt-entropy', 'BLT', 3.0, 5e5, 0.3, 0),
      arm('blt-entropy', 'BLT', 3.2, 5e5, 0.3, 1),
      arm('bpe', 'BPE', 2.5, 4e5, 0.25, 0),
      arm('bpe', 'BPE', 2.7, 4e5, 0.25, 1),
    ];
    const md = renderStudyMarkdown(results, DEFAULT_STUDY, { svg: 'x.svg', command: 'c', runDir: 'r' });
    // Sample standard deviation of 3.0 and 3.2: 0.141.
    expect(md).toContain('**3.100 ± 0.141**');
    expect(md).toContain('each arm ran 2 times (seeds 0, 1');
    expect(md).toContain('| BLT | 3.000 | 3.200 |');
    // 0.5 apart (3.1 vs 2.6) with spreads of 0.141 each: a real gap.
    expect(md).toContain('the BPE model is lower by 0.500 bits per byte (19.2 %) (a gap larger than the two standard deviations added)');
    const close = renderStudyMarkdown(
      [arm('blt-entropy', 'BLT', 2.6, 5e5, 0.3, 0), arm('blt-entropy', 'BLT', 2.9, 5e5, 0.3, 1), ...results.slice(2)],
      DEFAULT_STUDY,
      { svg: 'x.svg', command: 'c', runDir: 'r' },
    );
    expect(close).toContain('(within the spread over seeds)');
  });

  it('ranks noise robustness by the noised bits per byte too, and says when noising lowers the figure only if it does', () => {
    const weak = arm('byte', 'weak', 5, 4e5, 0.25);
    const strong = arm('bpe', 'strong', 2, 4e5, 0.25);
    const noisy = (r: ArmResult, noised: number): ArmResult => ({
      ...r,
      noise: { clean: r.noise.clean, noised: [{ kind: 'ant-speak', bitsPerByte: noised, ratio: noised / r.noise.clean }] },
    });
    // The weak model degrades less in ratio (1.1 vs 1.5) but stays far worse on the noised text.
    const md = renderStudyMarkdown([noisy(weak, 5.5), noisy(strong, 3)], DEFAULT_STUDY, { svg: 'x.svg', command: 'c', runDir: 'r' });
    expect(md).toContain('lowest mean bits per byte on the noised texts **strong** (3.000)');
    expect(md).toContain('smallest mean ratio to clean weak (1.10)');
    expect(md).toContain('(it does not here)');
    const below = renderStudyMarkdown([noisy(weak, 4.5), noisy(strong, 3)], DEFAULT_STUDY, { svg: 'x.svg', command: 'c', runDir: 'r' });
    expect(below).toContain('as it does here for weak (ant-speak)');
  });

  it('adds a table of the same arms at other budgets, and says whether the order changed', () => {
    const at1 = [arm('blt-entropy', 'BLT', 3.0, 5e5, 0.3), arm('bpe', 'BPE', 2.7, 4e5, 0.25)];
    const at10 = [arm('blt-entropy', 'BLT', 2.4, 5e5, 0.3), arm('bpe', 'BPE', 2.5, 4e5, 0.25)];
    const md = renderStudyMarkdown(at1, DEFAULT_STUDY, {
      svg: 'x.svg',
      command: 'c',
      runDir: 'r',
      budgets: [{ budgetFlops: 8e12, results: at10 }],
    });
    expect(md).toContain('## With more compute');
    expect(md).toContain('| model | 8.00e11 FLOPs | 8.00e12 FLOPs |');
    expect(md).toContain('| BLT | 3.000 (1 seed) | 2.400 (1 seed) |');
    expect(md).toContain('Best at 8.00e11: BPE; at 8.00e12: BLT (order BLT < BPE).');
    expect(md).toContain(
      "Best BLT vs the BPE model, books' bits per byte: 8.00e11: the BPE model lower by 0.300 (BLT); 8.00e12: the BLT lower by 0.100 (BLT).",
    );
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

describe('study plan', () => {
  it('converts a budget into steps: budget / (FLOPs per byte x bytes per step), rounded, at least 2', () => {
    expect(stepsForBudget(8e11, 3 * 5e5, 2048)).toBe(Math.round(8e11 / (1.5e6 * 2048)));
    expect(stepsForBudget(1e3, 3e5, 2048)).toBe(2);
    expect(() => stepsForBudget(0, 1, 1)).toThrow(RangeError);
    expect(() => stepsForBudget(1, Number.NaN, 1)).toThrow(RangeError);
  });

  it('adds the training time of every invocation of a resumed run', () => {
    // Invocation 1 ran to 30 s and was interrupted; invocation 2 restarted its clock and ran 20 s.
    expect(trainingSeconds([{ elapsedSec: 10 }, { elapsedSec: 30 }, { elapsedSec: 5 }, { elapsedSec: 20 }])).toBe(50);
    expect(trainingSeconds([{ elapsedSec: 7 }])).toBe(7);
    expect(trainingSeconds([])).toBe(0);
  });
});

describe('runStudy (quick settings, one seed, on a small corpus)', () => {
  const root = mkdtempSync(join(tmpdir(), 'study-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const corpus = join(root, 'corpus');
  mkdirSync(join(corpus, 'train', 'books'), { recursive: true });
  mkdirSync(join(corpus, 'heldout', 'books'), { recursive: true });
  writeFileSync(join(corpus, 'train', 'books', 'udhr-eng.txt'), loadUdhr('eng').repeat(3));
  writeFileSync(join(corpus, 'train', 'books', 'udhr-fra.txt'), loadUdhr('fra'));
  writeFileSync(join(corpus, 'heldout', 'books', 'udhr-deu.txt'), loadUdhr('deu_1996').slice(0, 2000));
  const settings = { ...QUICK_STUDY, seeds: [0] };
  const options = { settings, outDir: join(root, 'runs'), docsDir: join(root, 'docs'), corpusDir: corpus };

  it('trains every arm within the budget, then a second run reuses every run and evaluation; a stale evaluation is redone', async () => {
    const first: string[] = [];
    const results = await runStudy({ ...options, onLog: (m) => first.push(m) });
    expect(results.map((r) => r.id)).toEqual([...STUDY_ARMS]);
    const bytesPerStep = settings.seqLen * settings.batchSize;
    for (const r of results) {
      // Rounding the steps moves the spend by at most half a step's FLOPs.
      const perStep = (r.trainingFlops - (r.ownEntropy?.trainingFlops ?? 0)) / r.steps;
      expect(Math.abs(r.trainingFlops - settings.budgetFlops)).toBeLessThanOrEqual(perStep / 2 + 1);
      expect(r.trainBytes).toBe(r.steps * bytesPerStep);
      expect(r.trainSeconds).toBeGreaterThan(0);
      expect(r.books[0]!.bytes).toBe(settings.heldoutBytesPerBook);
    }
    const own = results.find((r) => r.id === 'blt-entropy-own')!;
    expect(own.ownEntropy!.trainingFlops).toBeLessThanOrEqual(settings.ownEntropyShare * settings.budgetFlops * 1.05);
    expect(own.ownEntropy!.patchingFlops).toBeCloseTo(own.ownEntropy!.flopsPerByte * own.trainBytes, 0);
    for (const r of results.filter((x) => x.id.startsWith('blt-entropy'))) expect(r.calibration!.meanPatchSize).toBeCloseTo(4.5, 0);
    expect(readFileSync(join(options.docsDir, 'study.md'), 'utf8')).toContain('Everything it uses is inside the budget.');

    const second: string[] = [];
    const again = await runStudy({ ...options, onLog: (m) => second.push(m) });
    expect(second.filter((m) => m.includes('trained already'))).toHaveLength(STUDY_ARMS.length + 1); // + the own entropy model
    expect(second.some((m) => m.includes('evaluating'))).toBe(false);
    expect(again.map((r) => r.booksBitsPerByte)).toEqual(results.map((r) => r.booksBitsPerByte));

    // An evaluation made under other settings is not reused.
    const [studyDir] = readdirSync(options.outDir).filter((d) => !d.endsWith('.json'));
    const evalPath = join(options.outDir, studyDir!, 'seed-0', 'byte', 'eval.json');
    writeFileSync(evalPath, JSON.stringify({ ...JSON.parse(readFileSync(evalPath, 'utf8')), settingsKey: 'stale' }));
    const third: string[] = [];
    await runStudy({ ...options, arms: ['byte'], onLog: (m) => third.push(m) });
    expect(third.filter((m) => m.includes('evaluating'))).toEqual(['[seed 0 byte] evaluating']);

    // A study at twice the budget beside it: its report compares the arms both trained.
    await runStudy({ ...options, settings: { ...settings, budgetFlops: 2 * settings.budgetFlops }, arms: ['byte'] });
    const md = readFileSync(join(options.docsDir, 'study.md'), 'utf8');
    expect(md).toContain(
      `| model | ${(2e9).toExponential(2).replace('e+', 'e')} FLOPs | ${(4e9).toExponential(2).replace('e+', 'e')} FLOPs |`,
    );
    expect(md).toMatch(/\| byte-level transformer \| [\d.]+ \(1 seed\) \| [\d.]+ \(1 seed\) \|/);
  }, 240_000);
});
