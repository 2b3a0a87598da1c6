import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_MIN_WORK_PER_THREAD, loadNativeSgemm, nativeSgemmUnavailableReason } from './index.js';

const native = loadNativeSgemm();
const reason = nativeSgemmUnavailableReason();
// Read before any test changes it.
const initialMinWork = native?.getMinWorkPerThread();
if (native === undefined) console.warn(`native-sgemm tests skipped: ${reason ?? 'unknown reason'}`);

/** Deterministic floats in [-1, 1) (mulberry32). */
function randomFloats(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

interface Mat {
  data: Float32Array;
  offset: number;
  ld: number;
}

/** Reference product in float64: alpha·op(A)·op(B) + beta·C, row-major. */
function reference(
  ta: boolean,
  tb: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Mat,
  b: Mat,
  beta: number,
  c: Mat,
): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        const av = a.data[a.offset + (ta ? p * a.ld + i : i * a.ld + p)]!;
        const bv = b.data[b.offset + (tb ? j * b.ld + p : p * b.ld + j)]!;
        s += av * bv;
      }
      out[i * n + j] = alpha * s + (beta === 0 ? 0 : beta * c.data[c.offset + i * c.ld + j]!);
    }
  }
  return out;
}

/** Largest |x - y| / (1 + |y|) between C's m x n block and the reference. */
function relError(c: Mat, m: number, n: number, expected: Float64Array): number {
  let max = 0;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const y = expected[i * n + j]!;
      max = Math.max(max, Math.abs(c.data[c.offset + i * c.ld + j]! - y) / (1 + Math.abs(y)));
    }
  }
  return max;
}

describe.skipIf(native === undefined)('native sgemm', () => {
  const s = native!;

  it('reports OpenBLAS and a thread count, which can be changed', () => {
    expect(s.config).toMatch(/OpenBLAS/);
    expect(s.path).toMatch(/sgemm\.node$/);
    const before = s.getNumThreads();
    expect(before).toBeGreaterThanOrEqual(1);
    s.setNumThreads(1);
    expect(s.getNumThreads()).toBe(1);
    s.setNumThreads(before);
    expect(s.getNumThreads()).toBe(before);
    expect(() => s.setNumThreads(0)).toThrow(RangeError);
    expect(() => s.setNumThreads(1.5)).toThrow(RangeError);
  });

  it('computes a known product', () => {
    const c = new Float32Array(4);
    s.sgemm(false, false, 2, 2, 2, 1, Float32Array.of(1, 2, 3, 4), 0, 2, Float32Array.of(5, 6, 7, 8), 0, 2, 0, c, 0, 2);
    expect(Array.from(c)).toEqual([19, 22, 43, 50]);
  });

  const shapes: Array<[number, number, number]> = [
    [1, 1, 1],
    [3, 5, 7],
    [17, 9, 33],
    [64, 48, 80],
    [130, 67, 129],
  ];
  for (const [m, n, k] of shapes) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        it(`${m}x${n}x${k} transA=${ta} transB=${tb}, offsets, padded leading dimensions, alpha and beta`, () => {
          const [ar, ac] = ta ? [k, m] : [m, k];
          const [br, bc] = tb ? [n, k] : [k, n];
          const a: Mat = { data: randomFloats(5 + ar * (ac + 2), m * 7 + k), offset: 5, ld: ac + 2 };
          const b: Mat = { data: randomFloats(3 + br * (bc + 1), n * 11 + k), offset: 3, ld: bc + 1 };
          const c: Mat = { data: randomFloats(2 + m * (n + 3), m + n), offset: 2, ld: n + 3 };
          const expected = reference(ta, tb, m, n, k, 0.5, a, b, 2, c);
          const before = c.data.slice();
          s.sgemm(ta, tb, m, n, k, 0.5, a.data, a.offset, a.ld, b.data, b.offset, b.ld, 2, c.data, c.offset, c.ld);
          expect(relError(c, m, n, expected)).toBeLessThan(1e-5);
          // Padding between rows and before the offset is untouched.
          for (let i = 0; i < c.data.length; i++) {
            const inBlock = i >= c.offset && (i - c.offset) % c.ld < n;
            if (!inBlock) expect(c.data[i]).toBe(before[i]);
          }
        });
      }
    }
  }

  it('beta = 0 ignores NaN in C, k = 0 gives beta·C, m = 0 does nothing', () => {
    const c = new Float32Array(6).fill(Number.NaN);
    s.sgemm(false, false, 2, 3, 2, 1, new Float32Array(4).fill(1), 0, 2, new Float32Array(6).fill(1), 0, 3, 0, c, 0, 3);
    expect(Array.from(c)).toEqual([2, 2, 2, 2, 2, 2]);
    s.sgemm(false, false, 2, 3, 0, 1, new Float32Array(0), 0, 1, new Float32Array(0), 0, 3, 0.5, c, 0, 3);
    expect(Array.from(c)).toEqual([1, 1, 1, 1, 1, 1]);
    s.sgemm(false, false, 0, 3, 2, 1, new Float32Array(0), 0, 2, new Float32Array(6), 0, 3, 0, new Float32Array(0), 0, 3);
  });

  it('batched with strides, a broadcast operand (stride 0) and explicit offsets', () => {
    const [m, n, k, batch] = [6, 5, 4, 3];
    const a = randomFloats(batch * m * k, 1);
    const b = randomFloats(k * n * 2, 2);
    const c = new Float32Array(batch * m * n);
    // b: two matrices, used in the order 1, 0, 1 through offsets.
    const bOffsets = Int32Array.of(k * n, 0, k * n);
    s.sgemmBatched(false, true, m, n, k, 1, a, 0, m * k, k, b, 0, bOffsets, k, 0, c, 0, m * n, n, batch);
    for (let i = 0; i < batch; i++) {
      const expected = reference(
        false,
        true,
        m,
        n,
        k,
        1,
        { data: a, offset: i * m * k, ld: k },
        { data: b, offset: bOffsets[i]!, ld: k },
        0,
        { data: c, offset: 0, ld: n },
      );
      expect(relError({ data: c, offset: i * m * n, ld: n }, m, n, expected)).toBeLessThan(1e-5);
    }
    const c2 = new Float32Array(batch * m * n);
    s.sgemmBatched(true, false, m, n, k, 1, a, 0, 0, m, b, 0, k * n, n, 0, c2, 0, m * n, n, 2);
    for (let i = 0; i < 2; i++) {
      const expected = reference(true, false, m, n, k, 1, { data: a, offset: 0, ld: m }, { data: b, offset: i * k * n, ld: n }, 0, {
        data: c2,
        offset: 0,
        ld: n,
      });
      expect(relError({ data: c2, offset: i * m * n, ld: n }, m, n, expected)).toBeLessThan(1e-5);
    }
    // The third result was not part of the batch of 2.
    expect(c2.subarray(2 * m * n).every((v) => v === 0)).toBe(true);
  });

  it('works on views of WebAssembly memory (the tfjs wasm heap), without copying', () => {
    const memory = new WebAssembly.Memory({ initial: 1 });
    const heap = new Float32Array(memory.buffer);
    heap.set(Float32Array.of(1, 2, 3, 4), 100);
    heap.set(Float32Array.of(5, 6, 7, 8), 200);
    s.sgemm(false, false, 2, 2, 2, 1, heap, 100, 2, heap, 200, 2, 0, heap, 300, 2);
    expect(Array.from(heap.subarray(300, 304))).toEqual([19, 22, 43, 50]);
    const view = new Float32Array(memory.buffer, 1200, 4);
    s.sgemm(false, false, 2, 2, 2, 1, heap, 100, 2, heap, 200, 2, 0, view, 0, 2);
    expect(Array.from(view)).toEqual([19, 22, 43, 50]);
  });

  describe('rejects invalid arguments with an error, never touching memory out of bounds', () => {
    const a = new Float32Array(6);
    const b = new Float32Array(6);
    const c = new Float32Array(4);
    const call =
      (...args: unknown[]) =>
      () =>
        (s.sgemm as (...x: unknown[]) => void)(...args);
    const good = [false, false, 2, 2, 3, 1, a, 0, 3, b, 0, 2, 0, c, 0, 2];
    const withArg = (i: number, v: unknown) => good.map((g, j) => (j === i ? v : g));

    it('accepts the valid call', () => expect(call(...good)).not.toThrow());
    it('wrong argument count', () => expect(call(...good.slice(0, 15))).toThrow(TypeError));
    it('wrong types', () => {
      expect(call(...withArg(0, 1))).toThrow(/transA must be a boolean/);
      expect(call(...withArg(6, new Float64Array(6)))).toThrow(/a must be a Float32Array/);
      expect(call(...withArg(9, [0, 0, 0, 0, 0, 0]))).toThrow(TypeError);
      expect(call(...withArg(2, '2'))).toThrow(TypeError);
    });
    it('non-integer, negative or huge dimensions and offsets', () => {
      expect(call(...withArg(2, 1.5))).toThrow(RangeError);
      expect(call(...withArg(3, -1))).toThrow(RangeError);
      expect(call(...withArg(4, 2 ** 31))).toThrow(RangeError);
      expect(call(...withArg(7, -3))).toThrow(RangeError);
      expect(call(...withArg(5, Number.NaN))).toThrow(RangeError);
    });
    it('leading dimensions below the stored columns', () => {
      expect(call(...withArg(8, 2))).toThrow(/leading dimension of a must be at least 3/);
      expect(call(...withArg(15, 1))).toThrow(/leading dimension of c/);
    });
    it('matrices reaching past the end of their arrays', () => {
      expect(call(...withArg(7, 1))).toThrow(/a is too short/);
      expect(call(...withArg(10, 1))).toThrow(/b is too short/);
      expect(call(...withArg(14, 1))).toThrow(/c is too short/);
      expect(call(...withArg(13, new Float32Array(3)))).toThrow(/c is too short/);
      expect(call(...withArg(8, 4))).toThrow(/a is too short/);
    });
    it('C overlapping A or B', () => {
      const shared = new Float32Array(16);
      expect(call(false, false, 2, 2, 3, 1, shared, 0, 3, b, 0, 2, 0, shared, 4, 2)).toThrow(/overlap/);
      expect(call(false, false, 2, 2, 3, 1, shared, 0, 3, b, 0, 2, 0, shared, 6, 2)).not.toThrow();
      const sub = shared.subarray(4);
      expect(call(false, false, 2, 2, 3, 1, shared, 0, 3, b, 0, 2, 0, sub, 0, 2)).toThrow(/overlap/);
    });
    it('a detached buffer', () => {
      const buffer = new ArrayBuffer(24);
      const view = new Float32Array(buffer);
      structuredClone(buffer, { transfer: [buffer] });
      expect(call(...withArg(6, view))).toThrow(/a is too short/);
    });
    it('batched: offsets out of range, too few offsets, overlapping results', () => {
      const batched =
        (...args: unknown[]) =>
        () =>
          (s.sgemmBatched as (...x: unknown[]) => void)(...args);
      const c2 = new Float32Array(8);
      const ok = [false, false, 2, 2, 3, 1, a, 0, 0, 3, b, 0, 0, 2, 0, c2, 0, 4, 2, 2];
      const set = (i: number, v: unknown) => ok.map((g, j) => (j === i ? v : g));
      expect(batched(...ok)).not.toThrow();
      expect(batched(...set(8, 6))).toThrow(/a is too short/);
      expect(batched(...set(8, Int32Array.of(0)))).toThrow(/fewer than the batch/);
      expect(batched(...set(12, Int32Array.of(0, -1)))).toThrow(/negative/);
      expect(batched(...set(12, Int32Array.of(0, 1)))).toThrow(/b is too short/);
      expect(batched(...set(8, Float32Array.of(0, 0)))).toThrow(TypeError);
      expect(batched(...set(17, 3))).toThrow(/overlap/);
      expect(batched(...set(17, Int32Array.of(0, 4)))).toThrow(TypeError);
      expect(batched(...set(19, 3))).toThrow(/c is too short/);
    });
  });
});

describe.skipIf(native === undefined)('threads per product (setMinWorkPerThread)', () => {
  const s = native!;
  const configured = s.getNumThreads();
  afterEach(() => {
    s.setNumThreads(configured);
    s.setMinWorkPerThread(DEFAULT_MIN_WORK_PER_THREAD);
  });

  it('starts at the documented default, and validates its argument like setNumThreads', () => {
    expect(initialMinWork).toBe(DEFAULT_MIN_WORK_PER_THREAD);
    for (const work of [0, 1, 123_456_789, 2 ** 53]) {
      s.setMinWorkPerThread(work);
      expect(s.getMinWorkPerThread()).toBe(work);
    }
    const call =
      (...args: unknown[]) =>
      () =>
        (s.setMinWorkPerThread as (...x: unknown[]) => void)(...args);
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53 + 2]) {
      expect(call(bad)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }) as Error);
    }
    expect(call(-1)).toThrow('setMinWorkPerThread: work must be an integer in [0, 9007199254740992], got -1');
    for (const bad of ['1', undefined, null, 1n, {}]) {
      expect(call(bad)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }) as Error);
    }
    expect(call('1')).toThrow('setMinWorkPerThread: work must be a number');
    expect(call()).toThrow('setMinWorkPerThread: expected 1 argument');
    expect(call(1, 2)).toThrow(TypeError);
    // A rejected value leaves the setting alone.
    expect(s.getMinWorkPerThread()).toBe(2 ** 53);
  });

  /** op(A)·op(B) of fresh random operands, computed under the current settings. */
  function multiply(m: number, n: number, k: number, seed: number, ta = false, tb = true) {
    const a: Mat = { data: randomFloats(m * k, seed), offset: 0, ld: ta ? m : k };
    const b: Mat = { data: randomFloats(k * n, seed + 1), offset: 0, ld: tb ? k : n };
    const c: Mat = { data: new Float32Array(m * n), offset: 0, ld: n };
    return {
      run(): Float32Array {
        c.data.fill(Number.NaN);
        s.sgemm(ta, tb, m, n, k, 1, a.data, 0, a.ld, b.data, 0, b.ld, 0, c.data, 0, c.ld);
        return c.data.slice();
      },
      error(result: Float32Array): number {
        return relError({ data: result, offset: 0, ld: n }, m, n, reference(ta, tb, m, n, k, 1, a, b, 0, c));
      },
    };
  }

  // OpenBLAS does not promise equal results on 1 and 2 threads (0.3.21 differs in the last bit on
  // about a third of [513, 32] x [32, 32]), so the checks are: a product below the threshold gives
  // exactly the 1-thread result, one above it exactly what OpenBLAS gives on its own (threshold 0),
  // and both agree with the float64 reference and with each other within float32 rounding.
  it('runs a product below the threshold on one thread and restores the configured count', () => {
    s.setNumThreads(2);
    s.setMinWorkPerThread(1_000_000);
    // m·n·k = 525,312 (the tiny BLT's [513, 32] x [32, 32]): above OpenBLAS's own cut-off, below 2 x 1e6.
    const p = multiply(513, 32, 32, 11);
    const chosen = p.run();
    expect(s.getNumThreads()).toBe(2);
    s.setNumThreads(1);
    const one = p.run();
    s.setNumThreads(2);
    s.setMinWorkPerThread(0);
    const openblas = p.run();
    expect(chosen).toEqual(one);
    expect(p.error(chosen)).toBeLessThan(1e-5);
    expect(p.error(openblas)).toBeLessThan(1e-5);
    expect(relError({ data: openblas, offset: 0, ld: 32 }, 513, 32, Float64Array.from(one))).toBeLessThan(1e-5);
    expect(s.getNumThreads()).toBe(2);
  });

  it('runs a product above the threshold on the configured threads', () => {
    s.setNumThreads(2);
    s.setMinWorkPerThread(1_000_000);
    // m·n·k = 4,202,496 >= 2 x 1e6: both threads, exactly as OpenBLAS alone would.
    const p = multiply(513, 128, 64, 12, true, false);
    const chosen = p.run();
    expect(s.getNumThreads()).toBe(2);
    s.setMinWorkPerThread(0);
    const openblas = p.run();
    s.setNumThreads(1);
    const one = p.run();
    expect(chosen).toEqual(openblas);
    expect(p.error(chosen)).toBeLessThan(1e-5);
    expect(relError({ data: one, offset: 0, ld: 128 }, 513, 128, Float64Array.from(chosen))).toBeLessThan(1e-5);
    // With a threshold above its work, the same product runs on one thread.
    s.setNumThreads(2);
    s.setMinWorkPerThread(2 ** 53);
    expect(p.run()).toEqual(one);
    expect(s.getNumThreads()).toBe(2);
  });

  it('decides a batched call by the size of one product, not the batch', () => {
    const [m, n, k, batch] = [513, 32, 32, 4];
    const a = randomFloats(batch * m * k, 21);
    const b = randomFloats(batch * k * n, 22);
    const run = () => {
      const c = new Float32Array(batch * m * n);
      s.sgemmBatched(false, false, m, n, k, 1, a, 0, m * k, k, b, 0, k * n, n, 0, c, 0, m * n, n, batch);
      return c;
    };
    s.setNumThreads(2);
    // batch·m·n·k = 2.1e6 would reach two threads; each product (525,312) does not.
    s.setMinWorkPerThread(1_000_000);
    const chosen = run();
    expect(s.getNumThreads()).toBe(2);
    s.setNumThreads(1);
    const one = run();
    expect(chosen).toEqual(one);
    for (let i = 0; i < batch; i++) {
      const expected = reference(
        false,
        false,
        m,
        n,
        k,
        1,
        { data: a, offset: i * m * k, ld: k },
        { data: b, offset: i * k * n, ld: n },
        0,
        { data: chosen, offset: 0, ld: n },
      );
      expect(relError({ data: chosen, offset: i * m * n, ld: n }, m, n, expected)).toBeLessThan(1e-5);
    }
  });

  it('leaves the thread count alone on calls that fail or need no product', () => {
    s.setNumThreads(2);
    s.setMinWorkPerThread(1_000_000);
    expect(() =>
      s.sgemm(false, false, 2, 2, 3, 1, new Float32Array(6), 1, 3, new Float32Array(6), 0, 2, 0, new Float32Array(4), 0, 2),
    ).toThrow(RangeError);
    expect(s.getNumThreads()).toBe(2);
    const c = new Float32Array(6).fill(3);
    s.sgemm(false, false, 2, 3, 0, 1, new Float32Array(0), 0, 1, new Float32Array(0), 0, 3, 0.5, c, 0, 3);
    expect(Array.from(c)).toEqual([1.5, 1.5, 1.5, 1.5, 1.5, 1.5]);
    expect(s.getNumThreads()).toBe(2);
    // A configured single thread stays one.
    s.setNumThreads(1);
    multiply(64, 64, 64, 31).run();
    expect(s.getNumThreads()).toBe(1);
  });
});

describe('loading', () => {
  it('returns the same object every time, or a reason', () => {
    expect(loadNativeSgemm()).toBe(native);
    if (native === undefined) expect(reason).toMatch(/./);
    else expect(reason).toBeUndefined();
  });
});

describe('element-wise passes', () => {
  const sgemm = loadNativeSgemm();
  it.skipIf(sgemm === undefined)('swiglu equals g · u / (1 + e^−g) and checks lengths', () => {
    const g = Float32Array.from([-100, -3, -0.5, 0, 0.5, 3, 100]);
    const u = Float32Array.from([1, 2, -1, 5, 0.25, -2, 3]);
    const out = new Float32Array(g.length);
    sgemm!.swiglu(g, u, out);
    g.forEach((x, i) => expect(out[i]).toBeCloseTo((x * u[i]!) / (1 + Math.exp(-x)), 5));
    expect(() => sgemm!.swiglu(g, u, new Float32Array(3))).toThrow(RangeError);
    expect(() => sgemm!.swiglu(g, u as unknown as Float32Array, [] as unknown as Float32Array)).toThrow(TypeError);
  });

  it.skipIf(sgemm === undefined)('softmaxRows: scaled, masked softmax per row, empty rows zeroed, bounds checked', () => {
    // Two rows of width 3 with a leading dimension of 4, starting at element 1.
    const y = Float32Array.from([9, 1, 2, 3, 9, 0, 0, 0, 9]);
    const bias = Float32Array.from([0, 0, -1e9, 0, 0, 0]);
    sgemm!.softmaxRows(y, 1, 2, 3, 4, 0.5, bias, Int32Array.from([0, 3]), Float32Array.from([1, 0]));
    const e = [Math.exp(0.5), Math.exp(1)];
    expect(y[0]).toBe(9);
    expect(y[1]).toBeCloseTo(e[0]! / (e[0]! + e[1]!), 6);
    expect(y[2]).toBeCloseTo(e[1]! / (e[0]! + e[1]!), 6);
    expect(y[3]).toBe(0);
    expect(y[4]).toBe(9); // between the rows: untouched
    expect(Array.from(y.subarray(5, 8))).toEqual([0, 0, 0]);
    expect(y[8]).toBe(9);
    expect(() => sgemm!.softmaxRows(y, 4, 2, 3, 4, 1, bias, Int32Array.from([0, 3]), Float32Array.from([1, 1]))).toThrow(RangeError);
    expect(() => sgemm!.softmaxRows(y, 0, 2, 3, 4, 1, bias, Int32Array.from([0, 4]), Float32Array.from([1, 1]))).toThrow(RangeError);
    expect(() => sgemm!.softmaxRows(y, 0, 2, 3, 2, 1, bias, Int32Array.from([0, 3]), Float32Array.from([1, 1]))).toThrow(RangeError);
    expect(() => sgemm!.softmaxRows(y, 0, 2, 3, 4, 1, bias, [0, 3] as unknown as Int32Array, Float32Array.from([1, 1]))).toThrow(TypeError);
  });
});
