/** A dependency-free SVG of several runs' held-out bits per byte against training FLOPs. */

/** One line of the plot. */
export interface StudySeries {
  readonly label: string;
  /** `[training FLOPs, bits per byte]`, in order of FLOPs. */
  readonly points: ReadonlyArray<readonly [number, number]>;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2'];
const escapeXml = (s: string) => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);

function ticks(lo: number, hi: number, count: number): number[] {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(6)));
  return out;
}

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
  const px = (x: number) => m.left + (x / x1) * (width - m.left - m.right);
  const py = (y: number) => height - m.bottom - ((y - y0) / (y1 - y0 || 1)) * (height - m.top - m.bottom);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
  );
  out.push('<rect width="100%" height="100%" fill="white"/>');
  out.push(
    `<text x="${(width - m.right + m.left) / 2}" y="24" text-anchor="middle" font-size="15">${escapeXml(options.title ?? 'bits per byte vs training FLOPs')}</text>`,
  );
  for (const t of ticks(y0, y1, 6)) {
    out.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${py(t).toFixed(1)}" y2="${py(t).toFixed(1)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.left - 6}" y="${(py(t) + 4).toFixed(1)}" text-anchor="end">${t}</text>`);
  }
  for (const t of ticks(0, x1, 5)) {
    out.push(`<line x1="${px(t).toFixed(1)}" x2="${px(t).toFixed(1)}" y1="${m.top}" y2="${height - m.bottom}" stroke="#f0f0f0"/>`);
    out.push(
      `<text x="${px(t).toFixed(1)}" y="${height - m.bottom + 18}" text-anchor="middle">${t === 0 ? '0' : t.toExponential(1).replace('e+', 'e')}</text>`,
    );
  }
  out.push(`<text x="${(width - m.right + m.left) / 2}" y="${height - 12}" text-anchor="middle">training FLOPs</text>`);
  out.push(
    `<text transform="translate(18 ${(height - m.bottom + m.top) / 2}) rotate(-90)" text-anchor="middle">held-out bits per byte</text>`,
  );
  out.push(`<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${height - m.bottom}" stroke="#444"/>`);
  out.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${height - m.bottom}" y2="${height - m.bottom}" stroke="#444"/>`);
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const p = s.points.filter((q) => Number.isFinite(q[0]) && Number.isFinite(q[1]));
    if (p.length > 0) {
      out.push(
        `<path d="${p.map((q, k) => `${k ? 'L' : 'M'}${px(q[0]).toFixed(1)},${py(q[1]).toFixed(1)}`).join('')}" fill="none" stroke="${color}" stroke-width="2"/>`,
      );
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
