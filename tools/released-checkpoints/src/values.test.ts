import { describe, expect, it } from 'vitest';
import type { ReferenceTensor } from './models.js';
import { BLOCK_ELEMENTS, fillValues, tensorBytes, toBfloat16Bits, toFloat16Bits, valueStream } from './values.js';

const weight: ReferenceTensor = {
  name: 'layers.0.attention.wq.weight',
  shape: [300, 1000],
  init: { kind: 'uniform', std: 1 / Math.sqrt(1000) },
  component: 'blt',
};

function bf16ToFloat(bits: number): number {
  return new Float32Array(new Uint32Array([bits << 16]).buffer)[0] as number;
}

describe('values', () => {
  it('converts to bfloat16 and half with round to nearest even', () => {
    expect(toBfloat16Bits(1)).toBe(0x3f80);
    expect(toBfloat16Bits(-2)).toBe(0xc000);
    expect(toBfloat16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(toBfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie → even (up)
    expect(toFloat16Bits(1)).toBe(0x3c00);
    expect(toFloat16Bits(-0.5)).toBe(0xb800);
    expect(toFloat16Bits(65504)).toBe(0x7bff);
    expect(toFloat16Bits(1e6)).toBe(0x7c00);
    expect(toFloat16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(toFloat16Bits(2 ** -26)).toBe(0x0000);
  });

  it('gives any element range the same bytes as the whole tensor, whatever the chunking', () => {
    const all = tensorBytes(weight, 7, 'bf16');
    expect(all.byteLength).toBe(300 * 1000 * 2);
    for (const [a, b] of [
      [0, 1],
      [1, 2],
      [3, 70001],
      [BLOCK_ELEMENTS - 1, BLOCK_ELEMENTS + 3],
      [299_999, 300_000],
      [12345, 254321],
    ] as const) {
      expect(tensorBytes(weight, 7, 'bf16', a, b)).toEqual(all.subarray(a * 2, b * 2));
    }
    // Chunked like a writer whose buffer boundaries fall anywhere.
    const stream = valueStream(weight, 7, 'bf16');
    const out = new Uint8Array(all.byteLength);
    for (let e = 0; e < stream.numel; e += 9999) {
      const end = Math.min(stream.numel, e + 9999);
      fillValues(stream, e, end, out.subarray(e * 2, end * 2));
    }
    expect(out).toEqual(all);
  });

  it('depends on the seed, the component and the name, not on anything else', () => {
    const a = tensorBytes(weight, 1, 'bf16', 0, 1000);
    expect(tensorBytes(weight, 1, 'bf16', 0, 1000)).toEqual(a);
    expect(tensorBytes(weight, 2, 'bf16', 0, 1000)).not.toEqual(a);
    expect(tensorBytes({ ...weight, component: 'entropy' }, 1, 'bf16', 0, 1000)).not.toEqual(a);
    expect(tensorBytes({ ...weight, name: 'layers.1.attention.wq.weight' }, 1, 'bf16', 0, 1000)).not.toEqual(a);
    expect(tensorBytes({ ...weight, shape: [3000, 100] }, 1, 'bf16', 0, 1000)).toEqual(a);
    expect(tensorBytes(weight, 2 ** 40 + 1, 'bf16', 0, 1000)).not.toEqual(tensorBytes(weight, 1, 'bf16', 0, 1000));
  });

  it('draws a zero-mean uniform of the requested standard deviation', () => {
    const bytes = tensorBytes(weight, 3, 'bf16');
    const bits = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    let sum = 0;
    let sq = 0;
    let max = 0;
    for (const b of bits) {
      const v = bf16ToFloat(b);
      sum += v;
      sq += v * v;
      max = Math.max(max, Math.abs(v));
    }
    const mean = sum / bits.length;
    const std = Math.sqrt(sq / bits.length - mean * mean);
    const target = 1 / Math.sqrt(1000);
    expect(Math.abs(mean)).toBeLessThan(0.01 * target);
    expect(std / target).toBeGreaterThan(0.99);
    expect(std / target).toBeLessThan(1.01);
    expect(max).toBeLessThanOrEqual(Math.sqrt(3) * target * 1.01);
    // f32 and f16 hold the same quantiles.
    const f32 = new Float32Array(tensorBytes(weight, 3, 'f32', 0, 64).buffer);
    const f16 = new Uint16Array(tensorBytes(weight, 3, 'f16', 0, 64).buffer);
    for (let i = 0; i < 64; i++) {
      expect(toBfloat16Bits(f32[i] as number)).toBe(bits[i]);
      expect(toFloat16Bits(f32[i] as number)).toBe(f16[i]);
    }
  });

  it('writes ones for RMSNorm weights', () => {
    const norm: ReferenceTensor = { name: 'norm.weight', shape: [5], init: { kind: 'ones' }, component: 'entropy' };
    expect([...new Uint16Array(tensorBytes(norm, 0, 'bf16').buffer)]).toEqual([0x3f80, 0x3f80, 0x3f80, 0x3f80, 0x3f80]);
    expect([...new Uint16Array(tensorBytes(norm, 0, 'f16').buffer)]).toEqual(new Array(5).fill(0x3c00));
    expect([...new Float32Array(tensorBytes(norm, 0, 'f32').buffer)]).toEqual(new Array(5).fill(1));
  });

  it('rejects bad seeds, ranges and destinations', () => {
    expect(() => tensorBytes(weight, -1, 'bf16')).toThrow(/seed/);
    expect(() => tensorBytes(weight, 1.5, 'bf16')).toThrow(/seed/);
    expect(() => tensorBytes(weight, 0, 'bf16', 0, 300_001)).toThrow(/outside/);
    const stream = valueStream(weight, 0, 'bf16');
    expect(() => fillValues(stream, 0, 4, new Uint8Array(7))).toThrow(/bytes/);
    expect(() => fillValues(stream, 0, 4, new Uint8Array(9).subarray(1))).toThrow(/aligned/);
  });
});
