// Bundles the web page (web/) into dist/web with vite, and copies tfjs's wasm binaries beside it
// (the page points initBackend's wasmPaths at ./wasm/), so the server has everything the page loads.
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';

const appDir = fileURLToPath(new URL('..', import.meta.url));
const outDir = join(appDir, 'dist', 'web');

// Not minified: tfjs's threaded wasm backend starts its workers from the source text of a function
// (Function.prototype.toString), which a minifier breaks by renaming the variables it closes over
// (the page then fails with "e is not defined" in every worker).
await build({
  root: join(appDir, 'web'),
  base: './',
  logLevel: 'warn',
  configFile: false,
  build: { outDir, emptyOutDir: true, target: 'es2022', minify: false, chunkSizeWarningLimit: 4096, reportCompressedSize: false },
});

const require = createRequire(import.meta.url);
const wasmDist = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')) + '/dist';
const wasmOut = join(outDir, 'wasm');
await mkdir(wasmOut, { recursive: true });
const binaries = (await readdir(wasmDist)).filter((f) => f.endsWith('.wasm'));
if (binaries.length === 0) throw new Error(`no .wasm files in ${wasmDist}`);
await Promise.all(binaries.map((f) => copyFile(join(wasmDist, f), join(wasmOut, f))));
process.stdout.write(`web page bundled into ${outDir} (${binaries.length} wasm binaries)\n`);
