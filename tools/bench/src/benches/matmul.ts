import * as tf from '@tensorflow/tfjs-core';
import { initBenchBackend, medianSeconds, report } from '../measure.js';

// float32 matmul GFLOP/s per tfjs backend against this machine's OpenBLAS peak, measured in the
// same process: OpenBLAS cblas_sgemm called directly on Float32Arrays (through the optional
// @bytelatent/native-sgemm addon) at 1 and 2 threads is the peak; each backend's `tf.matMul` of the
// same square product is reported in GFLOP/s and as a fraction of the 2-thread peak. 1024² where a
// product takes well under a second, 512² on the slow backends (cpu, software WebGPU).
const SIZES: Record<string, number> = { cpu: 512, wasm: 1024, 'wasm-nonative': 1024, webgpu: 512 };
const RUNS = 5;
const BUDGET_S = 15;

const flop = (n: number) => 2 * n ** 3;
const figures: Record<string, string | number> = { bench: 'matmul' };

// OpenBLAS directly: the peak. The addon is optional (not a dependency of the bench): imported
// by name at run time.
interface Sgemm {
  sgemm(
    ta: boolean,
    tb: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    ao: number,
    lda: number,
    b: Float32Array,
    bo: number,
    ldb: number,
    beta: number,
    c: Float32Array,
    co: number,
    ldc: number,
  ): void;
  setNumThreads(t: number): void;
  getNumThreads(): number;
  readonly config: string;
}
let peak = Number.NaN;
try {
  const specifier = '@bytelatent/native-sgemm';
  const mod = (await import(specifier)) as { loadNativeSgemm(): Sgemm | undefined };
  const blas = mod.loadNativeSgemm();
  if (blas === undefined) throw new Error('addon not built');
  figures['openblas'] = blas.config;
  const initial = blas.getNumThreads();
  for (const n of [1024, 2048]) {
    const a = Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
    const c = new Float32Array(n * n);
    for (const threads of [1, 2]) {
      blas.setNumThreads(threads);
      const seconds = medianSeconds(() => blas.sgemm(false, false, n, n, n, 1, a, 0, n, a, 0, n, 0, c, 0, n), RUNS);
      const g = flop(n) / seconds / 1e9;
      figures[`openblas_${n}_t${threads}_gflop_s`] = g;
      if (threads === 2) peak = Number.isFinite(peak) ? Math.max(peak, g) : g;
    }
  }
  blas.setNumThreads(initial);
  figures['peak_gflop_s'] = peak;
} catch (e) {
  figures['openblas'] = `unavailable: ${(e as Error).message}`;
}

for (const backend of ['cpu', 'wasm-nonative', 'wasm', 'webgpu'] as const) {
  const key = backend.replace('-', '_');
  try {
    const info = await initBenchBackend(backend);
    if (info.nativeMatMul !== undefined) figures[`${key}_matmul`] = info.nativeMatMul.active ? 'OpenBLAS' : 'wasm kernels (XNNPACK)';
    if (info.adapter !== undefined) figures[`${key}_adapter`] = `${info.adapter}${info.software === true ? ' (software)' : ''}`;
  } catch {
    figures[key] = 'unavailable';
    continue;
  }
  const n = SIZES[backend]!;
  const a = tf.randomUniform([n, n], -1, 1, 'float32', 1);
  const b = tf.randomUniform([n, n], -1, 1, 'float32', 2);
  // `await data()` so that asynchronous backends (webgpu) are timed to completion.
  const run = async () => {
    const c = tf.matMul(a, b);
    await c.data();
    c.dispose();
  };
  await run();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < RUNS && (times.length === 0 || (performance.now() - start) / 1000 < BUDGET_S)) {
    const t = performance.now();
    await run();
    times.push((performance.now() - t) / 1000);
  }
  times.sort((x, y) => x - y);
  const g = flop(n) / times[Math.floor(times.length / 2)]! / 1e9;
  figures[`${key}_${n}_gflop_s`] = g;
  if (Number.isFinite(peak)) figures[`${key}_over_peak`] = g / peak;
  tf.dispose([a, b]);
}
report(figures);
