// writeReleasedCheckpoint: plans a model's files in a layout, checks the free space, and writes every
// file in one streaming pass (never more than two write buffers in memory), each atomically.
import { statfs } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { planCheckpoint, type Layout, type PlannedFile } from './layouts.js';
import type { Preset, ReleasedModelName } from './models.js';
import { Progress, stderrReporter, type ProgressInfo } from './progress.js';
import { writePth, type PthFlavor } from './pth-writer.js';
import { writeSafetensors } from './safetensors-writer.js';
import { DEFAULT_BUFFER_BYTES, withSink } from './sink.js';
import { checkSeed, type Dtype } from './values.js';

export interface WriteOptions {
  readonly model: ReleasedModelName;
  readonly layout: Layout;
  /** The folder to write into (created if needed; existing files of the same names are replaced). */
  readonly out: string;
  /** Default `bf16` (the released dtype). */
  readonly dtype?: Dtype;
  /** Default 0. The same seed gives the same bytes. */
  readonly seed?: number;
  /** Default `full`. */
  readonly preset?: Preset;
  /** Include `entropy_model/` next to a BLT in the consolidated and hub layouts (default true). */
  readonly withEntropy?: boolean;
  /** transformers layout: largest shard in bytes (default 5e9, as transformers' "5GB"). */
  readonly shardBytes?: number;
  /** `.pth` flavour: `torch2` (default; byteorder + serialization id records) or `torch1`. */
  readonly pthFlavor?: PthFlavor;
  /** fsync each file before renaming it into place (default true). */
  readonly fsync?: boolean;
  /** Progress: `true` prints lines to stderr, a function receives reports (about once a second). */
  readonly progress?: boolean | ((info: ProgressInfo) => void);
  /** Refuse to start when the folder's file system has less free space than needed (default true). */
  readonly checkFreeSpace?: boolean;
  /** Write buffer size (two are used), a multiple of 64; default 16 MiB. */
  readonly bufferBytes?: number;
}

export interface WrittenFile {
  /** Relative to `out`, `/`-separated. */
  readonly path: string;
  readonly bytes: number;
}

/** What a write did (also the CLI's final JSON line). */
export interface WriteSummary {
  readonly model: ReleasedModelName;
  readonly layout: Layout;
  readonly preset: Preset;
  readonly dtype: Dtype;
  readonly seed: number;
  readonly out: string;
  readonly files: readonly WrittenFile[];
  readonly bytes: number;
  readonly seconds: number;
  readonly mbPerSecond: number;
  /** Parameters of every reference tensor written (entropy model included when written). */
  readonly parameters: number;
  readonly tensors: number;
}

async function writeFile(
  file: PlannedFile,
  out: string,
  o: { seed: number; dtype: Dtype; fsync: boolean; progress: Progress; bufferBytes: number },
): Promise<number> {
  o.progress.startFile(file.path);
  const path = join(out, ...file.path.split('/'));
  const written = await withSink(path, { fsync: o.fsync, progress: o.progress, bufferBytes: o.bufferBytes }, async (sink) => {
    if (file.kind === 'text') await sink.write(new TextEncoder().encode(file.text));
    else if (file.kind === 'safetensors') await writeSafetensors(sink, file.tensors, o.seed, o.dtype, file.metadata);
    else await writePth(sink, file.plan, o.seed);
  });
  if (written !== file.bytes) throw new Error(`${file.path}: planned ${file.bytes} bytes, wrote ${written}`);
  return written;
}

/** Free bytes of the file system holding `dir` (or its nearest existing parent). */
async function freeBytes(dir: string): Promise<number | undefined> {
  let d = resolve(dir);
  for (;;) {
    try {
      const s = await statfs(d);
      return Number(s.bavail) * Number(s.bsize);
    } catch {
      const parent = resolve(d, '..');
      if (parent === d) return undefined;
      d = parent;
    }
  }
}

/**
 * Throws when the file system holding `dir` (or its nearest existing parent) has less than `bytes`
 * + 256 MiB free.
 */
export async function ensureFreeSpace(dir: string, bytes: number): Promise<void> {
  const free = await freeBytes(dir);
  const margin = 256 * 1024 * 1024;
  if (free !== undefined && free < bytes + margin) {
    throw new Error(
      `${resolve(dir)}: ${(free / 1e9).toFixed(2)} GB free, the checkpoint needs ${(bytes / 1e9).toFixed(2)} GB (+0.27 GB margin); pick another folder`,
    );
  }
}

/**
 * Writes a random-weight checkpoint of a released model in a published layout: the exact file names,
 * tensor names, shapes and dtypes of the release, seeded values (uniform, std 1/sqrt(fan_in) for
 * Linear weights and 1/sqrt(dim) for embeddings, ones for RMSNorm weights).
 */
export async function writeReleasedCheckpoint(options: WriteOptions): Promise<WriteSummary> {
  const dtype = options.dtype ?? 'bf16';
  const seed = checkSeed(options.seed ?? 0);
  const preset = options.preset ?? 'full';
  const out = resolve(options.out);
  const plan = planCheckpoint({
    model: options.model,
    layout: options.layout,
    preset,
    dtype,
    ...(options.withEntropy !== undefined ? { withEntropy: options.withEntropy } : {}),
    ...(options.shardBytes !== undefined ? { shardBytes: options.shardBytes } : {}),
    ...(options.pthFlavor !== undefined ? { pthFlavor: options.pthFlavor } : {}),
  });
  if (options.checkFreeSpace ?? true) await ensureFreeSpace(out, plan.totalBytes);
  const report =
    options.progress === true
      ? stderrReporter(`[${options.model} ${options.layout}]`)
      : typeof options.progress === 'function'
        ? options.progress
        : undefined;
  const progress = new Progress(plan.totalBytes, report);
  const started = performance.now();
  const files: WrittenFile[] = [];
  for (const file of plan.files) {
    const bytes = await writeFile(file, out, {
      seed,
      dtype,
      fsync: options.fsync ?? true,
      progress,
      bufferBytes: options.bufferBytes ?? DEFAULT_BUFFER_BYTES,
    });
    files.push({ path: file.path, bytes });
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    model: options.model,
    layout: options.layout,
    preset,
    dtype,
    seed,
    out,
    files,
    bytes: plan.totalBytes,
    seconds: Math.round(seconds * 1000) / 1000,
    mbPerSecond: Math.round(plan.totalBytes / 1e6 / Math.max(seconds, 1e-9)),
    parameters: plan.tensors.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0),
    tensors: plan.tensors.length,
  };
}
