import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { freemem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPretrained } from '@bytelatent/blt';
import { writeReleasedCheckpoint } from '@bytelatent/released-checkpoints';
import { initBenchBackend, readFiles, report } from '../measure.js';

// Loading a checkpoint of a released model's exact shapes (random bf16 weights written by
// tools/released-checkpoints) through loadPretrained, as a user loads Meta's files: seconds, peak RSS,
// and the ratio to reading the same files from the warm page cache in this run.
//   BENCH_MODEL   blt-entropy (default: 200 MB, part of `npm run bench`) | blt-1b (9.3 GB) | blt-7b
//   BENCH_LAYOUT  hub (default) | consolidated | transformers
//   BENCH_DIR     an existing folder to load instead of generating one (kept afterwards)
//   BENCH_BACKEND cpu (default: tensors in JavaScript memory, no 4 GiB heap limit) | wasm
// A generated folder goes to $TMPDIR (or BENCH_TMP) and is deleted afterwards. The process stops
// itself (exit 3) when the machine's free memory falls under 1 GiB, rather than risk the OOM killer.
const model = (process.env['BENCH_MODEL'] ?? 'blt-entropy') as 'blt-entropy' | 'blt-1b' | 'blt-7b';
const layout = (process.env['BENCH_LAYOUT'] ?? 'hub') as 'hub' | 'consolidated' | 'transformers';
const backend = (process.env['BENCH_BACKEND'] ?? 'cpu') as 'cpu' | 'wasm';
const given = process.env['BENCH_DIR'];

const FLOOR = 1 << 30;
let lowestFree = freemem();
const watchdog = setInterval(() => {
  const free = freemem();
  lowestFree = Math.min(lowestFree, free);
  if (free < FLOOR) {
    console.error(`load-pretrained: free memory fell to ${(free / 2 ** 30).toFixed(2)} GiB; stopping before the OOM killer does`);
    process.exit(3);
  }
}, 100);
watchdog.unref();

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await files(path)));
    else out.push(path);
  }
  return out;
}

const dir = given ?? (await mkdtemp(join(process.env['BENCH_TMP'] ?? tmpdir(), `load-${model}-`)));
try {
  if (!given) {
    const written = await writeReleasedCheckpoint({ model, layout, out: dir, progress: false });
    console.error(
      `load-pretrained: wrote ${(written.bytes / 1e9).toFixed(2)} GB of ${model} (${layout}) in ${written.seconds.toFixed(1)} s`,
    );
  }
  const paths = await files(dir);
  const sizes = await Promise.all(paths.map(async (p) => (await stat(p)).size));
  const fileBytes = sizes.reduce((a, b) => a + b, 0);
  readFiles(paths); // warm the page cache
  const baseline = readFiles(paths);
  await initBenchBackend(backend);
  const rssBefore = process.memoryUsage().rss;
  const start = performance.now();
  let parameters: number;
  let detected: string;
  if (model === 'blt-entropy') {
    const { EntropyPatcher } = await import('@bytelatent/entropy-patcher');
    const patcher = await EntropyPatcher.fromPretrained(dir);
    parameters = patcher.model.registry.count();
    detected = patcher.layout ?? 'unknown';
    patcher.dispose();
  } else {
    const loaded = await loadPretrained(dir);
    parameters = loaded.model.parameterCount() + (loaded.patcher?.model.registry.count() ?? 0);
    detected = loaded.layout;
    loaded.dispose();
  }
  const seconds = (performance.now() - start) / 1000;
  report({
    bench: 'load-pretrained',
    model,
    layout: detected,
    backend,
    file_gb: fileBytes / 1e9,
    parameters,
    load_s: seconds,
    page_cache_read_s: baseline.seconds,
    load_over_read: seconds / baseline.seconds,
    load_gb_s: fileBytes / 1e9 / seconds,
    rss_before_gib: rssBefore / 2 ** 30,
    peak_rss_gib: (process.resourceUsage().maxRSS * 1024) / 2 ** 30,
    lowest_free_gib: lowestFree / 2 ** 30,
  });
} finally {
  if (!given) await rm(dir, { recursive: true, force: true });
}
