/**
 * A dependency-free SVG training curve: training loss (in bits per byte, smoothed) and held-out
 * bits-per-byte against training bytes.
 */
import type { MetricsRecord } from './metrics.js';
import { openChart, pathThrough } from './svg-chart.js';

export interface CurveOptions {
  readonly title?: string;
  readonly width?: number;
  readonly height?: number;
  /** Exponential smoothing of the training curve (0: none; default 0.9). */
  readonly smoothing?: number;
}

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toPrecision(3)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toPrecision(3)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toPrecision(3)} kB`;
  return `${n} B`;
}

/**
 * Renders the curve.
 *
 * @param records - the run's metrics records, in order
 * @returns an SVG document
 */
export function renderCurveSvg(records: readonly MetricsRecord[], options: CurveOptions = {}): string {
  const width = options.width ?? 720;
  const height = options.height ?? 400;
  const alpha = options.smoothing ?? 0.9;
  const margin = { left: 60, right: 20, top: 40, bottom: 50 };
  const train = records.filter((r): r is Extract<MetricsRecord, { type: 'train' }> => r.type === 'train');
  const bytesAt = new Map(train.map((r) => [r.step, r.bytes]));
  const evals = records.filter((r): r is Extract<MetricsRecord, { type: 'eval' }> => r.type === 'eval');
  // Exponential moving average started at 0 and bias-corrected (as in Adam), so the start of the
  // curve is not pulled toward the first value.
  let ema = 0;
  const trainPts = train.map((r, i) => {
    ema = alpha * ema + (1 - alpha) * r.bpb;
    return [r.bytes, alpha > 0 ? ema / (1 - alpha ** (i + 1)) : r.bpb] as const;
  });
  const evalPts = evals.map((r) => [bytesAt.get(r.step) ?? 0, r.bpb] as const);
  const all = [...trainPts, ...evalPts];
  const x1 = Math.max(1, ...all.map((p) => p[0]));
  const ys = all.map((p) => p[1]).filter(Number.isFinite);
  const y0 = ys.length ? Math.max(0, Math.min(...ys) - 0.1) : 0;
  const y1 = ys.length ? Math.max(...ys) + 0.1 : 1;
  const { parts, px, py } = openChart({
    width,
    height,
    margin,
    title: options.title ?? 'training curve',
    xLabel: 'training bytes',
    yLabel: 'bits per byte',
    x1,
    y0,
    y1,
    xTicks: 6,
    yTicks: 6,
    formatX: formatBytes,
  });
  const path = (pts: ReadonlyArray<readonly [number, number]>) => pathThrough(pts, px, py);
  if (trainPts.length) parts.push(`<path d="${path(trainPts)}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>`);
  if (evalPts.length) {
    parts.push(`<path d="${path(evalPts)}" fill="none" stroke="#d62728" stroke-width="1.5" stroke-dasharray="4 3"/>`);
    for (const p of evalPts) parts.push(`<circle cx="${px(p[0]).toFixed(1)}" cy="${py(p[1]).toFixed(1)}" r="3" fill="#d62728"/>`);
  }
  const lx = width - margin.right - 190;
  parts.push(
    `<line x1="${lx}" x2="${lx + 20}" y1="${margin.top + 6}" y2="${margin.top + 6}" stroke="#1f77b4" stroke-width="2"/><text x="${lx + 26}" y="${margin.top + 10}">train (smoothed)</text>`,
  );
  parts.push(
    `<line x1="${lx}" x2="${lx + 20}" y1="${margin.top + 24}" y2="${margin.top + 24}" stroke="#d62728" stroke-width="2" stroke-dasharray="4 3"/><text x="${lx + 26}" y="${margin.top + 28}">held-out</text>`,
  );
  parts.push('</svg>\n');
  return parts.join('\n');
}
