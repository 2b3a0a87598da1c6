import { parseArgs } from 'node:util';
import { TextTrainer, type TrainedKind } from '@bytelatent/blt';
import { type BenchBackend, initBenchBackend, report, syntheticText } from '../measure.js';

// Training speed of TextTrainer (what the page's training tab runs in a Web Worker): the small
// entropy model and the small BLT on 64 kB of text, default batch (8 windows of 128 bytes), on
// each backend named, after two warm-up steps. The baseline, in the same run, is the first backend
// named (default cpu: tfjs's plain JavaScript kernels). Figures: bytes trained per second (targets
// per step over the step's time, the held-out evaluation excluded) and their ratio to the baseline.
const { values: opts } = parseArgs({
  options: {
    backends: { type: 'string', default: 'cpu,wasm' },
    steps: { type: 'string', default: '10' },
  },
});
const backends = opts.backends.split(',') as BenchBackend[];
const STEPS = Number(opts.steps);
const text = syntheticText(65_536, 7);

async function bytesPerSecond(kind: TrainedKind): Promise<number> {
  // evalEvery past the end: only the evaluation before step 1 (in the warm-up) and at the last step.
  const trainer = new TextTrainer({ kind, text, steps: STEPS + 2, evalEvery: 10_000 });
  try {
    await trainer.trainStep();
    await trainer.trainStep();
    let bytes = 0;
    let seconds = 0;
    for (let i = 0; i < STEPS - 1; i++) {
      const start = performance.now();
      await trainer.trainStep();
      seconds += (performance.now() - start) / 1000;
      bytes += trainer.batchSize * trainer.seqLen;
    }
    return bytes / seconds;
  } finally {
    trainer.dispose();
  }
}

const figures: Record<string, string | number> = { bench: 'text-training', steps: STEPS, baseline: backends[0]! };
const results = new Map<string, { entropy: number; blt: number }>();
for (const backend of backends) {
  const info = await initBenchBackend(backend);
  const entropy = await bytesPerSecond('entropy');
  const blt = await bytesPerSecond('blt');
  results.set(backend, { entropy, blt });
  figures[`${backend}Adapter`] = info.adapter ?? info.name;
  figures[`entropyBytesPerSec_${backend}`] = entropy;
  figures[`bltBytesPerSec_${backend}`] = blt;
}
const base = results.get(backends[0]!)!;
for (const [backend, r] of results) {
  if (backend === backends[0]) continue;
  figures[`entropyVsBaseline_${backend}`] = r.entropy / base.entropy;
  figures[`bltVsBaseline_${backend}`] = r.blt / base.blt;
}
figures['peakRssMiB'] = Math.round(process.resourceUsage().maxRSS / 1024);
report(figures);
