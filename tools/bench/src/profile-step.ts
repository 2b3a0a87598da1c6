import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { ByteLatentTransformer } from '@bytelatent/blt';
import { BLT_CONFIGS, type BltConfigName, bltInput } from './blt-configs.js';
import { type BenchBackend, initBenchBackend, report } from './measure.js';

// Where one BLT step's time goes: tf.profile of a forward or a forward+backward on one backend,
// kernels grouped by name (calls, kernel ms, share), plus the step's wall time and the time spent
// outside kernels (tfjs's engine: tape, bookkeeping, dispatch). Prints a table, then one JSON line.
const HELP = `usage: profile-step.js [--backend wasm|wasm-nonative|cpu|webgpu] [--config tiny|10m] [--mode forward|train] [--top N]`;
const { values: opts } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    config: { type: 'string', default: 'tiny' },
    mode: { type: 'string', default: 'train' },
    top: { type: 'string', default: '15' },
    help: { type: 'boolean', default: false },
  },
});
if (opts.help) {
  console.log(HELP);
  process.exit(0);
}
const config = opts.config as BltConfigName;
if (!(config in BLT_CONFIGS)) throw new Error(`unknown configuration ${config}\n${HELP}`);
if (opts.mode !== 'forward' && opts.mode !== 'train') throw new Error(`unknown mode ${opts.mode}\n${HELP}`);
const info = await initBenchBackend(opts.backend as BenchBackend);

const input = bltInput();
const model = new ByteLatentTransformer(BLT_CONFIGS[config], 1);
const step = async (): Promise<void> => {
  if (opts.mode === 'forward') {
    const logits = model.forward([input.tokens], [input.patchLengths]);
    await logits.data();
    logits.dispose();
  } else {
    const { value, grads } = tf.variableGrads(() => model.loss([input.tokens], [input.patchLengths], [input.targets]));
    await value.data();
    tf.dispose([value, ...Object.values(grads)]);
  }
};
for (let i = 0; i < 3; i++) await step(); // warm-up

// Wall time unprofiled (profiling itself slows every kernel call), median of 5.
const walls: number[] = [];
for (let i = 0; i < 5; i++) {
  const t = performance.now();
  await step();
  walls.push(performance.now() - t);
}
walls.sort((a, b) => a - b);
const wallMs = walls[2]!;

const profile = await tf.profile(step);
const byName = new Map<string, { calls: number; ms: number }>();
let kernelMs = 0;
for (const k of profile.kernels) {
  const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
  const entry = byName.get(k.name) ?? { calls: 0, ms: 0 };
  entry.calls += 1;
  entry.ms += ms;
  byName.set(k.name, entry);
  kernelMs += ms;
}
const rows = [...byName.entries()].sort((a, b) => b[1].ms - a[1].ms);
console.log(
  `${opts.backend} ${config} ${opts.mode}: ${profile.kernels.length} kernel calls, wall ${wallMs.toFixed(1)} ms (unprofiled median of 5), kernel time ${kernelMs.toFixed(1)} ms`,
);
console.log('kernel'.padEnd(24) + 'calls'.padStart(7) + 'ms'.padStart(10) + 'share'.padStart(8));
for (const [name, e] of rows.slice(0, Number(opts.top))) {
  console.log(
    name.padEnd(24) + String(e.calls).padStart(7) + e.ms.toFixed(2).padStart(10) + `${((100 * e.ms) / kernelMs).toFixed(1)}%`.padStart(8),
  );
}
const byCalls = [...byName.entries()].sort((a, b) => b[1].calls - a[1].calls).slice(0, 8);
report({
  bench: 'profile-step',
  backend: opts.backend,
  matmul: info.nativeMatMul?.active === true ? 'native' : 'backend kernels',
  config,
  mode: opts.mode,
  kernel_calls: profile.kernels.length,
  wall_ms: wallMs,
  kernel_ms: kernelMs,
  outside_kernels_share: Math.max(0, 1 - kernelMs / wallMs),
  most_called: byCalls.map(([n, e]) => `${n}x${e.calls}`).join(' '),
});
model.dispose();
