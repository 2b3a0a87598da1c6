// Compiles wasm/hash.wat and writes its bytes (base64) into src/hash-wasm.ts. Run after editing the
// .wat: `npm run build:wasm -w @bytelatent/ngram-hash`. src/hash-wasm.test.ts checks they agree.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import wabtInit from 'wabt';

const root = fileURLToPath(new URL('..', import.meta.url));
const wabt = await wabtInit();
const module = wabt.parseWat('hash.wat', readFileSync(`${root}wasm/hash.wat`, 'utf8'));
module.validate();
const base64 = Buffer.from(module.toBinary({}).buffer).toString('base64');
const file = `${root}src/hash-wasm.ts`;
const source = readFileSync(file, 'utf8');
const updated = source.replace(/export const HASH_WASM_BASE64 = '[^']*';/, `export const HASH_WASM_BASE64 = '${base64}';`);
writeFileSync(file, updated);
console.log(`${file}: ${Buffer.from(base64, 'base64').length} bytes of WebAssembly${updated === source ? ' (unchanged)' : ''}`);
