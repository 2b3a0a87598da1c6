// A file written in one sequential pass through two large buffers: one is filled (copied bytes or
// generated values) while the other is being written by the thread pool. The file appears under its
// final name only when complete (temporary name in the same folder, fsync, rename), and a failed or
// interrupted write leaves no file behind (the temporary is removed).
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Progress } from './progress.js';

/** Buffer size: a multiple of 64, so a buffer always starts at a file offset that is a multiple of 64. */
export const DEFAULT_BUFFER_BYTES = 16 * 1024 * 1024;

export interface SinkOptions {
  /** Flush to disk before the rename (default true). */
  readonly fsync?: boolean;
  readonly bufferBytes?: number;
  readonly progress?: Progress;
}

export class FileSink {
  /** Bytes handed to the sink so far (the file offset of the next byte). */
  position = 0;
  private current: Uint8Array;
  private spare: Uint8Array;
  private used = 0;
  private bufferStart = 0;
  private pending: Promise<void> | undefined;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly tempPath: string,
    private readonly fh: FileHandle,
    private readonly options: SinkOptions,
  ) {
    const size = options.bufferBytes ?? DEFAULT_BUFFER_BYTES;
    if (size % 64 !== 0 || size <= 0) throw new Error(`buffer size must be a positive multiple of 64, got ${size}`);
    this.current = new Uint8Array(new ArrayBuffer(size));
    this.spare = new Uint8Array(new ArrayBuffer(size));
  }

  /** Creates the folder if needed and opens a temporary file next to `path`. */
  static async create(path: string, options: SinkOptions = {}): Promise<FileSink> {
    await mkdir(dirname(path), { recursive: true });
    const tempPath = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    const fh = await open(tempPath, 'wx');
    return new FileSink(path, tempPath, fh, options);
  }

  private async flush(): Promise<void> {
    if (this.used === 0) return;
    const buf = this.current;
    const len = this.used;
    const at = this.bufferStart;
    if (this.pending) await this.pending;
    const progress = this.options.progress;
    this.pending = (async () => {
      let done = 0;
      while (done < len) {
        const { bytesWritten } = await this.fh.write(buf, done, len - done, at + done);
        if (bytesWritten <= 0) throw new Error(`${this.path}: write returned ${bytesWritten}`);
        done += bytesWritten;
      }
      progress?.add(len);
    })();
    // Keep a failed write from being an unhandled rejection before it is awaited.
    this.pending.catch(() => undefined);
    this.current = this.spare;
    this.spare = buf;
    this.bufferStart += len;
    this.used = 0;
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
    if (this.pending) await this.pending;
    if (this.options.fsync ?? true) {
      this.options.progress?.note(`syncing ${basename(this.path)}`);
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
      if (this.pending) await this.pending.catch(() => undefined);
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
