// A file written in one sequential pass through a ring of large buffers: one is filled (copied bytes
// or generated values) while the others are being written by the thread pool (several writes in
// flight smooth out a disk whose speed varies). The file appears under its
// final name only when complete (temporary name in the same folder, fsync, rename), and a failed or
// interrupted write leaves no file behind (the temporary is removed).
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Progress } from './progress.js';

/** Buffer size: a multiple of 64, so a buffer always starts at a file offset that is a multiple of 64. */
export const DEFAULT_BUFFER_BYTES = 16 * 1024 * 1024;
/** Buffers in the ring (at most one less are being written at a time). */
export const DEFAULT_BUFFER_COUNT = 4;

export interface SinkOptions {
  /** Flush to disk before the rename (default true). */
  readonly fsync?: boolean;
  readonly bufferBytes?: number;
  /** Buffers in the ring, at least 2 (default 4). */
  readonly bufferCount?: number;
  readonly progress?: Progress;
}

function bufferSettings(options: SinkOptions): { size: number; count: number } {
  const size = options.bufferBytes ?? DEFAULT_BUFFER_BYTES;
  const count = options.bufferCount ?? DEFAULT_BUFFER_COUNT;
  if (!Number.isInteger(size) || size % 64 !== 0 || size <= 0)
    throw new Error(`buffer size must be a positive multiple of 64, got ${size}`);
  if (!Number.isInteger(count) || count < 2) throw new Error(`buffer count must be an integer >= 2, got ${count}`);
  return { size, count };
}

export class FileSink {
  /** Bytes handed to the sink so far (the file offset of the next byte). */
  position = 0;
  private readonly buffers: Uint8Array[];
  /** The write of each buffer still in flight, if any. */
  private readonly writes: Array<Promise<void> | undefined>;
  private slot = 0;
  private current: Uint8Array;
  private used = 0;
  private bufferStart = 0;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly tempPath: string,
    private readonly fh: FileHandle,
    private readonly options: SinkOptions,
  ) {
    const { size, count } = bufferSettings(options);
    this.buffers = Array.from({ length: count }, () => new Uint8Array(new ArrayBuffer(size)));
    this.writes = new Array<Promise<void> | undefined>(count).fill(undefined);
    this.current = this.buffers[0] as Uint8Array;
  }

  /** Creates the folder if needed and opens a temporary file next to `path`. */
  static async create(path: string, options: SinkOptions = {}): Promise<FileSink> {
    bufferSettings(options);
    await mkdir(dirname(path), { recursive: true });
    const tempPath = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    const fh = await open(tempPath, 'wx');
    return new FileSink(path, tempPath, fh, options);
  }

  /** Starts writing the current buffer and moves to the next one, waiting for its earlier write. */
  private async flush(): Promise<void> {
    if (this.used === 0) return;
    const buf = this.current;
    const len = this.used;
    const at = this.bufferStart;
    const progress = this.options.progress;
    const write = (async () => {
      let done = 0;
      while (done < len) {
        const { bytesWritten } = await this.fh.write(buf, done, len - done, at + done);
        if (bytesWritten <= 0) throw new Error(`${this.path}: write returned ${bytesWritten}`);
        done += bytesWritten;
      }
      progress?.add(len);
    })();
    // Keep a failed write from being an unhandled rejection before it is awaited.
    write.catch(() => undefined);
    this.writes[this.slot] = write;
    this.slot = (this.slot + 1) % this.buffers.length;
    const previous = this.writes[this.slot];
    this.writes[this.slot] = undefined;
    this.current = this.buffers[this.slot] as Uint8Array;
    this.bufferStart += len;
    this.used = 0;
    if (previous) await previous;
  }

  /** Waits for every write in flight (rethrowing the first failure). */
  private async drain(): Promise<void> {
    const pending = this.writes.filter((w): w is Promise<void> => w !== undefined);
    this.writes.fill(undefined);
    const results = await Promise.allSettled(pending);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Appends bytes. */
  async write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.byteLength) {
      const n = Math.min(bytes.byteLength - done, this.current.byteLength - this.used);
      this.current.set(bytes.subarray(done, done + n), this.used);
      this.used += n;
      done += n;
      this.position += n;
      if (this.used === this.current.byteLength) await this.flush();
    }
  }

  /**
   * Appends `byteLength` bytes produced in place: `produce(dst, offset)` fills `dst` with bytes
   * [offset, offset + dst.byteLength) of the region. Each `dst` starts at a file offset congruent to
   * its offset in the buffer modulo 64, so an aligned region yields aligned views.
   */
  async fill(byteLength: number, produce: (dst: Uint8Array, offset: number) => void): Promise<void> {
    let done = 0;
    while (done < byteLength) {
      const n = Math.min(byteLength - done, this.current.byteLength - this.used);
      produce(this.current.subarray(this.used, this.used + n), done);
      this.used += n;
      done += n;
      this.position += n;
      if (this.used === this.current.byteLength) await this.flush();
    }
  }

  /** Writes what is left, syncs, closes and renames to the final name. Returns the file size. */
  async finish(): Promise<number> {
    await this.flush();
    await this.drain();
    if (this.options.fsync ?? true) {
      if (this.position >= 64 * 1024 * 1024) this.options.progress?.note(`syncing ${basename(this.path)}`);
      await this.fh.sync();
    }
    await this.fh.close();
    this.closed = true;
    await rename(this.tempPath, this.path);
    return this.position;
  }

  /** Closes and removes the temporary file (after an error). */
  async abort(): Promise<void> {
    try {
      await this.drain().catch(() => undefined);
      if (!this.closed) await this.fh.close();
    } finally {
      this.closed = true;
      await rm(this.tempPath, { force: true });
    }
  }
}

/** Runs `body` on a new sink for `path`, finishing it on success and removing the temporary file on failure. */
export async function withSink(path: string, options: SinkOptions, body: (sink: FileSink) => Promise<void>): Promise<number> {
  const sink = await FileSink.create(path, options);
  try {
    await body(sink);
    return await sink.finish();
  } catch (e) {
    await sink.abort();
    throw e;
  }
}
