// Seeded random tensor values, generated straight into the bytes of a file, in any element range.
//
// Each tensor is cut into blocks of BLOCK_ELEMENTS elements; block b of tensor (component, name) is
// drawn by an xorshift128 generator seeded from (seed, component, name, b), one 32-bit draw per two
// elements (low half → element 2j, high half → element 2j+1 of the block). The values therefore do
// not depend on the layout, the order of tensors in a file or the chunk sizes of the writer, and any
// range of any tensor can be regenerated on its own (`tensorBytes`) to check what a loader read.
//
// A 16-bit draw picks one of 65536 equally spaced quantiles of a uniform distribution with the
// tensor's standard deviation (a per-(dtype, std) table of encoded values), so a chunk costs one
// generator step and two table loads per pair of elements: ~2 GB/s of bf16 on one core.
import type { ReferenceTensor, TensorInit } from './models.js';

/** Element type of the written tensors. */
export type Dtype = 'bf16' | 'f16' | 'f32';
export const DTYPES: readonly Dtype[] = ['bf16', 'f16', 'f32'];

/** Elements per independently seeded block. */
export const BLOCK_ELEMENTS = 65536;

export function dtypeBytes(dtype: Dtype): 2 | 4 {
  return dtype === 'f32' ? 4 : 2;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function float32Bits(x: number): number {
  f32[0] = x;
  return u32[0] as number;
}

/** float32 → bfloat16 bits, round to nearest even. */
export function toBfloat16Bits(x: number): number {
  const bits = float32Bits(x);
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 → IEEE half bits, round to nearest even (subnormals kept, overflow to infinity). */
export function toFloat16Bits(x: number): number {
  const bits = float32Bits(x);
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let out = mant >>> shift;
    if (rest > half || (rest === half && (out & 1) === 1)) out++;
    return sign | out;
  }
  let out = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (out & 1) === 1)) out++;
  return sign | out;
}

const tables = new Map<string, Uint16Array | Uint32Array>();

/** The 65536 encoded quantiles of U(−√3·std, √3·std) for a dtype. */
function valueTable(std: number, dtype: Dtype): Uint16Array | Uint32Array {
  const key = `${dtype}:${std}`;
  let table = tables.get(key);
  if (table) return table;
  const half = Math.sqrt(3) * std;
  table = dtype === 'f32' ? new Uint32Array(65536) : new Uint16Array(65536);
  for (let k = 0; k < 65536; k++) {
    const v = ((k + 0.5) / 65536 - 0.5) * 2 * half;
    table[k] = dtype === 'bf16' ? toBfloat16Bits(v) : dtype === 'f16' ? toFloat16Bits(v) : float32Bits(v);
  }
  if (tables.size > 256) tables.clear();
  tables.set(key, table);
  return table;
}

function onesBits(dtype: Dtype): number {
  return dtype === 'bf16' ? 0x3f80 : dtype === 'f16' ? 0x3c00 : 0x3f800000;
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Two 32-bit FNV-1a style hashes of a string (different offset bases). */
function nameHashes(s: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995) ^ (b >>> 15);
  }
  return [a >>> 0, b >>> 0];
}

/** Validates a seed: an integer in [0, 2^53). */
export function checkSeed(seed: number): number {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be an integer in [0, 2^53), got ${seed}`);
  return seed;
}

/** The stream of one tensor: its table and the per-block seeding words. */
export interface ValueStream {
  readonly numel: number;
  readonly dtype: Dtype;
  readonly init: TensorInit;
  readonly table: Uint16Array | Uint32Array | undefined;
  /** mixed (seed, component, name) */
  readonly key: number;
}

export function valueStream(
  tensor: Pick<ReferenceTensor, 'name' | 'component' | 'init' | 'shape'>,
  seed: number,
  dtype: Dtype,
): ValueStream {
  checkSeed(seed);
  const [h1, h2] = nameHashes(`${tensor.component}/${tensor.name}`);
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 0x100000000) >>> 0;
  const key = fmix32(fmix32(fmix32(fmix32(lo ^ 0x9e3779b9) ^ hi) ^ h1) ^ h2);
  const numel = tensor.shape.reduce((a, b) => a * b, 1);
  const table = tensor.init.kind === 'uniform' ? valueTable(tensor.init.std, dtype) : undefined;
  return { numel, dtype, init: tensor.init, table, key };
}

/**
 * Writes elements [begin, end) of a tensor's values into `dst` (little-endian, `dtypeBytes` each).
 * `dst.byteOffset` must be a multiple of the element size.
 */
export function fillValues(stream: ValueStream, begin: number, end: number, dst: Uint8Array): void {
  const size = dtypeBytes(stream.dtype);
  const count = end - begin;
  if (begin < 0 || end > stream.numel || count < 0) throw new Error(`element range [${begin}, ${end}) outside a tensor of ${stream.numel}`);
  if (dst.byteLength !== count * size) throw new Error(`destination has ${dst.byteLength} bytes, the range needs ${count * size}`);
  if (count === 0) return;
  if (dst.byteOffset % size !== 0) throw new Error('destination is not aligned to the element size');
  const table = stream.table;
  if (!table) {
    if (size === 2) new Uint16Array(dst.buffer, dst.byteOffset, count).fill(onesBits(stream.dtype));
    else new Uint32Array(dst.buffer, dst.byteOffset, count).fill(onesBits(stream.dtype));
    return;
  }
  // One block at a time; the two element sizes have their own (monomorphic) loops.
  let e = begin;
  let at = dst.byteOffset;
  while (e < end) {
    const block = Math.floor(e / BLOCK_ELEMENTS);
    const blockStart = block * BLOCK_ELEMENTS;
    const stop = Math.min(end, blockStart + BLOCK_ELEMENTS);
    const n = stop - e;
    if (size === 2) fillBlock16(table as Uint16Array, stream.key, block, e - blockStart, n, dst.buffer as ArrayBuffer, at);
    else fillBlock32(table as Uint32Array, stream.key, block, e - blockStart, n, dst.buffer as ArrayBuffer, at);
    at += n * size;
    e = stop;
  }
}

/** xorshift128 state of a block, advanced past the draws of its first `skipElements` elements. */
function blockState(key: number, block: number, skipElements: number, state: Int32Array): void {
  const h = fmix32(key ^ Math.imul(block + 1, 0x9e3779b9));
  let a = fmix32(h + 0x6a09e667) | 0;
  let b = fmix32(h + 0xbb67ae85) | 0;
  let c = fmix32(h + 0x3c6ef372) | 0;
  let d = fmix32(h + 0xa54ff53a) | 0;
  if ((a | b | c | d) === 0) a = 1;
  for (let skip = skipElements >>> 1; skip > 0; skip--) {
    const t = a ^ (a << 11);
    a = b;
    b = c;
    c = d;
    d = d ^ (d >>> 19) ^ (t ^ (t >>> 8));
  }
  state[0] = a;
  state[1] = b;
  state[2] = c;
  state[3] = d;
}

const state = new Int32Array(4);

/**
 * 2-byte elements [first, first + n) of a block (draw j → elements 2j (low half), 2j + 1 (high
 * half)), written at byte offset `at` of `buffer`.
 */
function fillBlock16(table: Uint16Array, key: number, block: number, first: number, n: number, buffer: ArrayBuffer, at: number): void {
  blockState(key, block, first, state);
  let a = state[0] as number,
    b = state[1] as number,
    c = state[2] as number,
    d = state[3] as number;
  let i = 0;
  if ((first & 1) === 1) {
    const t = a ^ (a << 11);
    a = b;
    b = c;
    c = d;
    d = d ^ (d >>> 19) ^ (t ^ (t >>> 8));
    new Uint16Array(buffer, at, 1)[0] = table[d >>> 16] as number;
    i = 1;
  }
  const pairs = (n - i) >>> 1;
  const start = at + 2 * i;
  if (start % 4 === 0) {
    const out = new Uint32Array(buffer, start, pairs);
    for (let p = 0; p < pairs; p++) {
      const t = a ^ (a << 11);
      a = b;
      b = c;
      c = d;
      d = d ^ (d >>> 19) ^ (t ^ (t >>> 8));
      out[p] = (table[d & 0xffff] as number) | ((table[d >>> 16] as number) << 16);
    }
  } else {
    const out = new Uint16Array(buffer, start, 2 * pairs);
    for (let p = 0; p < 2 * pairs; p += 2) {
      const t = a ^ (a << 11);
      a = b;
      b = c;
      c = d;
      d = d ^ (d >>> 19) ^ (t ^ (t >>> 8));
      out[p] = table[d & 0xffff] as number;
      out[p + 1] = table[d >>> 16] as number;
    }
  }
  if (i + 2 * pairs < n) {
    const t = a ^ (a << 11);
    a = b;
    b = c;
    c = d;
    d = d ^ (d >>> 19) ^ (t ^ (t >>> 8));
    new Uint16Array(buffer, start + 4 * pairs, 1)[0] = table[d & 0xffff] as number;
  }
}

/** 4-byte elements [first, first + n) of a block, as {@link fillBlock16}. */
function fillBlock32(table: Uint32Array, key: number, block: number, first: number, n: number, buffer: ArrayBuffer, at: number): void {
  blockState(key, block, first, state);
  let a = state[0] as number,
    b = state[1] as number,
    c = state[2] as number,
    d = state[3] as number;
  const out = new Uint32Array(buffer, at, n);
  let o = 0;
  if ((first & 1) === 1) {
    const t = a ^ (a << 11);
    a = b;
    b = c;
    c = d;
    d = d ^ (d >>> 19) ^ (t ^ (t >>> 8));
    out[o++] = table[d >>> 16] as number;
  }
  const pairsEnd = o + ((n - o) & ~1);
  for (; o < pairsEnd; o += 2) {
    const t = a ^ (a << 11);
    a = b;
    b = c;
    c = d;
    d = d ^ (d >>> 19) ^ (t ^ (t >>> 8));
    out[o] = table[d & 0xffff] as number;
    out[o + 1] = table[d >>> 16] as number;
  }
  if (o < n) {
    const t = a ^ (a << 11);
    a = b;
    b = c;
    c = d;
    d = d ^ (d >>> 19) ^ (t ^ (t >>> 8));
    out[o] = table[d & 0xffff] as number;
  }
}

/**
 * The bytes of elements [begin, end) of a reference tensor as the generator writes them for `seed`
 * and `dtype`: what a loader must read back.
 */
export function tensorBytes(
  tensor: Pick<ReferenceTensor, 'name' | 'component' | 'init' | 'shape'>,
  seed: number,
  dtype: Dtype,
  begin = 0,
  end?: number,
): Uint8Array {
  const stream = valueStream(tensor, seed, dtype);
  const stop = end ?? stream.numel;
  const bytes = new Uint8Array((stop - begin) * dtypeBytes(dtype));
  fillValues(stream, begin, stop, bytes);
  return bytes;
}
