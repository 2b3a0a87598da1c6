/**
 * A one-line progress bar on stderr: redrawn in place on a terminal; elsewhere (a pipe, a log file)
 * silent unless asked (`always`), then a line every few seconds.
 */
export class ProgressBar {
  private lastDraw = 0;
  private readonly tty: boolean;
  /** Whether progress (the bar, checkpoint notes) is shown at all. */
  readonly enabled: boolean;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly minIntervalMs = 10_000,
    always = false,
  ) {
    this.tty = Boolean(stream.isTTY);
    this.enabled = this.tty || always;
  }

  /**
   * @param step - steps done
   * @param total - steps in the run
   * @param fields - shown after the bar, e.g. `{ loss: '2.31', 'B/s': '4.1k' }`
   * @param etaSec - seconds left
   */
  update(step: number, total: number, fields: Readonly<Record<string, string>>, etaSec: number): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!this.tty && now - this.lastDraw < this.minIntervalMs && step < total) return;
    this.lastDraw = now;
    const width = 24;
    const filled = Math.round((step / Math.max(total, 1)) * width);
    const bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
    const info = Object.entries(fields)
      .map(([k, v]) => `${k} ${v}`)
      .join(' | ');
    const line = `${bar} ${step}/${total} | ${info} | ETA ${formatDuration(etaSec)}`;
    this.stream.write(this.tty ? `\r\x1b[2K${line}` : `${line}\n`);
  }

  /** A progress note (a checkpoint written): shown only when progress is. */
  note(message: string): void {
    if (this.enabled) this.log(message);
  }

  /** Prints a message on its own line (without breaking the bar). */
  log(message: string): void {
    this.stream.write(this.tty ? `\r\x1b[2K${message}\n` : `${message}\n`);
  }

  done(): void {
    if (this.tty) this.stream.write('\n');
  }
}

/** `75` → `1m15s`. */
export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '?';
  const s = Math.round(sec);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** `4096` → `4.1k`. */
export function formatRate(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)}k`;
  return x.toFixed(0);
}
