import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encode } from '@bytelatent/bytes';
import { EntropyPatcher, findPatchBoundaries } from '@bytelatent/entropy-patcher';
import { initBackend } from '@bytelatent/nn';
import { medianSeconds, report, syntheticText } from '../measure.js';

// Patching throughput (KB/s, 1 KB = 1000 bytes) of the entropy model shipped in
// @bytelatent/entropy-patcher (EntropyPatcher.pretrained()), on held-out English:
//   default     what a user gets: a fresh Node process that only does `await EntropyPatcher.pretrained()`
//               and `await p.patch(text)`, no backend call; its backend, threads and stderr reported;
//   wasm_alone  initBackend({ backend: 'wasm', nativeMatMul: 'off' }), the package installed alone (no
//               native addon), at 1 thread and at the default threads (worker threads);
//   native      initBackend({ backend: 'wasm' }), matmuls on OpenBLAS when @bytelatent/native-sgemm is built;
//   reference   with BENCH_REFERENCE=<facebookresearch/blt checkout>: the reference PyTorch LMTransformer
//               of the same file through its own calculate_entropies, same tokens, 2 threads
//               (tools/reference-bench/reference_bench.py --entropy-model, /usr/bin/python3 with torch),
//               its entropies checked against ours;
// and the patching rules alone, given entropies, in MB/s.
// Steady state everywhere: one 64 KiB patch first (it starts the worker threads), then the median of
// 3 calls per size (one call at 1 MiB).
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../../..');
const packageDir = join(root, 'packages/entropy-patcher');
const reference = process.env['BENCH_REFERENCE'];

const KIB = 1024;
const SIZES: ReadonlyArray<readonly [string, number, number]> = [
  ['1kib', KIB, 3],
  ['16kib', 16 * KIB, 3],
  ['1mib', KIB * KIB, 1],
];
const WARMUP = 64 * KIB;

// Held-out English when the corpus is there (repeated to 1 MiB: the book is shorter), else pseudo-text.
const heldout = join(root, '.cache/corpus/heldout/books/carroll-alice.txt');
let corpus: Uint8Array;
// The file pretrained() loads: the reference is given the same one.
const modelPath = fileURLToPath(EntropyPatcher.pretrainedUrl());
const figures: Record<string, number | string | boolean> = { bench: 'entropy-patcher', model: basename(modelPath) };
if (existsSync(heldout)) {
  const book = readFileSync(heldout);
  corpus = new Uint8Array(KIB * KIB);
  for (let n = 0; n < corpus.length; n += book.length) corpus.set(book.subarray(0, Math.min(book.length, corpus.length - n)), n);
  figures['text'] = `heldout carroll-alice.txt (${book.length} bytes, repeated to 1 MiB)`;
} else {
  corpus = syntheticText(KIB * KIB);
  figures['text'] = 'syntheticText (held-out corpus absent)';
}
const text = (bytes: number) => corpus.subarray(0, bytes);
const kbS = (bytes: number, seconds: number) => bytes / 1000 / seconds;

/** Median seconds of `runs` calls (warm-up is the caller's). */
async function medianAsync(fn: () => Promise<unknown>, runs: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    times.push((performance.now() - start) / 1000);
  }
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)]!;
}

/** Warm-up, then KB/s per size under `prefix`; returns the 16 KiB result's entropies. */
async function measure(patcher: EntropyPatcher, prefix: string, sizes = SIZES): Promise<{ entropies: Float32Array; tokens: Int32Array }> {
  await patcher.patch(text(WARMUP));
  for (const [name, bytes, runs] of sizes)
    figures[`${prefix}_${name}_kb_s`] = kbS(bytes, await medianAsync(() => patcher.patch(text(bytes)), runs));
  const r = await patcher.patch(text(16 * KIB));
  return { entropies: r.entropies, tokens: r.tokens };
}

const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

// 1. The default path, in a fresh process: nothing chosen, nothing loaded before. The SwiftShader
// Vulkan driver this machine points VK_ICD_FILENAMES at is not what a user has: left out.
const CHILD = `
import { readFileSync } from 'node:fs';
import { EntropyPatcher } from '@bytelatent/entropy-patcher';
const corpus = readFileSync(process.argv[1]);
const sizes = ${JSON.stringify(SIZES)};
const out = {};
let start = performance.now();
const p = await EntropyPatcher.pretrained();
out.load_s = (performance.now() - start) / 1000;
start = performance.now();
await p.patch(corpus.subarray(0, ${WARMUP}));
out.first_64kib_s = (performance.now() - start) / 1000;
for (const [name, bytes, runs] of sizes) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await p.patch(corpus.subarray(0, bytes));
    times.push((performance.now() - t) / 1000);
  }
  out[name + '_kb_s'] = bytes / 1000 / times.sort((a, b) => a - b)[Math.floor(runs / 2)];
}
out.backend = p.backend.name;
out.matmul = p.backend.nativeMatMul === undefined ? 'n/a' : p.backend.nativeMatMul.active ? 'OpenBLAS' : 'wasm';
out.threads = p.threads;
p.dispose();
console.log(JSON.stringify(out));
`;
const scratch = mkdtempSync(join(tmpdir(), 'bench-entropy-patcher-'));
try {
  const corpusPath = join(scratch, 'text.bin');
  writeFileSync(corpusPath, corpus);
  const env = { ...process.env };
  delete env['VK_ICD_FILENAMES'];
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD, corpusPath], {
    cwd: packageDir,
    env,
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (child.status !== 0) throw new Error(`default-path process failed (${child.status ?? child.signal}): ${child.stderr}`);
  const fresh = JSON.parse(child.stdout.trim().split('\n').pop()!) as Record<string, number | string>;
  figures['default_backend'] = fresh['backend']!;
  figures['default_matmul'] = fresh['matmul']!;
  figures['default_threads'] = fresh['threads']!;
  for (const [name] of SIZES) figures[`default_${name}_kb_s`] = fresh[`${name}_kb_s`]!;
  figures['default_load_s'] = fresh['load_s']!;
  figures['default_first_64kib_s'] = fresh['first_64kib_s']!;
  // A user's console: the default path should print nothing.
  figures['default_stderr_empty'] = child.stderr.length === 0;
  if (child.stderr.length > 0) {
    figures['default_stderr_head'] = child.stderr.slice(0, 200);
    process.stderr.write(child.stderr);
  }

  // 2. wasm with its own kernels (no native addon), one thread and the default threads.
  await initBackend({ backend: 'wasm', nativeMatMul: 'off' });
  const one = await EntropyPatcher.pretrained({ threads: 1 });
  const wasm1 = await measure(one, 'wasm_alone_1t');
  one.dispose();
  const shared = await EntropyPatcher.pretrained();
  figures['wasm_alone_threads'] = shared.threads;
  const wasmN = await measure(shared, 'wasm_alone');
  shared.dispose();
  // The worker threads compute whole contexts: their entropies must be one thread's.
  figures['wasm_alone_threads_max_abs_diff'] = maxAbsDiff(wasmN.entropies, wasm1.entropies);

  // 3. wasm with native matmuls when the addon is built (auto), for scale: 16 KiB.
  const info = await initBackend({ backend: 'wasm' });
  const native = await EntropyPatcher.pretrained();
  figures['native_matmul'] = info.nativeMatMul?.active === true ? 'OpenBLAS' : 'wasm (native-sgemm not built)';
  figures['native_threads'] = native.threads;
  const nat = await measure(native, 'native', [SIZES[1]!]);
  native.dispose();
  figures['native_vs_wasm_alone_max_abs_diff'] = maxAbsDiff(nat.entropies, wasm1.entropies);

  // 4. The reference PyTorch on the same tokens, 2 threads (this bench's default threads here).
  if (reference === undefined) {
    figures['reference'] = 'not run: set BENCH_REFERENCE to a facebookresearch/blt checkout';
  } else {
    const inputPath = join(scratch, 'input.json');
    writeFileSync(inputPath, JSON.stringify({ tokens: Array.from(wasm1.tokens), entropies: Array.from(wasm1.entropies) }));
    const script = join(root, 'tools/reference-bench/reference_bench.py');
    const out = execFileSync(
      '/usr/bin/python3',
      [script, '--reference', reference, '--threads', '2', '--entropy-model', modelPath, '--input', inputPath, '--runs', '3'],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        maxBuffer: 1 << 24,
      },
    );
    const ref = JSON.parse(out.trim().split('\n').pop()!) as Record<string, number | string>;
    const refKbS = (ref['bytes_s'] as number) / 1000;
    figures['reference'] = 'facebookresearch/blt calculate_entropies (PyTorch, CPU)';
    figures['reference_torch'] = ref['torch']!;
    figures['reference_threads'] = ref['threads']!;
    figures['reference_patching_batch_size'] = ref['patching_batch_size']!;
    figures['reference_max_length'] = ref['max_length']!;
    figures['reference_16kib_kb_s'] = refKbS;
    // Against ours at one thread, wasm kernels; the native path's own difference is above.
    figures['reference_max_abs_diff'] = ref['max_abs_diff_vs_input']!;
    figures['default_over_reference'] = (figures['default_16kib_kb_s'] as number) / refKbS;
    figures['wasm_alone_over_reference'] = (figures['wasm_alone_16kib_kb_s'] as number) / refKbS;
    figures['wasm_alone_1t_over_reference'] = (figures['wasm_alone_1t_16kib_kb_s'] as number) / refKbS;
    figures['native_over_reference'] = (figures['native_16kib_kb_s'] as number) / refKbS;
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

// Other jobs on the machine change every figure above: the 1-minute load average at the end.
figures['loadavg_1m'] = loadavg()[0]!;

// The rules alone, given entropies (what a precomputed-entropy pipeline pays).
const big = encode(syntheticText(4 << 20), { eos: false });
const entropies = Float32Array.from(big, (_, i) => (((i * 2654435761) >>> 0) / 2 ** 32) * 3);
figures['entropy_rule_mb_s'] =
  big.length / 1e6 / medianSeconds(() => findPatchBoundaries(big, entropies, { mode: 'entropy', threshold: 1.5, maxPatchLength: 16 }), 3);
figures['space_rule_mb_s'] = big.length / 1e6 / medianSeconds(() => findPatchBoundaries(big, undefined, { mode: 'space' }), 3);
report(figures);
