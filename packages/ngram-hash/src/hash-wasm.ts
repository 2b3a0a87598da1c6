import { BOE_ID } from '@bytelatent/bytes';

/**
 * `wasm/hash.wat` compiled (`npm run build:wasm -w @bytelatent/ngram-hash` writes this line; a test
 * checks that it matches the source). 330 bytes: compiled synchronously, in Node and in browsers.
 */
export const HASH_WASM_BASE64 = 'AGFzbQEAAAABDgFgCn9/f39/f3x8f38AAwIBAAUDAQABBxQCBm1lbW9yeQIAB2hhc2hJZHMAAAqQAgGNAgMFfwF+A3xEAAAAAAAA8D8gBqMhEgJAA0AgCiABTg0BQgAhD0EAIQtBACEMAkADQCAMIARODQEgAyAMQQJ0aigCACENIAogDWogAUoNAQJAA0AgCyANTg0BIA8gACAKIAtqQQJ0aigCAKwgBSALQQN0aikDAH58IQ8gC0EBaiELDAALCyAKIA1BAWtqIAJrIQ4gDkEATgRAIA9CIIe5IAeiIA9C/////w+DuqAhECAQIBAgEqKcIAaioSERIBFEAAAAAAAAAABjBEAgESAGoCERCyARIAZmBEAgESAGoSERCyAIIAwgCWwgDmpBAnRqIBGqNgIACyAMQQFqIQwMAAsLIApBAWohCgwACwsL';

interface HashExports {
  readonly memory: WebAssembly.Memory;
  hashIds(x: number, plen: number, pad: number, sizes: number, k: number, pow: number, vocab: number, c: number, out: number, stride: number): void;
}

/** Tokens per call: bounds the module's memory (about 2 MB for 6 sizes) whatever the input length. */
const CHUNK = 1 << 16;

let loaded: HashExports | null | undefined;

/** The instantiated module, or null where WebAssembly is unavailable (the JavaScript core is used). */
function hashModule(): HashExports | null {
  if (loaded !== undefined) return loaded;
  try {
    const bytes = Uint8Array.from(atob(HASH_WASM_BASE64), (ch) => ch.charCodeAt(0));
    loaded = new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports as unknown as HashExports;
  } catch {
    loaded = null;
  }
  return loaded;
}

/** Whether the WebAssembly hash core can run here. */
export function hashWasmAvailable(): boolean {
  return hashModule() !== null;
}

/**
 * Floor-mod-`vocabSize` hashes of every window size for one hash function, as the JavaScript core
 * of `./hash.ts` computes them, in WebAssembly (int64 arithmetic, wrapping as the reference's).
 * Rows are processed in chunks of {@link CHUNK} tokens, each behind the ids before it (BOE at a
 * row's start).
 *
 * @param ids - token ids (int32)
 * @param sizes - distinct group sizes, ascending
 * @param powers - `prime^m mod 2^64` for m < max(sizes)
 * @param rowLength - windows restart every `rowLength` ids
 * @param vocabSize - table size, at most 2^21 (the floor-mod is exact below 2^53)
 * @returns per size, one index per position; undefined without WebAssembly
 */
export function hashIdsWasm(ids: Int32Array, sizes: readonly number[], powers: readonly bigint[], rowLength: number, vocabSize: number): Int32Array[] | undefined {
  const wasm = hashModule();
  if (wasm === null) return undefined;
  const n = ids.length;
  const k = sizes.length;
  const pad = sizes[k - 1]! - 1;
  // Layout: x (pad + CHUNK int32), sizes (k int32), powers (8-byte aligned int64), out (k·CHUNK int32).
  const xAt = 0;
  const sizesAt = xAt + (pad + CHUNK) * 4;
  const powAt = Math.ceil((sizesAt + k * 4) / 8) * 8;
  const outAt = powAt + powers.length * 8;
  const bytes = outAt + k * CHUNK * 4;
  const pages = Math.ceil(bytes / 65536) - wasm.memory.buffer.byteLength / 65536;
  if (pages > 0) wasm.memory.grow(pages);
  const mem32 = new Int32Array(wasm.memory.buffer);
  mem32.set(sizes, sizesAt / 4);
  new BigInt64Array(wasm.memory.buffer, powAt, powers.length).set(powers.map((p) => BigInt.asIntN(64, p)));
  const out = sizes.map(() => new Int32Array(n));
  const c = 4294967296 % vocabSize;
  for (let rowStart = 0; rowStart < n; rowStart += rowLength) {
    const rowEnd = Math.min(rowStart + rowLength, n);
    for (let start = rowStart; start < rowEnd; start += CHUNK) {
      const end = Math.min(start + CHUNK, rowEnd);
      for (let t = 0; t < pad; t++) {
        const position = start - pad + t;
        mem32[xAt / 4 + t] = position >= rowStart ? ids[position]! : BOE_ID;
      }
      mem32.set(ids.subarray(start, end), xAt / 4 + pad);
      const length = end - start;
      wasm.hashIds(xAt, pad + length, pad, sizesAt, k, powAt, vocabSize, c, outAt, length);
      for (let s = 0; s < k; s++) out[s]!.set(mem32.subarray(outAt / 4 + s * length, outAt / 4 + (s + 1) * length), start);
    }
  }
  return out;
}
