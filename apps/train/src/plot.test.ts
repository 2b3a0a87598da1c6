import { describe, expect, it } from 'vitest';
import { renderCurveSvg } from './plot.js';
import type { MetricsRecord } from './metrics.js';

describe('renderCurveSvg', () => {
  it('draws the training and held-out curves against bytes, escaping the title', () => {
    const recs: MetricsRecord[] = [];
    for (let s = 1; s <= 20; s++) {
      recs.push({
        type: 'train',
        step: s,
        loss: 5 / s,
        bpb: 5 / s / Math.LN2,
        lr: 1e-3,
        gradNorm: 1,
        clipped: false,
        bytes: s * 1000,
        bytesPerSec: 1,
        elapsedSec: s,
      });
      if (s % 5 === 0) recs.push({ type: 'eval', step: s, bpb: 6 / s, bytes: 100, elapsedSec: s });
    }
    const svg = renderCurveSvg(recs, { title: 'a <b> & c' });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('a &lt;b&gt; &amp; c');
    expect(svg.match(/<path /g)).toHaveLength(2);
    expect(svg.match(/<circle /g)).toHaveLength(4);
    expect(svg).toContain('20.0 kB');
    expect(svg).not.toContain('NaN');
  });

  it('renders an empty run without NaN', () => {
    expect(renderCurveSvg([])).not.toContain('NaN');
  });
});
