import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { encode } from '@bytelatent/bytes';
import { ByteLatentTransformer } from '@bytelatent/blt';
import { findPatchBoundaries } from '@bytelatent/entropy-patcher';
import { BLT_CONFIGS } from '../blt-configs.js';
import { type BenchBackend, initBenchBackend, report, syntheticText } from '../measure.js';

// Memory over a long training run: the tiny BLT trained for 1,000 steps (loss, gradients, Adam
// update — what apps/train does each step, with tfjs's own Adam instead of the app's AdamW), one
// row a step whose length changes every step (256..512 bytes, so ~250 distinct shapes, as real
// entropy-patched batches have). Records tf.memory() tensor counts and bytes and the process's RSS
// at steps 1, 100, 200, ..., 1000 and gives a verdict: tensors must not grow at all; RSS may settle
// (allocator and wasm heap warm-up) but not keep climbing.
const { values: opts } = parseArgs({
  options: {
    steps: { type: 'string', default: '1000' },
    every: { type: 'string', default: '100' },
    backend: { type: 'string', default: 'wasm' },
  },
});
const STEPS = Number(opts.steps);
const EVERY = Number(opts.every);
// cpu, wasm (OpenBLAS matmuls when @bytelatent/native-sgemm is built), wasm-nonative, webgpu.
const backend = opts.backend as BenchBackend;

const info = await initBenchBackend(backend);
const model = new ByteLatentTransformer(BLT_CONFIGS.tiny, 1);
const variables = model.registry.list().map((p) => p.variable);
const optimizer = tf.train.adam(1e-3);

function row(step: number) {
  const bytes = 256 + ((step * 37) % 257);
  const ids = encode(syntheticText(bytes, step + 1), { bos: true, eos: true });
  const tokens = ids.subarray(0, -1);
  return {
    bytes,
    tokens: [tokens],
    targets: [ids.subarray(1)],
    lengths: [findPatchBoundaries(tokens, undefined, { mode: 'static', patchSize: 4 }).patchLengths],
  };
}

const mb = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;
const samples: Array<{ step: number; tensors: number; tensor_mb: number; rss_mb: number; heap_mb: number; wasm_mb: number }> = [];
// The wasm backend's heap (an Emscripten memory: it grows, never shrinks), when that backend runs.
const wasmHeapBytes = (): number => (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8?.buffer.byteLength ?? 0;
let trainedBytes = 0;
let lastLoss = Number.NaN;
const start = performance.now();
for (let step = 1; step <= STEPS; step++) {
  const r = row(step);
  const { value, grads } = tf.variableGrads(() => model.loss(r.tokens, r.lengths, r.targets), variables);
  optimizer.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
  lastLoss = (await value.data())[0]!;
  tf.dispose([value, ...Object.values(grads)]);
  trainedBytes += r.bytes;
  if (step === 1 || step % EVERY === 0) {
    const m = tf.memory();
    const u = process.memoryUsage();
    samples.push({
      step,
      tensors: m.numTensors,
      tensor_mb: mb(m.numBytes),
      rss_mb: mb(u.rss),
      heap_mb: mb(u.heapUsed),
      wasm_mb: mb(wasmHeapBytes()),
    });
  }
}
const seconds = (performance.now() - start) / 1000;

const first = samples[0]!;
// From step 100 on: the first steps allocate Adam's moments and warm the allocators.
const settled = samples.find((s) => s.step >= Math.min(EVERY, STEPS)) ?? first;
const last = samples[samples.length - 1]!;
const tensorGrowth = last.tensors - settled.tensors;
const rssGrowth = mb((last.rss_mb - settled.rss_mb) * 2 ** 20);
// RSS over the second half alone: a leak keeps climbing there, a warm-up does not.
const mid = samples.find((s) => s.step >= STEPS / 2) ?? settled;
const rssGrowthSecondHalf = mb((last.rss_mb - mid.rss_mb) * 2 ** 20);
const verdict =
  tensorGrowth === 0 && rssGrowthSecondHalf <= Math.max(16, 0.05 * mid.rss_mb)
    ? `no growth: tensors constant from step ${settled.step} (${last.tensors}), RSS ${rssGrowthSecondHalf >= 0 ? '+' : ''}${rssGrowthSecondHalf} MB over steps ${mid.step}-${last.step}`
    : `GROWTH: tensors ${settled.tensors} -> ${last.tensors}, RSS ${settled.rss_mb} -> ${last.rss_mb} MB`;

report({
  bench: 'train-memory',
  backend: info.name,
  matmul: info.nativeMatMul?.active === true ? 'OpenBLAS' : 'backend kernels',
  config: `tiny BLT (${model.parameterCount()} parameters), Adam 1e-3, one row of 256..512 bytes a step, static 4-byte patches`,
  steps: STEPS,
  final_loss: lastLoss,
  train_bytes_s: trainedBytes / seconds,
  seconds,
  tensors_step1: first.tensors,
  tensors_final: last.tensors,
  tensor_growth_after_warmup: tensorGrowth,
  rss_mb_step1: first.rss_mb,
  rss_mb_final: last.rss_mb,
  rss_growth_mb_after_warmup: rssGrowth,
  rss_growth_mb_second_half: rssGrowthSecondHalf,
  peak_rss_mb: mb(process.resourceUsage().maxRSS * 1024),
  wasm_heap_mb_final: last.wasm_mb,
  wasm_heap_growth_mb_after_warmup: mb((last.wasm_mb - settled.wasm_mb) * 2 ** 20),
  samples: samples.map((s) => `${s.step}:${s.tensors}t/${s.tensor_mb}MB/rss${s.rss_mb}/js${s.heap_mb}/wasm${s.wasm_mb}`).join(' '),
  verdict,
});
model.dispose();
