#!/usr/bin/env node
// Builds native/sgemm.c into dist/native/sgemm.node with the system C compiler and OpenBLAS.
//
// No node-gyp: node-gyp downloads Node's headers, and our machines (and many users') have no
// network beyond the package registries. Node's own headers (node_api.h) are looked up locally.
//
// This script never fails the build: the addon is optional, and without a compiler, the headers or
// OpenBLAS it prints why and exits 0, leaving the TypeScript part to build alone. Then
// `loadNativeSgemm()` returns undefined and `nativeSgemmUnavailableReason()` says why.
//
// Options: --force rebuilds an up-to-date addon.
// Environment: CC (compiler, default `cc`), BYTELATENT_NATIVE_SGEMM=off (skip the build),
// BYTELATENT_NODE_INCLUDE (directory holding node_api.h), BYTELATENT_BLAS_LIBS (link flags instead
// of `-lopenblas`, e.g. `-L/opt/openblas/lib -lopenblas`).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'native', 'sgemm.c');
const outDir = join(root, 'dist', 'native');
const output = join(outDir, 'sgemm.node');
// Built under another name, checked, then renamed: a failed build never leaves a half-written addon.
const staging = join(outDir, 'sgemm.staging.node');
// Written next to the addon when it is not built, so that the loader can tell the user why.
const reasonFile = join(outDir, 'unavailable.txt');

function skip(reason) {
  mkdirSync(outDir, { recursive: true });
  rmSync(output, { force: true });
  writeFileSync(reasonFile, `${reason}\n`);
  console.log(`native-sgemm: addon not built (optional, the package works without it): ${reason}`);
  process.exit(0);
}

if (/^(0|off|false|no)$/i.test(process.env.BYTELATENT_NATIVE_SGEMM ?? '')) skip('BYTELATENT_NATIVE_SGEMM=off');
// Up to date: the addon is newer than its source and this script (N-API is ABI-stable across Node
// versions, so a Node upgrade needs no rebuild). `--force` rebuilds anyway.
if (!process.argv.includes('--force') && existsSync(output)) {
  const built = statSync(output).mtimeMs;
  if (built > statSync(source).mtimeMs && built > statSync(fileURLToPath(import.meta.url)).mtimeMs) {
    console.log(`native-sgemm: ${output} is up to date`);
    process.exit(0);
  }
}
if (process.platform === 'win32') skip('building on Windows is not supported (needs a POSIX cc and OpenBLAS)');

/** Directories that may hold node_api.h, most specific first; none of them is downloaded. */
function includeCandidates() {
  const dirs = [];
  if (process.env.BYTELATENT_NODE_INCLUDE) dirs.push(process.env.BYTELATENT_NODE_INCLUDE);
  // npm's `nodedir` setting (npm passes it to scripts as npm_config_nodedir).
  if (process.env.npm_config_nodedir) dirs.push(join(process.env.npm_config_nodedir, 'include', 'node'));
  // Node installed under a prefix (/usr/bin/node -> /usr/include/node; nvm, official tarballs).
  dirs.push(resolve(dirname(process.execPath), '..', 'include', 'node'));
  // Headers node-gyp downloaded earlier for this version, if any (read only, never fetched).
  const cache = process.env.XDG_CACHE_HOME ?? (process.env.HOME ? join(process.env.HOME, '.cache') : undefined);
  if (cache) dirs.push(join(cache, 'node-gyp', process.versions.node, 'include', 'node'));
  dirs.push('/usr/include/node', '/usr/local/include/node');
  return [...new Set(dirs)];
}

const include = includeCandidates().find((dir) => existsSync(join(dir, 'node_api.h')));
if (include === undefined) {
  skip(
    `node_api.h not found (looked in ${includeCandidates().join(', ')}); set BYTELATENT_NODE_INCLUDE, or install Node's headers (Debian: nodejs ships them in /usr/include/node)`,
  );
}

const cc = process.env.CC ?? 'cc';
const probe = spawnSync(cc, ['--version'], { encoding: 'utf8' });
if (probe.error !== undefined || probe.status !== 0) skip(`no C compiler (\`${cc} --version\` failed; Debian: apt-get install gcc)`);

const blasLibs = (process.env.BYTELATENT_BLAS_LIBS ?? '-lopenblas').split(/\s+/).filter(Boolean);
// The products are OpenBLAS's; the two element-wise passes (swiglu, softmaxRows) want expf without
// errno bookkeeping (-fno-math-errno), nothing that changes results.
const args = [
  '-std=c11',
  '-O2',
  '-fno-math-errno',
  '-Wall',
  '-Wextra',
  '-fPIC',
  '-shared',
  '-fvisibility=hidden',
  '-DNAPI_VERSION=8',
  `-I${include}`,
  source,
  '-o',
  staging,
  ...blasLibs,
  '-lm',
];
mkdirSync(outDir, { recursive: true });
const compile = spawnSync(cc, args, { encoding: 'utf8' });
if (compile.status !== 0) {
  rmSync(staging, { force: true });
  const log = `${compile.stderr ?? ''}${compile.stdout ?? ''}`.trim();
  const hint = /cblas\.h/.test(log)
    ? 'cblas.h not found (Debian: apt-get install libopenblas-dev)'
    : /cannot find -l|openblas/i.test(log)
      ? 'the BLAS library was not found (Debian: apt-get install libopenblas-dev)'
      : 'the compiler failed';
  skip(`${hint}; ${cc} said:\n${log.split('\n').slice(0, 12).join('\n')}`);
}

// Load it once in a child process: a library that links but does not load (a missing
// libopenblas.so.0 at run time) must count as unavailable here, not crash a user's process later.
const check = `
  const m = require(${JSON.stringify(staging)});
  const a = Float32Array.of(1, 2, 3, 4), b = Float32Array.of(5, 6, 7, 8), c = new Float32Array(4);
  m.sgemm(false, false, 2, 2, 2, 1, a, 0, 2, b, 0, 2, 0, c, 0, 2);
  if (c.join() !== '19,22,43,50') throw new Error('wrong product ' + c.join());
  console.log(m.config());`;
let config;
try {
  config = execFileSync(process.execPath, ['-e', check], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
} catch (e) {
  rmSync(staging, { force: true });
  skip(
    `the built addon does not load or computes wrongly: ${String(e.stderr ?? e.message)
      .trim()
      .split('\n')
      .slice(0, 6)
      .join('\n')}`,
  );
}
renameSync(staging, output);
rmSync(reasonFile, { force: true });
console.log(`native-sgemm: built ${output} (${config})`);
