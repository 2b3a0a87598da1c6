/** A dependency-free SVG of several runs' held-out bits per byte against training FLOPs. */
import { escapeXml, openChart, pathThrough } from './svg-chart.js';

/** One line of the plot. */
export interface StudySeries {
  readonly label: string;
  /** `[training FLOPs, bits per byte]`, in order of FLOPs. */
  readonly points: ReadonlyArray<readonly [number, number]>;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2'];
/**
 * Renders the plot: one coloured line with markers per series, x = training FLOPs (from 0), y = bits per byte.
 *
 * @param series - the runs
 * @param options - title and size
 * @returns an SVG document
 */
export function renderStudySvg(series: readonly StudySeries[], options: { title?: string; width?: number; height?: number } = {}): string {
  const width = options.width ?? 760;
  const height = options.height ?? 440;
  const m = { left: 64, right: 230, top: 44, bottom: 54 };
  const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
  const x1 = Math.max(1, ...pts.map((p) => p[0]));
  const ys = pts.map((p) => p[1]);
  const y0 = ys.length ? Math.floor((Math.min(...ys) - 0.05) * 10) / 10 : 0;
  const y1 = ys.length ? Math.ceil((Math.max(...ys) + 0.05) * 10) / 10 : 1;
  const {
    parts: out,
    px,
    py,
  } = openChart({
    width,
    height,
    margin: m,
    title: options.title ?? 'bits per byte vs training FLOPs',
    xLabel: 'training FLOPs',
    yLabel: 'held-out bits per byte',
    x1,
    y0,
    y1,
    xTicks: 5,
    yTicks: 6,
    formatX: (t) => (t === 0 ? '0' : t.toExponential(1).replace('e+', 'e')),
    xGrid: true,
  });
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const p = s.points.filter((q) => Number.isFinite(q[0]) && Number.isFinite(q[1]));
    if (p.length > 0) {
      out.push(`<path d="${pathThrough(p, px, py)}" fill="none" stroke="${color}" stroke-width="2"/>`);
      for (const q of p) out.push(`<circle cx="${px(q[0]).toFixed(1)}" cy="${py(q[1]).toFixed(1)}" r="3.5" fill="${color}"/>`);
    }
    const ly = m.top + 10 + i * 20;
    const lx = width - m.right + 16;
    out.push(
      `<line x1="${lx}" x2="${lx + 22}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/><circle cx="${lx + 11}" cy="${ly}" r="3.5" fill="${color}"/>`,
    );
    out.push(`<text x="${lx + 28}" y="${ly + 4}">${escapeXml(s.label)}</text>`);
  });
  out.push('</svg>\n');
  return out.join('\n');
}
