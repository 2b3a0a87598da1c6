import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { ByteLatentTransformer } from '@bytelatent/blt';
import { initBackend } from '@bytelatent/nn';
import { BLT_CONFIGS, type BltConfigName, bltInput } from '../blt-configs.js';
import { report } from '../measure.js';

// How many OpenBLAS threads a product should run on: the data behind @bytelatent/native-sgemm's
// default `setMinWorkPerThread`. Two parts, each alternating its settings in one process:
//
// products: the products of a BLT step, each timed at 1 and 2 threads (OpenBLAS alone: the
//   per-call limit off) and with the addon's default limit (`auto`): m in {513, 2052, 4096}
//   tokens, n and k in {32, 64, 128, 384, 1024}; each (m, n, k) as the forward product (a · b),
//   the input gradient (dy · wᵀ) and the weight gradient (xᵀ · dy: m and n the dims, k the
//   tokens); then attention-shaped batched products (4 heads) against one head, to check that the
//   batch does not move the crossover (OpenBLAS parallelises each product, not the batch). Every
//   round visits all products in a new random order and times each setting in turn, so load that
//   comes and goes spreads over all products instead of spoiling a block of them; medians over
//   rounds. The crossover is the m·n·k below which one thread minimises the mean relative time lost.
// steps: BLT fwd+bwd steps (tiny and 10M, ../blt-configs.ts) on the wasm backend with OpenBLAS
//   matmuls, at 1 thread, at 2 threads, and at 2 threads with each `--work` value: what a product
//   in a tight loop does not show (a woken OpenBLAS thread keeps spinning after the call, next to
//   the other kernels and V8's own threads).
//
// Prints tables (markdown) on stderr, then one JSON line.
const HELP = `usage: native-threads.js [--parts products,steps] [--rounds N] [--min-ms MS] [--tokens 513,2052,4096]
              [--dims 32,64,128,384,1024] [--configs tiny,10m] [--work 1000000,...] [--step-rounds N] [--max-others 0.1]`;
const { values: opts } = parseArgs({
  options: {
    parts: { type: 'string', default: 'products,steps' },
    rounds: { type: 'string', default: '11' },
    'min-ms': { type: 'string', default: '3' },
    tokens: { type: 'string', default: '513,2052,4096' },
    dims: { type: 'string', default: '32,64,128,384,1024' },
    configs: { type: 'string', default: 'tiny,10m' },
    work: { type: 'string', default: '1000000,2000000,3000000,6000000' },
    'step-rounds': { type: 'string', default: '21' },
    'max-others': { type: 'string', default: '0.1' },
    help: { type: 'boolean', default: false },
  },
});
if (opts.help) {
  console.log(HELP);
  process.exit(0);
}
const PARTS = opts.parts.split(',');
const ROUNDS = Number(opts.rounds);
const MIN_MS = Number(opts['min-ms']);
const TOKENS = opts.tokens.split(',').map(Number);
const DIMS = opts.dims.split(',').map(Number);
const CONFIGS = opts.configs.split(',') as BltConfigName[];
const WORK = opts.work.split(',').map(Number);
const STEP_ROUNDS = Number(opts['step-rounds']);
const MAX_OTHERS = Number(opts['max-others']);

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
  sgemmBatched(
    ta: boolean,
    tb: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    ao: number,
    as: number,
    lda: number,
    b: Float32Array,
    bo: number,
    bs: number,
    ldb: number,
    beta: number,
    c: Float32Array,
    co: number,
    cs: number,
    ldc: number,
    batch: number,
  ): void;
  setNumThreads(t: number): void;
  getNumThreads(): number;
  setMinWorkPerThread(w: number): void;
  getMinWorkPerThread(): number;
  readonly config: string;
}
// The addon is optional (not a dependency of the bench): imported by name at run time.
const specifier = '@bytelatent/native-sgemm';
const blas = ((await import(specifier)) as { loadNativeSgemm(): Sgemm | undefined }).loadNativeSgemm();
if (blas === undefined || typeof blas.setMinWorkPerThread !== 'function') {
  report({
    bench: 'native-threads',
    native: false,
    reason: blas === undefined ? 'addon not built' : 'addon without setMinWorkPerThread (rebuild it)',
  });
  process.exit(0);
}
const initialThreads = blas.getNumThreads();
const defaultWork = blas.getMinWorkPerThread();
const figures: Record<string, string | number | boolean> = {
  bench: 'native-threads',
  openblas: blas.config,
  default_min_work_per_thread: defaultWork,
};

let seed = 1;
function random(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 2 ** 32;
}
const fmt = (x: number, d = 2) => x.toFixed(d);
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;

/** CPU seconds used so far by every process on the machine (/proc/stat), or NaN off Linux. */
function machineBusySeconds(): number {
  try {
    // user nice system idle iowait irq softirq steal, in USER_HZ (100 per second).
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = readFileSync('/proc/stat', 'utf8')
      .split('\n')[0]!
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    return (user + nice + system + irq + softirq + steal) / 100;
  } catch {
    return Number.NaN;
  }
}

/** Measures the share of the machine's CPUs that other processes kept busy between start() and stop(). */
function othersMeter() {
  const busy0 = machineBusySeconds();
  const own0 = process.cpuUsage();
  const wall0 = performance.now();
  return () => {
    const own = process.cpuUsage(own0);
    const wall = (performance.now() - wall0) / 1000;
    return Math.max(0, (machineBusySeconds() - busy0 - (own.user + own.system) / 1e6) / wall / availableParallelism());
  };
}

if (PARTS.includes('products')) {
  type Variant = 't1' | 't2' | 'auto';
  const VARIANTS: Variant[] = ['t1', 't2', 'auto'];
  const configure = (v: Variant) => {
    blas.setNumThreads(v === 't1' ? 1 : 2);
    blas.setMinWorkPerThread(v === 'auto' ? defaultWork : 0);
  };
  interface Product {
    name: string;
    m: number;
    n: number;
    k: number;
    batch: number;
    run: () => void;
    reps: number;
    times: Record<Variant, number[]>;
    /** Per round: 1-thread time / 2-thread time, and auto / the better of the two. */
    speedups: number[];
    autoOverBest: number[];
  }
  // One set of operands, large enough for every product: every product reads the start of them.
  const size = Math.max(Math.max(...TOKENS) * Math.max(...DIMS), 4 * 513 * 513);
  const a = Float32Array.from({ length: size }, () => random() - 0.5);
  const b = Float32Array.from({ length: size }, () => random() - 0.5);
  const c = new Float32Array(size);
  const products: Product[] = [];
  const add = (name: string, m: number, n: number, k: number, batch: number, run: () => void) =>
    products.push({ name, m, n, k, batch, run, reps: 1, times: { t1: [], t2: [], auto: [] }, speedups: [], autoOverBest: [] });
  for (const tokens of TOKENS) {
    for (const n of DIMS) {
      for (const k of DIMS) {
        add('a·b', tokens, n, k, 1, () => blas.sgemm(false, false, tokens, n, k, 1, a, 0, k, b, 0, n, 0, c, 0, n));
        add('dy·wᵀ', tokens, n, k, 1, () => blas.sgemm(false, true, tokens, n, k, 1, a, 0, k, b, 0, k, 0, c, 0, n));
        // The weight gradient of a [tokens, n] -> [tokens, k] layer: [n, tokens] x [tokens, k].
        add('xᵀ·dy', n, k, tokens, 1, () => blas.sgemm(true, false, n, k, tokens, 1, a, 0, n, b, 0, k, 0, c, 0, k));
      }
    }
  }
  // Attention of one 513-token row: scores q · kᵀ and context p · v, 4 heads in one call or one head.
  for (const head of [16, 32, 64]) {
    for (const batch of [1, 4]) {
      const [t, sz] = [513, 513 * 513];
      add(`scores q·kᵀ ×${batch}`, t, t, head, batch, () =>
        blas.sgemmBatched(false, true, t, t, head, 1, a, 0, t * head, head, b, 0, t * head, head, 0, c, 0, sz, t, batch),
      );
      add(`context p·v ×${batch}`, t, head, t, batch, () =>
        blas.sgemmBatched(false, false, t, head, t, 1, a, 0, sz, t, b, 0, t * head, head, 0, c, 0, t * head, head, batch),
      );
    }
  }
  // Calls per measurement: enough to last MIN_MS at one thread.
  configure('t1');
  for (const p of products) {
    p.run();
    const t = performance.now();
    p.run();
    p.reps = Math.max(1, Math.ceil(MIN_MS / Math.max(performance.now() - t, 1e-3)));
  }
  const others: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const stop = othersMeter();
    const order = products.map((p) => [random(), p] as const).sort((x, y) => x[0] - y[0]);
    for (const [, p] of order) {
      const round: Partial<Record<Variant, number>> = {};
      for (let i = 0; i < VARIANTS.length; i++) {
        const v = VARIANTS[(i + r) % VARIANTS.length]!;
        configure(v);
        p.run();
        const t = performance.now();
        for (let j = 0; j < p.reps; j++) p.run();
        round[v] = (performance.now() - t) / 1000 / p.reps;
        p.times[v].push(round[v]);
      }
      p.speedups.push(round.t1! / round.t2!);
      p.autoOverBest.push(round.auto! / Math.min(round.t1!, round.t2!));
    }
    others.push(stop());
  }
  blas.setNumThreads(initialThreads);
  blas.setMinWorkPerThread(defaultWork);

  const work = (p: Product) => p.m * p.n * p.k;
  const speedup = (p: Product) => median(p.speedups);
  // Relative time lost by running a product on `threads` instead of the better count.
  const lost = (p: Product, threads: 1 | 2) => (threads === 1 ? Math.max(speedup(p), 1) : Math.max(1 / speedup(p), 1)) - 1;
  console.error(
    `\nproducts: median of ${ROUNDS} rounds; others kept ${fmt(mean(others) * 100, 0)} % of the CPUs busy (max round ${fmt(Math.max(...others) * 100, 0)} %)\n`,
  );
  console.error('| product | m | n | k | batch | m·n·k | 1 thread (ms) | 2 threads (ms) | 2 threads: speed-up | auto / best |');
  console.error('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const p of [...products].sort((x, y) => work(x) - work(y) || x.m - y.m || x.name.localeCompare(y.name))) {
    console.error(
      `| ${p.name} | ${p.m} | ${p.n} | ${p.k} | ${p.batch} | ${work(p).toExponential(2)} | ${fmt(median(p.times.t1) * 1e3, 3)} | ${fmt(median(p.times.t2) * 1e3, 3)} | ${fmt(speedup(p))} | ${fmt(median(p.autoOverBest))} |`,
    );
  }
  // The crossover: the one-thread-below threshold T (on m·n·k) minimising the mean relative time
  // lost against the better setting over the single products, each counting alike.
  const singles = products.filter((p) => p.batch === 1 && !p.name.includes('q·kᵀ') && !p.name.includes('p·v'));
  const candidates = [0, ...new Set(singles.map(work))].sort((x, y) => x - y).map((w) => w + 1);
  const loss = (threshold: number) => mean(singles.map((p) => lost(p, work(p) < threshold ? 1 : 2)));
  let best = { threshold: 0, loss: Number.POSITIVE_INFINITY };
  for (const t of candidates) if (loss(t) < best.loss) best = { threshold: t, loss: loss(t) };
  const near = candidates.filter((t) => loss(t) <= best.loss + 0.005);
  // Buckets of m·n·k (powers of 2): the median speed-up and how many products 2 threads win.
  console.error('\n| m·n·k | products | 2 threads faster | median speed-up | range |');
  console.error('|---|---:|---:|---:|---:|');
  const buckets = new Map<number, Product[]>();
  for (const p of singles) {
    const key = Math.floor(Math.log2(work(p)));
    buckets.set(key, [...(buckets.get(key) ?? []), p]);
  }
  for (const [key, ps] of [...buckets].sort((x, y) => x[0] - y[0])) {
    const s = ps.map(speedup);
    console.error(
      `| ${(2 ** key).toExponential(1)}-${(2 ** (key + 1)).toExponential(1)} | ${ps.length} | ${s.filter((x) => x > 1).length} | ${fmt(median(s))} | ${fmt(Math.min(...s))}-${fmt(Math.max(...s))} |`,
    );
  }
  Object.assign(figures, {
    products: singles.length,
    rounds: ROUNDS,
    others_busy_mean: mean(others),
    crossover_mnk: best.threshold,
    crossover_band_mnk: `${Math.min(...near)}-${Math.max(...near)}`,
    mean_loss_at_crossover: best.loss,
    mean_loss_always_t1: loss(Number.POSITIVE_INFINITY),
    mean_loss_always_t2: loss(0),
    mean_loss_default: loss(2 * defaultWork),
    mean_auto_over_best: mean(singles.map((p) => median(p.autoOverBest))),
  });
  for (const p of products.filter((x) => !singles.includes(x)))
    figures[`${p.name.split(' ')[0]}_x${p.batch}_${p.m}x${p.n}x${p.k}_speedup_t2`] = speedup(p);
}

if (PARTS.includes('steps')) {
  const info = await initBackend({ backend: 'wasm' });
  if (info.nativeMatMul?.active !== true)
    throw new Error(`the wasm backend does not run its matmuls natively: ${info.nativeMatMul?.reason ?? 'n/a'}`);
  const input = bltInput();
  // Settings: [label, threads, work per thread]; 0 leaves every product to OpenBLAS.
  const settings: Array<[string, number, number]> = [
    ['1 thread', 1, 0],
    ['2 threads', 2, 0],
    ...WORK.map((w): [string, number, number] => [`2, work ${w.toExponential(1)}`, 2, w]),
  ];
  for (const name of CONFIGS) {
    const model = new ByteLatentTransformer(BLT_CONFIGS[name], 1);
    const step = () => {
      const { value, grads } = tf.variableGrads(() => model.loss([input.tokens], [input.patchLengths], [input.targets]));
      value.dataSync();
      tf.dispose([value, ...Object.values(grads)]);
    };
    for (let i = 0; i < 3; i++) step();
    // Steps per measurement: enough to last ~400 ms (GC pauses average out).
    let t0 = performance.now();
    step();
    const perMeasurement = Math.max(2, Math.round(400 / (performance.now() - t0)));
    // A round during which other processes kept more than --max-others of the CPUs busy is
    // discarded and run again (up to 4x the rounds): two threads need the second core.
    const pause = new Int32Array(new SharedArrayBuffer(4));
    const times = settings.map(() => [] as number[]);
    // Per round: the 1-thread time over this setting's (measured moments apart, so robust to drift).
    const ratios = settings.map(() => [] as number[]);
    const kept: number[] = [];
    let discarded = 0;
    for (let r = 0; kept.length < STEP_ROUNDS && r < 4 * STEP_ROUNDS; r++) {
      const stop = othersMeter();
      const round: number[] = [];
      for (let i = 0; i < settings.length; i++) {
        const j = (i + r) % settings.length;
        const [, threads, work] = settings[j]!;
        blas.setNumThreads(threads);
        blas.setMinWorkPerThread(work);
        // OpenBLAS's threads spin ~0.1 s after a call on several threads before they sleep: let
        // them, so that the previous setting's spinning does not run into this one's steps.
        Atomics.wait(pause, 0, 0, 150);
        step();
        t0 = performance.now();
        for (let k = 0; k < perMeasurement; k++) step();
        round[j] = (performance.now() - t0) / perMeasurement;
      }
      const others = stop();
      if (others > MAX_OTHERS) {
        discarded++;
        continue;
      }
      kept.push(others);
      round.forEach((ms, j) => {
        times[j]!.push(ms);
        ratios[j]!.push(round[0]! / ms);
      });
    }
    const others = kept.length > 0 ? mean(kept) : Number.NaN;
    model.dispose();
    if (kept.length === 0) {
      console.error(`\nsteps: BLT ${name}: every round discarded (other processes kept more than ${MAX_OTHERS * 100} % of the CPUs busy)`);
      continue;
    }
    console.error(
      `\nsteps: BLT ${name} fwd+bwd, ${input.bytes} bytes, median of ${kept.length} rounds of ${perMeasurement} steps (${discarded} discarded: others above ${MAX_OTHERS * 100} %); others kept ${fmt(others * 100, 0)} % of the CPUs busy\n`,
    );
    console.error('| setting | ms / step | range (ms) | speed-up over 1 thread (median of the rounds) | range |');
    console.error('|---|---:|---:|---:|---:|');
    settings.forEach(([label], j) => {
      const ms = median(times[j]!);
      const speedup = median(ratios[j]!);
      console.error(
        `| ${label} | ${fmt(ms, 1)} | ${fmt(Math.min(...times[j]!), 0)}-${fmt(Math.max(...times[j]!), 0)} | ${fmt(speedup)}x | ${fmt(Math.min(...ratios[j]!))}-${fmt(Math.max(...ratios[j]!))} |`,
      );
      figures[`${name}_${label.replace(/[ ,.+]+/g, '_')}_ms`] = ms;
      figures[`${name}_${label.replace(/[ ,.+]+/g, '_')}_speedup`] = speedup;
    });
  }
  blas.setNumThreads(initialThreads);
  blas.setMinWorkPerThread(defaultWork);
}

report(figures);
