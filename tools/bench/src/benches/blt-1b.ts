import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { freemem, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generate, loadPretrained } from '@bytelatent/blt';
import { bltFlopsPerByte, bltFlopsShape } from '@bytelatent/evals';
import { loadNativeSgemm } from '@bytelatent/native-sgemm';
import { writeReleasedCheckpoint } from '@bytelatent/released-checkpoints';
import { readFiles, report } from '../measure.js';

// A BLT of the released blt-1b shapes (random bf16 weights, hub layout, written by
// tools/released-checkpoints) loaded, prefilled and generating through the public API, as a user
// runs Meta's files, on the cpu backend (weights in JavaScript memory, matmuls on OpenBLAS, hash
// tables read from the file). Every figure comes with a baseline measured in the same process:
//   load        seconds against reading the same file from the warm page cache;
//   prefill     bytes/s of one forward over BENCH_BYTES of English (patched by the BLT's own entropy
//               model), and its GFLOP/s (@bytelatent/evals' formulas: latent once per patch) against
//               OpenBLAS sgemm on a latent-sized product;
//   generation  bytes/s of greedy generation (the KV-cached engine) and the weight bytes it reads
//               per second against a STREAM-like copy of a buffer far larger than the caches;
//   memory      peak RSS of the whole run.
// Environment:
//   BENCH_DIR        an existing blt-1b-shaped folder (any layout) instead of writing one (kept)
//   BENCH_TMP        where to write one (default $TMPDIR; 9.3 GB, deleted afterwards)
//   BENCH_BYTES      prefill length (default 1024), BENCH_GENERATE bytes to generate (default 16)
//   BENCH_MEAN_PATCH bytes per patch (default 4.5, the released models' on English): random weights
//                    give every byte about the same entropy, so the folder's threshold would make
//                    one patch per byte; the threshold is calibrated on the prompt to this mean instead
//   BENCH_REFERENCE  a checkout of facebookresearch/blt: also run the reference PyTorch on the same
//                    folder, input and patches (tools/reference-bench/reference_bench.py, /usr/bin/python3
//                    with torch) before loading ours, and report the ratios
// The process stops itself (exit 3) when free memory falls under 1 GiB, rather than meet the OOM killer.
const given = process.env['BENCH_DIR'];
const prefillBytes = Number(process.env['BENCH_BYTES'] ?? 1024);
const generateBytes = Number(process.env['BENCH_GENERATE'] ?? 16);
const reference = process.env['BENCH_REFERENCE'];
const meanPatchTarget = Number(process.env['BENCH_MEAN_PATCH'] ?? 4.5);

const watchdog = setInterval(() => {
  if (freemem() < 1 << 30) {
    console.error(`blt-1b: free memory fell to ${(freemem() / 2 ** 30).toFixed(2)} GiB; stopping before the OOM killer does`);
    process.exit(3);
  }
}, 100);
watchdog.unref();

const PARAGRAPH =
  'The Byte Latent Transformer reads raw bytes. A small entropy model decides where the next byte is hard to predict, and the bytes between two such places form a patch. ' +
  'A light local encoder pools the bytes of each patch, a large latent transformer runs once per patch, and a light local decoder turns its output back into bytes. ';

function englishText(bytes: number): string {
  let text = '';
  while (text.length < bytes) text += PARAGRAPH;
  return text.slice(0, bytes);
}

/** GB/s of copying a 512 MiB float32 buffer into another (both already touched), best of 3, read + write counted. */
function copyBandwidth(): number {
  const n = 128 << 20;
  const src = new Float32Array(n).fill(1);
  const dst = new Float32Array(n).fill(0);
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const start = performance.now();
    dst.set(src);
    best = Math.min(best, (performance.now() - start) / 1000);
  }
  return (2 * n * 4) / best / 1e9;
}

/** GFLOP/s of OpenBLAS sgemm on a latent feed-forward product (`[1024, 2048] × [2048, 5632]`), best of 3. */
function sgemmGflops(): number {
  const sgemm = loadNativeSgemm();
  if (sgemm === undefined) return Number.NaN;
  const [m, k, n] = [1024, 2048, 5632];
  const a = new Float32Array(m * k).fill(0.5);
  const b = new Float32Array(k * n).fill(0.25);
  const c = new Float32Array(m * n);
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const start = performance.now();
    sgemm.sgemm(false, false, m, n, k, 1, a, 0, k, b, 0, n, 0, c, 0, n);
    best = Math.min(best, (performance.now() - start) / 1000);
  }
  return (2 * m * n * k) / best / 1e9;
}

const peakRssGib = () => (process.resourceUsage().maxRSS * 1024) / 2 ** 30;

/** The reference PyTorch on the same folder and input: its JSON figures by name. */
function runReference(dir: string, input: { tokens: number[]; patch_lengths: number[] }): Record<string, Record<string, unknown>> {
  const script = resolve(dirname(fileURLToPath(import.meta.url)), '../../../reference-bench/reference_bench.py');
  const inputPath = join(dir, '..', `blt-1b-input-${process.pid}.json`);
  writeFileSync(inputPath, JSON.stringify(input));
  try {
    const out = execFileSync(
      '/usr/bin/python3',
      [script, '--reference', reference!, '--model-dir', dir, '--threads', '2', '--modes', 'forward', '--runs', '1', '--input', inputPath],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        maxBuffer: 1 << 26,
      },
    );
    const figures: Record<string, Record<string, unknown>> = {};
    for (const line of out.split('\n')) {
      if (!line.startsWith('{')) continue;
      const parsed = JSON.parse(line) as Record<string, unknown>;
      if (typeof parsed['figure'] === 'string') figures[parsed['figure']] = parsed;
    }
    return figures;
  } finally {
    void rm(inputPath, { force: true });
  }
}

const dir = given ?? (await mkdtemp(join(process.env['BENCH_TMP'] ?? tmpdir(), 'blt-1b-')));
try {
  if (!given) {
    const written = await writeReleasedCheckpoint({ model: 'blt-1b', layout: 'hub', out: dir, progress: false });
    console.error(`blt-1b: wrote ${(written.bytes / 1e9).toFixed(2)} GB in ${written.seconds.toFixed(1)} s`);
  }
  const copyGbS = copyBandwidth();
  const sgemm = sgemmGflops();
  const weightsFile = [join(dir, 'model.safetensors')];
  readFiles(weightsFile); // warm the page cache
  const read = readFiles(weightsFile);

  const start = performance.now();
  const loaded = await loadPretrained(dir, { backend: 'cpu' });
  const loadS = (performance.now() - start) / 1000;
  const loadPeak = peakRssGib();
  const { model, patcher, patching } = loaded;
  if (patcher === undefined) throw new Error('blt-1b: the folder has no entropy model');

  // Prefill: the BLT's own patching, then one forward (the second of two: the first warms the JIT).
  const text = englishText(prefillBytes);
  const { threshold } = await patcher.calibrate([text], meanPatchTarget, { mode: 'entropy' });
  const patchingUsed = { ...patching, mode: 'entropy' as const, threshold };
  const patchStart = performance.now();
  const patched = await patcher.patch(text, patchingUsed);
  const patchS = (performance.now() - patchStart) / 1000;
  const tokens = Array.from(patched.tokens);
  const lengths = Array.from(patched.patchLengths);
  let referenceFigures: Record<string, Record<string, unknown>> | undefined;
  let forwardS = Infinity;
  for (let run = 0; run < 2; run++) {
    const t = performance.now();
    const logits = model.forward([tokens], [lengths]);
    await logits.data();
    logits.dispose();
    forwardS = Math.min(forwardS, (performance.now() - t) / 1000);
  }
  const meanPatch = tokens.length / lengths.length;
  const flops = bltFlopsPerByte(bltFlopsShape(model.referenceArgs), meanPatch, tokens.length).total * tokens.length;
  const prefillGflops = flops / forwardS / 1e9;

  // Generation: weights read per generated byte (float32): the local models and the entropy model
  // once per byte, the latent once per patch.
  const prompt = englishText(64);
  const generated = await generate(model, prompt, {
    patcher: { ...patchingUsed, entropyModel: patcher.model },
    maxBytes: generateBytes,
    temperature: 0,
    stopAtEos: false,
  });
  const weightBytes = (prefix: string) =>
    model.registry.list().reduce((sum, p) => (p.name.startsWith(prefix) ? sum + p.referenceShape.reduce((a, b) => a * b, 1) * 4 : sum), 0);
  const local = weightBytes('local_encoder.') + weightBytes('local_decoder.');
  const latent = weightBytes('global_transformer.');
  const entropy = patcher.model.registry.count() * 4;
  const s = generated.stats;
  const trafficBytes = s.generatedBytes * (local + entropy) + s.latentCalls * latent;
  const generateS = s.elapsedMs / 1000;
  const genPeak = peakRssGib();
  const parameters = model.parameterCount() + patcher.model.registry.count();
  loaded.dispose();

  if (reference !== undefined) {
    referenceFigures = runReference(dir, { tokens, patch_lengths: lengths });
  }
  const refForward = referenceFigures?.['forward'];
  const refLoad = referenceFigures?.['load'];
  report({
    bench: 'blt-1b',
    parameters,
    file_gb: read.bytes / 1e9,
    load_s: loadS,
    page_cache_read_s: read.seconds,
    load_over_read: loadS / read.seconds,
    load_peak_rss_gib: loadPeak,
    prefill_bytes: prefillBytes,
    prefill_patches: lengths.length,
    threshold,
    patch_s: patchS,
    forward_s: forwardS,
    prefill_bytes_s: prefillBytes / forwardS,
    prefill_gflop_s: prefillGflops,
    sgemm_gflop_s: sgemm,
    prefill_share_of_sgemm: prefillGflops / sgemm,
    generated_bytes: s.generatedBytes,
    generate_latent_calls: s.latentCalls,
    generate_bytes_s: s.generatedBytes / generateS,
    generate_entropy_s: s.entropyMs / 1000,
    generate_traffic_gb_s: trafficBytes / generateS / 1e9,
    copy_gb_s: copyGbS,
    generate_share_of_copy: trafficBytes / generateS / 1e9 / copyGbS,
    peak_rss_gib: Math.max(loadPeak, genPeak),
    ...(refForward
      ? {
          reference_forward_bytes_s: Number(refForward['bytes_s']),
          forward_ratio: prefillBytes / forwardS / Number(refForward['bytes_s']),
          reference_peak_rss_gib: Number(refForward['after_forward_vmhwm_gib']),
          ...(refLoad ? { reference_load_s: Number(refLoad['seconds']) } : {}),
        }
      : {}),
  });
} finally {
  if (!given) await rm(dir, { recursive: true, force: true });
}
