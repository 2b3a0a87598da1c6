import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import wabtInit from 'wabt';
import { describe, expect, it } from 'vitest';
import { byteGroupHashIdsMulti, withJavaScriptHashCore } from './hash.js';
import { HASH_WASM_BASE64, hashWasmAvailable } from './hash-wasm.js';
import { byteGroupHashIdsReference } from './reference-hash.js';

// The WebAssembly hash core (wasm/hash.wat) against its source, the JavaScript core and the BigInt
// reference: chunk boundaries, row restarts, negative and large ids, table sizes.

const ORACLE_TIMEOUT_MS = 120_000;
const SIZES = [3, 4, 5, 6, 7, 8];

function randomTokens(seed: number, length: number, minId: number, maxId: number): Int32Array {
  let s = seed >>> 0;
  const out = new Int32Array(length);
  for (let i = 0; i < length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = minId + (s % (maxId - minId));
  }
  return out;
}

describe('the WebAssembly hash core', () => {
  it('is the compiled wasm/hash.wat (npm run build:wasm after editing it)', async () => {
    const wabt = await wabtInit();
    const source = readFileSync(fileURLToPath(new URL('../wasm/hash.wat', import.meta.url)), 'utf8');
    const module = wabt.parseWat('hash.wat', source);
    module.validate();
    expect(Buffer.from(module.toBinary({}).buffer).toString('base64')).toBe(HASH_WASM_BASE64);
  });

  it('runs in Node', () => {
    expect(hashWasmAvailable()).toBe(true);
  });

  it('equals the JavaScript core across chunk boundaries (65,536 ids) and row restarts', () => {
    const tokens = randomTokens(3, 150_000, 0, 260);
    for (const rowLength of [undefined, 50_000, 150_000]) {
      for (const hashFunction of [0, 3]) {
        const options = { vocabSize: 500_002, hashFunction, rowLength };
        const wasm = byteGroupHashIdsMulti(tokens, SIZES, options);
        const js = withJavaScriptHashCore(() => byteGroupHashIdsMulti(tokens, SIZES, options));
        wasm.forEach((ids, s) => expect(ids).toEqual(js[s]));
      }
    }
  });

  it(
    'equals the BigInt reference for negative ids, ids too large for the doubles of the JavaScript core, and many table sizes',
    () => {
      const cases = [randomTokens(7, 3000, -1, 260), randomTokens(8, 3000, -(2 ** 31), 2 ** 31 - 1), randomTokens(9, 3000, 0, 2 ** 30)];
      for (const tokens of cases) {
        for (const vocabSize of [1, 2, 1000, 500_002, 2 ** 21]) {
          const rowLength = 1000;
          const wasm = byteGroupHashIdsMulti(tokens, SIZES, { vocabSize, hashFunction: 1, rowLength });
          SIZES.forEach((n, s) => expect(wasm[s]).toEqual(byteGroupHashIdsReference(tokens, n, { vocabSize, hashFunction: 1, rowLength })));
        }
      }
    },
    ORACLE_TIMEOUT_MS,
  );

  it(
    'the JavaScript core (the fallback without WebAssembly) still equals the reference',
    () => {
      const tokens = randomTokens(11, 5000, 0, 260);
      for (const vocabSize of [1, 1000, 500_002]) {
        const js = withJavaScriptHashCore(() => byteGroupHashIdsMulti(tokens, SIZES, { vocabSize, rowLength: 2500 }));
        SIZES.forEach((n, s) => expect(js[s]).toEqual(byteGroupHashIdsReference(tokens, n, { vocabSize, rowLength: 2500 })));
      }
    },
    ORACLE_TIMEOUT_MS,
  );
});
