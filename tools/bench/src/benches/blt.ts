import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { ByteLatentTransformer } from '@bytelatent/blt';
import { BLT_CONFIGS, type BltConfigName, bltInput } from '../blt-configs.js';
import { type BenchBackend, initBenchBackend, report } from '../measure.js';

// BLT forward and forward+backward throughput (bytes/s) per backend, for the tiny golden
// configuration and a ~10M-parameter one (../blt-configs.ts). Static 4-byte patches, so no
// entropy model cost. Backends: cpu, wasm (its matmuls on OpenBLAS when @bytelatent/native-sgemm
// is built), wasm-nonative (the wasm kernels only), webgpu (a software adapter here).
// Options, for compare-reference.js and by hand (`node tools/bench/dist/benches/blt.js --help`):
const HELP = `usage: blt.js [--backends cpu,wasm,wasm-nonative,webgpu] [--configs tiny,10m] [--modes forward,train]
              [--runs N] [--budget SECONDS]
  --runs N          timed runs per figure after one warm-up; the median is reported (default 3)
  --budget SECONDS  per backend x configuration: skipped when the warm-up forward takes more than
                    a quarter of it; fewer timed runs when they would exceed it (default 20)`;
const { values: opts } = parseArgs({
  options: {
    backends: { type: 'string', default: 'cpu,wasm,wasm-nonative,webgpu' },
    configs: { type: 'string', default: 'tiny,10m' },
    modes: { type: 'string', default: 'forward,train' },
    runs: { type: 'string', default: '3' },
    budget: { type: 'string', default: '20' },
    help: { type: 'boolean', default: false },
  },
});
if (opts.help) {
  console.log(HELP);
  process.exit(0);
}

const BACKENDS = opts.backends.split(',') as BenchBackend[];
const CONFIGS = opts.configs.split(',') as BltConfigName[];
const MODES = opts.modes.split(',');
const RUNS = Number(opts.runs);
const BUDGET_S = Number(opts.budget);
for (const b of BACKENDS) if (!['cpu', 'wasm', 'wasm-nonative', 'webgpu'].includes(b)) throw new Error(`unknown backend ${b}\n${HELP}`);
for (const c of CONFIGS) if (!(c in BLT_CONFIGS)) throw new Error(`unknown configuration ${c}\n${HELP}`);

const input = bltInput();
const tokens = [input.tokens];
const targets = [input.targets];
const lengths = [input.patchLengths];

/** Median seconds of up to `runs` timed calls after one warm-up, stopping early at the budget. */
async function time(fn: () => Promise<void>, runs: number, budgetS: number): Promise<{ seconds: number; runs: number; warmup: number }> {
  let t = performance.now();
  await fn();
  const warmup = (performance.now() - t) / 1000;
  const times: number[] = [];
  const start = performance.now();
  while (times.length < runs && (times.length === 0 || (performance.now() - start) / 1000 + warmup <= budgetS)) {
    t = performance.now();
    await fn();
    times.push((performance.now() - t) / 1000);
  }
  times.sort((a, b) => a - b);
  return { seconds: times[Math.floor(times.length / 2)]!, runs: times.length, warmup };
}

const figures: Record<string, number | string> = {
  bench: 'blt',
  bytes_per_step: input.bytes,
  patches: `static 4 bytes (${input.patchLengths.length})`,
  runs: RUNS,
};
for (const backend of BACKENDS) {
  const key = backend.replace('-', '_');
  try {
    const info = await initBenchBackend(backend);
    // wasm runs its matmuls on OpenBLAS when @bytelatent/native-sgemm is built: say which ran.
    if (info.nativeMatMul !== undefined) figures[`${key}_matmul`] = info.nativeMatMul.active ? info.nativeMatMul.reason : 'wasm kernels';
    if (info.adapter !== undefined) figures[`${key}_adapter`] = `${info.adapter}${info.software === true ? ' (software)' : ''}`;
  } catch {
    figures[key] = 'unavailable';
    continue;
  }
  let skipRest = false;
  for (const name of CONFIGS) {
    if (skipRest) {
      figures[`${key}_${name}`] = 'skipped: a smaller configuration exceeded the budget';
      continue;
    }
    const model = new ByteLatentTransformer(BLT_CONFIGS[name], 1);
    figures[`${name}_params`] = model.parameterCount();
    const forward = async () => {
      const logits = model.forward(tokens, lengths);
      await logits.data();
      logits.dispose();
    };
    const train = async () => {
      const { value, grads } = tf.variableGrads(() => model.loss(tokens, lengths, targets));
      await value.data();
      tf.dispose([value, ...Object.values(grads)]);
    };
    const start = performance.now();
    await forward(); // warm-up (kernel compilation, weight packing)
    const warm = (performance.now() - start) / 1000;
    if (warm > BUDGET_S / 4) {
      figures[`${key}_${name}`] = `skipped: warm-up forward took ${warm.toFixed(1)} s`;
      model.dispose();
      skipRest = true;
      continue;
    }
    if (MODES.includes('forward')) {
      const r = await time(forward, RUNS, BUDGET_S / 2);
      figures[`${key}_${name}_forward_bytes_s`] = input.bytes / r.seconds;
      if (r.runs < RUNS) figures[`${key}_${name}_forward_runs`] = r.runs;
    }
    if (MODES.includes('train')) {
      const r = await time(train, RUNS, BUDGET_S / 2);
      figures[`${key}_${name}_train_bytes_s`] = input.bytes / r.seconds;
      if (r.runs < RUNS) figures[`${key}_${name}_train_runs`] = r.runs;
    }
    model.dispose();
  }
}
report(figures);
