/**
 * Patch lengths for training rows, computed on the fly: by the entropy model (`entropy`, and the
 * reference's `monotonic` and `combined` rules), at spaces (`space`), every k bytes (`static`) or
 * one per byte (`byte`), each split under `maxPatchLength`. Entropy-model results are cached on
 * disk, keyed by a hash of the entropy model's weights and the patching options, so a second run (or
 * a resumed one) never runs the entropy model on the same row twice.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, mkdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { findPatchBoundaries, type EntropyPatcher, type PatcherDefaults, type PatchingMode } from '@bytelatent/entropy-patcher';
import { TrainError } from './errors.js';

/**
 * How a training row is patched: any rule of `findPatchBoundaries` with its settings — the same
 * fields a patcher's defaults and a model file's patching record (`PatcherDefaults`), the mode
 * required. The entropy modes' threshold defaults to the patcher's own.
 */
export type RowPatchingOptions = PatcherDefaults & { readonly mode: PatchingMode };

const HASH_BYTES = 20;

/** The rules that read the entropy model. */
const ENTROPY_MODES: readonly PatchingMode[] = ['entropy', 'monotonic', 'combined'];

/** Computes (and for entropy patching, caches) the patch lengths of token rows. */
export class RowPatcher {
  private readonly cache = new Map<string, Int32Array>();
  private readonly cacheFile: string | undefined;
  /** Rows answered from the cache / computed, since construction. */
  hits = 0;
  misses = 0;

  /**
   * @param options - patching rule
   * @param patcher - the entropy patcher (entropy mode only)
   * @param cache - folder for the on-disk cache, and the key of the entropy model (a hash of its file)
   * @throws {TrainError} `CONFIG_INVALID` when entropy mode has no patcher or static mode no size
   */
  constructor(
    readonly options: RowPatchingOptions,
    private readonly patcher?: EntropyPatcher,
    cache?: { dir: string; modelKey: string },
  ) {
    const entropyMode = ENTROPY_MODES.includes(options.mode);
    if (entropyMode && !patcher)
      throw new TrainError('CONFIG_INVALID', `${options.mode} patching needs an entropy model (--entropy-model)`);
    if (options.mode === 'static' && !(Number.isInteger(options.patchSize) && options.patchSize! >= 1)) {
      throw new TrainError('CONFIG_INVALID', `static patching needs patchSize >= 1, got ${String(options.patchSize)}`);
    }
    if (options.mode === 'combined' && options.thresholdAdd === undefined)
      throw new TrainError('CONFIG_INVALID', 'combined patching needs thresholdAdd');
    if (entropyMode && cache) {
      const threshold = options.threshold ?? patcher!.defaults.threshold;
      // The plain entropy rule keeps the key of earlier versions (their caches stay valid).
      const rule = options.mode === 'entropy' ? '' : `|${options.mode}|${options.thresholdAdd ?? ''}`;
      const key = createHash('sha256')
        .update(`${cache.modelKey}|${threshold}|${options.maxPatchLength ?? ''}${rule}`)
        .digest('hex')
        .slice(0, 16);
      mkdirSync(cache.dir, { recursive: true });
      this.cacheFile = join(cache.dir, `patch-lengths-${key}.bin`);
      this.load();
    }
  }

  /** Patch lengths (sum = row length, first patch 1) of each row. */
  async lengths(rows: readonly Int32Array[]): Promise<Int32Array[]> {
    const { mode, patchSize, maxPatchLength, thresholdAdd } = this.options;
    if (!ENTROPY_MODES.includes(mode)) {
      return rows.map(
        (tokens) => findPatchBoundaries(tokens, undefined, { mode, patchSize, maxPatchLength, includeNextToken: false }).patchLengths,
      );
    }
    const out: Array<Int32Array | undefined> = [];
    const todo: number[] = [];
    const keys = rows.map((r) => rowKey(r));
    rows.forEach((_, i) => {
      const hit = this.cache.get(keys[i]!);
      out.push(hit);
      if (hit) this.hits++;
      else todo.push(i);
    });
    if (todo.length > 0) {
      const entropies = await this.patcher!.model.entropies(todo.map((i) => rows[i]!));
      const threshold = this.options.threshold ?? this.patcher!.defaults.threshold;
      todo.forEach((i, k) => {
        const lengths = findPatchBoundaries(rows[i]!, entropies[k], {
          mode,
          threshold,
          ...(mode === 'combined' ? { thresholdAdd } : {}),
          maxPatchLength,
          includeNextToken: false,
        }).patchLengths;
        out[i] = lengths;
        this.misses++;
        this.remember(keys[i]!, lengths);
      });
    }
    return out as Int32Array[];
  }

  private remember(key: string, lengths: Int32Array): void {
    this.cache.set(key, lengths);
    if (!this.cacheFile) return;
    // Record: 20-byte row hash, u32 count, u32 lengths. A record torn by a crash is ignored on load.
    const record = Buffer.alloc(HASH_BYTES + 4 + 4 * lengths.length);
    Buffer.from(key, 'hex').copy(record, 0);
    record.writeUInt32LE(lengths.length, HASH_BYTES);
    lengths.forEach((l, i) => record.writeUInt32LE(l, HASH_BYTES + 4 + 4 * i));
    appendFileSync(this.cacheFile, record);
  }

  private load(): void {
    if (!this.cacheFile || !existsSync(this.cacheFile)) return;
    const buf = readFileSync(this.cacheFile);
    let pos = 0;
    while (pos + HASH_BYTES + 4 <= buf.length) {
      const n = buf.readUInt32LE(pos + HASH_BYTES);
      const end = pos + HASH_BYTES + 4 + 4 * n;
      if (end > buf.length) break;
      const lengths = new Int32Array(n);
      for (let i = 0; i < n; i++) lengths[i] = buf.readUInt32LE(pos + HASH_BYTES + 4 + 4 * i);
      this.cache.set(buf.subarray(pos, pos + HASH_BYTES).toString('hex'), lengths);
      pos = end;
    }
  }
}

function rowKey(tokens: Int32Array): string {
  return createHash('sha1')
    .update(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength))
    .digest('hex');
}
