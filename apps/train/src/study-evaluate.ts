/**
 * The study's measurements of a trained arm (cached in its folder, redone when the evaluation
 * settings change) and of the tokenizers.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  BytePairTokenizer,
  bltFlopsPerByte,
  deEmbeddingFlops,
  evaluateBitsPerByte,
  evaluateCharacterTasks,
  evaluateNoiseRobustness,
  generateCharacterTasks,
  gpt2TokenCount,
  loadModelFile,
  loadUdhr,
  tokenModelFlopsPerByte,
  transformerFlops,
  transformerShape,
} from '@bytelatent/evals';
import { writeFileAtomic } from '@bytelatent/nn/node';
import { formatDuration } from './progress.js';
import type { MetricsRecord } from './metrics.js';
import { CHECKPOINT_FILE } from './trainer.js';
import { hash, type ArmPlan, type ArmResult, type StudySettings } from './study-plan.js';
import { type CompressionRow } from './study-report.js';
import { EVAL_FILE, readMetrics, type BuiltArm, type StudyContext } from './study-arms.js';

export async function tokenizerCompression(
  tokenizer: BytePairTokenizer,
  s: StudySettings,
  heldoutFiles: readonly string[],
): Promise<CompressionRow[]> {
  const texts: Array<[string, Uint8Array]> = [
    ...heldoutFiles.map((f) => [basename(f, '.txt'), new Uint8Array(readFileSync(f))] as [string, Uint8Array]),
    ...s.udhrCodes.map((c) => [`udhr:${c}`, new TextEncoder().encode(loadUdhr(c))] as [string, Uint8Array]),
  ];
  const rows: CompressionRow[] = [];
  for (const [text, bytes] of texts) {
    const gpt2 = await gpt2TokenCount(new TextDecoder().decode(bytes));
    rows.push({
      text,
      bytes: bytes.length,
      bpeBytesPerToken: bytes.length / tokenizer.encode(bytes).length,
      gpt2BytesPerToken: bytes.length / gpt2,
    });
  }
  return rows;
}

/** The key of an arm's cached evaluation: whatever the figures depend on besides the checkpoint. */
export function evaluationKey(s: StudySettings, seed: number): string {
  return hash({ h: s.heldoutBytesPerBook, u: s.udhrCodes, ub: s.udhrBytes, c: s.cutePerTask, n: s.noiseBytes, w: s.seqLen, seed, v: 4 });
}

export async function evaluateArm(
  plan: ArmPlan,
  built: BuiltArm,
  ctx: StudyContext,
  dir: string,
  bytesPerStep: number,
  trainSeconds: number,
): Promise<ArmResult> {
  const { s, seed, heldoutFiles, log } = ctx;
  const tag = `[seed ${seed} ${plan.id}]`;
  const settingsKey = evaluationKey(s, seed);
  // Training FLOPs after `step` steps: the arm's own, plus its entropy model's training and patching.
  const em = plan.ownEntropy;
  const flopsAt = (step: number) =>
    (3 * plan.inferenceFlopsPerByte + (em?.flopsPerByte ?? 0)) * step * bytesPerStep + (em?.trainingFlops ?? 0);
  const cachePath = join(dir, EVAL_FILE);
  const curve = readMetrics(dir)
    .filter((r): r is Extract<MetricsRecord, { type: 'eval' }> => r.type === 'eval')
    .map((r) => ({ step: r.step, trainingFlops: flopsAt(r.step), bitsPerByte: r.bpb }));
  if (existsSync(cachePath)) {
    const cached = JSON.parse(readFileSync(cachePath, 'utf8')) as ArmResult & { settingsKey: string };
    if (cached.settingsKey === settingsKey) return { ...cached, curve, trainSeconds };
  }
  log(`${tag} evaluating`);
  const t0 = performance.now();
  const loaded = await loadModelFile(join(dir, CHECKPOINT_FILE), { name: plan.id });
  try {
    const model = loaded.model;
    const books: Array<{ name: string; bytes: number; bitsPerByte: number; nats: number }> = [];
    const before = loaded.kind === 'blt' ? loaded.model.patchCounts() : undefined;
    let targets = 0;
    for (const f of heldoutFiles) {
      const bytes = new Uint8Array(readFileSync(f)).subarray(0, s.heldoutBytesPerBook);
      // Every arm is scored on the same windows of the training row length, each from BOS (see
      // evaluateBitsPerByte's windowBytes): token models see the bytes a BLT sees, at trained positions.
      const r = await evaluateBitsPerByte(model, bytes, { windowBytes: s.seqLen });
      books.push({ name: basename(f, '.txt'), bytes: r.bytes, bitsPerByte: r.bitsPerByte, nats: r.nats });
      targets += r.targets;
    }
    const bookBytes = books.reduce((n, b) => n + b.bytes, 0);
    const booksBitsPerByte = books.reduce((n, b) => n + b.nats, 0) / Math.LN2 / bookBytes;
    let unit: number;
    let inferenceFlopsPerByte: number;
    let flopsParts: Record<string, number>;
    let entropyModelFlopsPerByte: number | undefined;
    if (loaded.kind === 'blt') {
      const after = loaded.model.patchCounts();
      unit = (after.positions - before!.positions) / (after.patches - before!.patches);
      const { total, ...parts } = bltFlopsPerByte(loaded.shape, unit, s.seqLen);
      inferenceFlopsPerByte = total;
      flopsParts = parts;
      const em = loaded.patching.patcher?.model;
      if (em)
        entropyModelFlopsPerByte = transformerFlops(
          transformerShape(em.referenceArgs),
          Math.min(em.args.window ?? em.maxSeqLen, s.seqLen),
          em.args.vocabSize,
        );
    } else {
      unit = bookBytes / targets;
      inferenceFlopsPerByte = tokenModelFlopsPerByte(loaded.shape, unit, s.seqLen, loaded.vocab);
      const output = deEmbeddingFlops(loaded.shape.dim, loaded.vocab) / unit;
      flopsParts = { layers: inferenceFlopsPerByte - output, output };
    }
    const udhr = [];
    for (const code of s.udhrCodes) {
      const bytes = new TextEncoder().encode(loadUdhr(code)).subarray(0, s.udhrBytes);
      const r = await evaluateBitsPerByte(model, bytes, { windowBytes: s.seqLen });
      udhr.push({ code, bytes: r.bytes, bitsPerByte: r.bitsPerByte });
    }
    const cuteResult = await evaluateCharacterTasks(model, generateCharacterTasks({ perTask: s.cutePerTask, seed }));
    const noiseText = new TextDecoder()
      .decode(new Uint8Array(readFileSync(heldoutFiles[0]!)).subarray(0, s.noiseBytes))
      .replace(/\uFFFD$/, '');
    const noise = await evaluateNoiseRobustness(model, noiseText, { seed, windowBytes: s.seqLen });
    const result: ArmResult & { settingsKey: string } = {
      settingsKey,
      id: plan.id,
      label: plan.label,
      seed,
      parameters: loaded.parameters,
      steps: plan.steps,
      trainBytes: plan.steps * bytesPerStep,
      trainingFlops: flopsAt(plan.steps),
      trainUnit: plan.unit,
      trainInferenceFlopsPerByte: plan.inferenceFlopsPerByte,
      unit,
      inferenceFlopsPerByte,
      flopsParts,
      ...(entropyModelFlopsPerByte !== undefined ? { entropyModelFlopsPerByte } : {}),
      ...(built.calibration ? { calibration: built.calibration } : {}),
      ...(em ? { ownEntropy: em } : {}),
      books: books.map(({ nats: _n, ...b }) => b),
      booksBitsPerByte,
      udhr,
      cute: {
        accuracy: cuteResult.accuracy,
        chance: cuteResult.chance,
        tasks: cuteResult.tasks.map((t) => ({ task: t.task, accuracy: t.accuracy, chance: t.chance, items: t.items })),
      },
      noise: {
        clean: noise.clean.bitsPerByte,
        noised: noise.noised.map((n) => ({ kind: n.kind, bitsPerByte: n.result.bitsPerByte, ratio: n.ratio })),
      },
      curve,
      trainSeconds,
    };
    await writeFileAtomic(cachePath, new TextEncoder().encode(JSON.stringify(result, null, 1) + '\n'));
    log(`${tag} evaluated in ${formatDuration((performance.now() - t0) / 1000)}: held-out books ${booksBitsPerByte.toFixed(3)} bits/byte`);
    return result;
  } finally {
    loaded.dispose();
  }
}
