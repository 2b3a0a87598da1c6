/**
 * The frame both training plots draw (the run's curve, the study's comparison): an SVG document
 * with a title, y grid lines with their values, x tick labels, axis titles and the two axes.
 * Dependency-free; the plots add their lines and legends.
 */

export const escapeXml = (s: string) => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);

/** About `count` round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count: number): number[] {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(6)));
  return out;
}

export interface ChartFrame {
  readonly width: number;
  readonly height: number;
  readonly margin: { readonly left: number; readonly right: number; readonly top: number; readonly bottom: number };
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  /** Data ranges: x from 0 to `x1`, y from `y0` to `y1`. */
  readonly x1: number;
  readonly y0: number;
  readonly y1: number;
  readonly xTicks: number;
  readonly yTicks: number;
  readonly formatX: (value: number) => string;
  /** Vertical grid lines at the x ticks too. */
  readonly xGrid?: boolean;
}

/**
 * Opens the document and draws the frame.
 *
 * @returns the SVG parts so far (push the plot's own, then `'</svg>\n'`), and the data-to-pixel maps
 */
export function openChart(f: ChartFrame): { parts: string[]; px: (x: number) => number; py: (y: number) => number } {
  const { width, height, margin: m } = f;
  const px = (x: number) => m.left + (x / f.x1) * (width - m.left - m.right);
  const py = (y: number) => height - m.bottom - ((y - f.y0) / (f.y1 - f.y0 || 1)) * (height - m.top - m.bottom);
  const middle = (width - m.right + m.left) / 2;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    '<rect width="100%" height="100%" fill="white"/>',
    `<text x="${middle}" y="24" text-anchor="middle" font-size="15">${escapeXml(f.title)}</text>`,
  ];
  for (const t of niceTicks(f.y0, f.y1, f.yTicks)) {
    parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${py(t).toFixed(1)}" y2="${py(t).toFixed(1)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.left - 6}" y="${(py(t) + 4).toFixed(1)}" text-anchor="end">${t}</text>`);
  }
  for (const t of niceTicks(0, f.x1, f.xTicks)) {
    if (f.xGrid)
      parts.push(`<line x1="${px(t).toFixed(1)}" x2="${px(t).toFixed(1)}" y1="${m.top}" y2="${height - m.bottom}" stroke="#f0f0f0"/>`);
    parts.push(`<text x="${px(t).toFixed(1)}" y="${height - m.bottom + 18}" text-anchor="middle">${f.formatX(t)}</text>`);
  }
  parts.push(`<text x="${middle}" y="${height - 12}" text-anchor="middle">${escapeXml(f.xLabel)}</text>`);
  parts.push(
    `<text transform="translate(18 ${(height - m.bottom + m.top) / 2}) rotate(-90)" text-anchor="middle">${escapeXml(f.yLabel)}</text>`,
  );
  parts.push(`<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${height - m.bottom}" stroke="#444"/>`);
  parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${height - m.bottom}" y2="${height - m.bottom}" stroke="#444"/>`);
  return { parts, px, py };
}

/** A polyline path through points, in pixels. */
export function pathThrough(
  points: ReadonlyArray<readonly [number, number]>,
  px: (x: number) => number,
  py: (y: number) => number,
): string {
  return points.map((p, i) => `${i ? 'L' : 'M'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join('');
}
