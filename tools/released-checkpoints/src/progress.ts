// Progress of a checkpoint write: bytes written, MB/s and ETA, reported at most once a second.

/** What a progress callback receives. */
export interface ProgressInfo {
  /** Bytes written to files so far. */
  readonly bytes: number;
  /** Bytes the whole checkpoint will have. */
  readonly totalBytes: number;
  readonly seconds: number;
  /** Average since the start, in 10^6 bytes per second. */
  readonly mbPerSecond: number;
  /** Estimated seconds left at the average rate (undefined during the first second or percent). */
  readonly etaSeconds: number | undefined;
  /** The file being written, relative to the output folder. */
  readonly file: string;
  /** A status note (e.g. "syncing model.safetensors"), if any. */
  readonly note?: string;
}

export class Progress {
  private bytes = 0;
  private file = '';
  private readonly started = performance.now();
  private lastReport = -Infinity;

  constructor(
    private readonly totalBytes: number,
    private readonly report: ((info: ProgressInfo) => void) | undefined,
    private readonly intervalMs = 1000,
  ) {}

  startFile(file: string): void {
    this.file = file;
  }

  add(n: number): void {
    this.bytes += n;
    this.maybeReport();
  }

  note(note: string): void {
    this.emit(note);
  }

  get writtenBytes(): number {
    return this.bytes;
  }

  private maybeReport(): void {
    const now = performance.now();
    if (now - this.lastReport < this.intervalMs) return;
    this.lastReport = now;
    this.emit(undefined);
  }

  private emit(note: string | undefined): void {
    if (!this.report) return;
    const seconds = (performance.now() - this.started) / 1000;
    const rate = seconds > 0 ? this.bytes / seconds : 0;
    this.report({
      bytes: this.bytes,
      totalBytes: this.totalBytes,
      seconds,
      mbPerSecond: rate / 1e6,
      // No estimate from the first percent or second (small files and syncs skew it).
      etaSeconds: rate > 0 && seconds >= 1 && this.bytes >= this.totalBytes / 100 ? (this.totalBytes - this.bytes) / rate : undefined,
      file: this.file,
      ...(note !== undefined ? { note } : {}),
    });
  }
}

function gb(bytes: number): string {
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : `${(bytes / 1e6).toFixed(1)} MB`;
}

/** A reporter that prints one line per report to stderr. */
export function stderrReporter(label: string): (info: ProgressInfo) => void {
  return (p) => {
    const pct = p.totalBytes > 0 ? ((100 * p.bytes) / p.totalBytes).toFixed(1) : '100.0';
    const eta = p.etaSeconds === undefined ? '?' : `${Math.ceil(p.etaSeconds)}s`;
    const tail = p.note ? ` (${p.note})` : '';
    process.stderr.write(
      `${label} ${p.file}: ${gb(p.bytes)} / ${gb(p.totalBytes)} (${pct}%) ${p.mbPerSecond.toFixed(0)} MB/s ETA ${eta}${tail}\n`,
    );
  };
}
