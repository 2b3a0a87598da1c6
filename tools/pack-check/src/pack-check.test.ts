import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Every publishable package must install from its `npm pack` tarball into an empty project, with
// only the tarballs of its own @bytelatent dependencies beside it, and work there.
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

interface Manifest {
  name: string;
  private?: boolean;
  exports: Record<string, unknown>;
  dependencies?: Record<string, string>;
  files?: string[];
  bin?: Record<string, string>;
}

// The libraries (packages/) and the apps with their bins (apps/): everything that is published.
const manifests = new Map<string, { dir: string; manifest: Manifest }>();
for (const group of ['packages', 'apps']) {
  for (const dir of readdirSync(join(root, group))) {
    const path = join(root, group, dir, 'package.json');
    if (!existsSync(path)) continue;
    const manifest = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
    if (!manifest.private) manifests.set(manifest.name, { dir: join(root, group, dir), manifest });
  }
}

/** What each package must do once installed alone (ESM, run with node). */
const SMOKE: Record<string, string> = {
  '@bytelatent/bytes': `
    import { decode, encode } from '@bytelatent/bytes';
    const ids = encode('héllo');
    if (ids.join() !== '1,108,199,173,112,112,115,2' || decode(ids) !== 'héllo') throw new Error('bytes broken');`,
  '@bytelatent/ngram-hash': `
    import { byteGroupHashIds } from '@bytelatent/ngram-hash';
    const ids = byteGroupHashIds([1, 76, 105, 112, 112, 115], 3, { vocabSize: 500002 });
    if (ids.join() !== '443987,124875,393970,386145,358223,190185') throw new Error('ngram-hash broken');`,
  '@bytelatent/nn': `
    import { parseSafetensors, serializeSafetensors } from '@bytelatent/nn';
    import { writeSafetensorsFile, readSafetensorsFile } from '@bytelatent/nn/node';
    const bytes = serializeSafetensors({ w: { dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) } });
    if (parseSafetensors(bytes).toFloat32('w').join() !== '1,2') throw new Error('nn broken');
    await writeSafetensorsFile('w.safetensors', { w: { dtype: 'F32', shape: [1], data: Float32Array.of(3) } });
    if ((await readSafetensorsFile('w.safetensors')).toFloat32('w')[0] !== 3) throw new Error('nn/node broken');`,
  '@bytelatent/entropy-patcher': `
    import { initBackend } from '@bytelatent/nn';
    import { EntropyModel, EntropyPatcher } from '@bytelatent/entropy-patcher';
    const backend = await initBackend({ backend: 'wasm' }); // wasm binaries must resolve from the install
    if (backend.name !== 'wasm') throw new Error('wasm backend unavailable');
    // The optional peer @bytelatent/native-sgemm is not installed here: reported, not an error.
    if (backend.nativeMatMul?.active !== false || !/not installed/.test(backend.nativeMatMul.reason)) throw new Error('nativeMatMul: ' + JSON.stringify(backend.nativeMatMul));
    const model = new EntropyModel({ dim: 16, n_layers: 1, n_heads: 2, max_seqlen: 64, attn_bias_type: 'local_block_causal', sliding_window: 8, multiple_of: 16 }, 1);
    const patcher = await EntropyPatcher.fromSafetensors(await model.toSafetensors(), { threshold: 5.5 });
    const r = await patcher.patch('hello world');
    if (r.patchLengths.reduce((a, b) => a + b, 0) !== 13 || r.entropies.some((h) => !(h > 0))) throw new Error('entropy-patcher broken');`,
  // Installed with --ignore-scripts, then rebuilt (its install script compiles the addon from the
  // shipped C source). Where this machine builds the addon in the monorepo, the installed copy must
  // build and compute too; elsewhere it must say why it is unavailable.
  '@bytelatent/evals': `
    import { evaluateBitsPerByte, uniformByteModel, generateCharacterTasks, gpt2TokenCount } from '@bytelatent/evals';
    const r = await evaluateBitsPerByte(uniformByteModel(), 'Patches scale better than tokens.');
    if (Math.abs(r.bitsPerByte - Math.log2(260)) > 1e-9) throw new Error('uniform bpb ' + r.bitsPerByte);
    // Its data dependencies (word list, GPT-2 vocabulary) resolve from the install.
    if (generateCharacterTasks({ perTask: 2 }).length === 0) throw new Error('no character tasks');
    if (!((await gpt2TokenCount('hello world')) > 0)) throw new Error('gpt-2 tokenizer');`,
  '@bytelatent/native-sgemm': `
    import { loadNativeSgemm, nativeSgemmUnavailableReason } from '@bytelatent/native-sgemm';
    const s = loadNativeSgemm();
    if (s === undefined) {
      if (process.env.EXPECT_NATIVE === '1') throw new Error('native-sgemm did not build from its tarball: ' + nativeSgemmUnavailableReason());
      if (!nativeSgemmUnavailableReason()) throw new Error('native-sgemm unavailable without a reason');
    } else {
      const c = new Float32Array(4);
      s.sgemm(true, false, 2, 2, 2, 1, Float32Array.of(1, 3, 2, 4), 0, 2, Float32Array.of(5, 6, 7, 8), 0, 2, 0, c, 0, 2);
      if (c.join() !== '19,22,43,50') throw new Error('native-sgemm broken: ' + c.join());
    }`,
};

/**
 * The entropy patcher installed alone, used as its README's pretrained example shows (no backend
 * call): it must choose wasm itself, print nothing but the example's own line (no tfjs banner, no
 * Dawn warnings), and patch a long text with its worker threads from the install. The throughput is
 * printed for the record (docs/performance.md), never asserted.
 */
function checkPatcherDefaults(app: string): void {
  writeFileSync(
    join(app, 'readme.mjs'),
    `import { EntropyPatcher } from '@bytelatent/entropy-patcher';
    const patcher = await EntropyPatcher.pretrained();
    console.log((await patcher.patch('Alice was beginning to get very tired of sitting by her sister on the bank.')).segments().map((s) => s.text).join('|'));`,
  );
  const env = { ...process.env };
  delete env['VK_ICD_FILENAMES'];
  const readme = spawnSync(process.execPath, ['readme.mjs'], { cwd: app, env, encoding: 'utf8' });
  expect(readme.status, readme.stderr).toBe(0);
  expect(readme.stderr).toBe('');
  expect(readme.stdout.trim().split('\n')).toHaveLength(1);
  expect(readme.stdout).toMatch(/^A.*\|was \|/);
  writeFileSync(
    join(app, 'speed.mjs'),
    `import { readFileSync } from 'node:fs';
    import { EntropyPatcher } from '@bytelatent/entropy-patcher';
    const patcher = await EntropyPatcher.pretrained();
    const prose = readFileSync('node_modules/@bytelatent/entropy-patcher/README.md', 'utf8');
    const text = prose.repeat(Math.ceil((256 << 10) / prose.length)).slice(0, 256 << 10);
    await patcher.patch(text.slice(0, 64 << 10));
    // The first long input starts the worker threads; give them time to come up.
    await new Promise((r) => setTimeout(r, 2000));
    await patcher.patch(text.slice(0, 64 << 10));
    const started = performance.now();
    await patcher.patch(text);
    const seconds = (performance.now() - started) / 1000;
    console.log(JSON.stringify({ backend: patcher.backend.name, native: patcher.backend.nativeMatMul?.active ?? false, threads: patcher.threads, kb_s: Buffer.byteLength(text) / 1000 / seconds }));`,
  );
  const speed = spawnSync(process.execPath, ['speed.mjs'], { cwd: app, env, encoding: 'utf8' });
  expect(speed.status, speed.stderr).toBe(0);
  expect(speed.stderr).toBe('');
  const figures = JSON.parse(speed.stdout) as { backend: string; native: boolean; threads: number; kb_s: number };
  expect(figures).toMatchObject({ backend: 'wasm', native: false, threads: Math.min(4, availableParallelism()) });
  console.log(`@bytelatent/entropy-patcher installed alone: ${JSON.stringify(figures)}`);
}

/**
 * CommonJS users: `require()` of the package works on Node >= 20.19 (its exports' `default`
 * condition; Node loads the ES module synchronously) and gives the same exports as `import`.
 */
function checkRequire(app: string, name: string): void {
  writeFileSync(
    join(app, 'require.cjs'),
    `const m = require('${name}');
    import('${name}').then((esm) => {
      const a = Object.keys(m).sort().join(), b = Object.keys(esm).sort().join();
      if (a.length === 0 || a !== b) throw new Error('require() gave ' + a + ', import ' + b);
    });`,
  );
  const r = spawnSync(process.execPath, ['require.cjs'], { cwd: app, encoding: 'utf8' });
  expect(r.status, `${name}: ${r.stderr}`).toBe(0);
}

/** The three lines of the blt README, from the install: the shipped demo loads and generates. */
function checkBltReadme(app: string): void {
  writeFileSync(
    join(app, 'three.mjs'),
    `import { loadPretrained, generate } from '@bytelatent/blt';
    const blt = await loadPretrained('pretrained:demo');
    console.log((await generate(blt, 'Alice was beginning to', { maxBytes: 60, temperature: 0.8, seed: 1 })).text);`,
  );
  const r = spawnSync(process.execPath, ['three.mjs'], { cwd: app, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stderr).toBe('');
  expect(Buffer.byteLength(r.stdout.replace(/\n$/, ''))).toBeGreaterThanOrEqual(50);
}

/** `bytelatent-train` from the install: its version, and two steps of the tiny preset on a file. */
function checkTrainBin(app: string): void {
  const bin = join(app, 'node_modules', '.bin', 'bytelatent-train');
  expect(run(bin, ['--version'], app).trim()).toMatch(/^bytelatent-train \d+\.\d+\.\d+$/);
  writeFileSync(join(app, 'text.txt'), readFileSync(join(root, 'packages/entropy-patcher/README.md'), 'utf8').repeat(4));
  // As a user runs it from a shell: no INIT_CWD (which npm sets for the scripts it runs, vitest's here).
  const env = { ...process.env };
  delete env['INIT_CWD'];
  const out = run(
    bin,
    [
      '--preset',
      'tiny',
      '--steps',
      '2',
      '--eval-every',
      '2',
      '--data',
      'text.txt',
      '--heldout',
      'text.txt',
      '--out',
      'run',
      '--backend',
      'wasm',
      '--json',
    ],
    app,
    env,
  );
  expect(JSON.parse(out)).toMatchObject({ preset: 'tiny', backend: 'wasm' });
  expect(existsSync(join(app, 'run', 'checkpoint.safetensors'))).toBe(true);
}

/**
 * `bytelatent-serve` from an empty folder: it serves the demo BLT that ships in @bytelatent/blt,
 * answers /health and the OpenAI-compatible /v1/completions, and stops on SIGTERM.
 */
async function checkServeBin(app: string): Promise<void> {
  const bin = join(app, 'node_modules', '.bin', 'bytelatent-serve');
  expect(run(bin, ['--version'], app).trim()).toMatch(/^bytelatent-serve \d+\.\d+\.\d+$/);
  const child = spawn(bin, ['--port', '0'], { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    const base = await new Promise<string>((resolveBase, reject) => {
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        const m = /bytelatent serve: (http:\/\/\S+\/)/.exec(stdout);
        if (m) resolveBase(m[1]!);
      });
      child.on('exit', (code) => reject(new Error(`bytelatent-serve exited ${code}: ${stderr}`)));
    });
    const health = (await (await fetch(`${base}health`)).json()) as { models: { blt: { layout: string; parameters: number } } };
    expect(health.models.blt.layout).toBe('hub');
    const models = (await (await fetch(`${base}v1/models`)).json()) as { data: Array<{ id: string }> };
    expect(models.data.map((m) => m.id)).toEqual(['blt-demo']);
    const res = await fetch(`${base}v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'blt-demo', prompt: 'Alice was', max_tokens: 12, temperature: 0 }),
    });
    const completion = (await res.json()) as { choices: Array<{ text: string }>; usage: { completion_tokens: number } };
    expect(res.status).toBe(200);
    expect(completion.usage.completion_tokens).toBe(12);
    expect((await fetch(base)).status).toBe(200); // the page ships in the tarball
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  expect(stderr).toBe('');
}

/** Packages whose install script must run after the --ignore-scripts install (they build native code). */
const REBUILD = new Set(['@bytelatent/native-sgemm']);

/** Whether the monorepo's own native-sgemm addon loads here: then the packed one must build too. */
async function monorepoNativeSgemm(): Promise<boolean> {
  try {
    return (await import('@bytelatent/native-sgemm')).loadNativeSgemm() !== undefined;
  } catch {
    return false;
  }
}

let work: string;
let expectNative = false;
const tarballs = new Map<string, string>();

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string {
  return execFileSync(cmd, args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The package and, transitively, its @bytelatent dependencies. */
function closure(name: string, seen = new Set<string>()): Set<string> {
  if (seen.has(name)) return seen;
  seen.add(name);
  for (const dep of Object.keys(manifests.get(name)?.manifest.dependencies ?? {})) {
    if (dep.startsWith('@bytelatent/')) closure(dep, seen);
  }
  return seen;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'bytelatent-pack-'));
  for (const [name, { dir }] of manifests) {
    const out = run('npm', ['pack', '--json', '--pack-destination', work], dir);
    const [info] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
    tarballs.set(name, join(work, info!.filename));
    // Shipped files: built code and sources for the declaration maps, never tests or build info.
    const paths = info!.files.map((f) => f.path);
    expect(paths, name).toContain('dist/index.js');
    expect(paths, name).toContain('dist/index.d.ts');
    expect(
      paths.filter((p) => p.includes('.test.') || p.endsWith('.tsbuildinfo')),
      name,
    ).toEqual([]);
    // Native code ships as source, built on the user's machine; never a binary built here.
    expect(
      paths.filter((p) => p.endsWith('.node')),
      name,
    ).toEqual([]);
    if (name === '@bytelatent/native-sgemm') expect(paths).toEqual(expect.arrayContaining(['native/sgemm.c', 'scripts/build-native.mjs']));
  }
  expectNative = await monorepoNativeSgemm();
}, 120_000);

// Eleven installs with tfjs each: removing them can take longer than vitest's default 10 s hook
// timeout on a busy disk.
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
}, 120_000);

describe('every publishable package installs and works alone', () => {
  it('lists types first in every export condition', () => {
    for (const [name, { manifest }] of manifests) {
      for (const [subpath, target] of Object.entries(manifest.exports)) {
        if (typeof target === 'string') continue;
        expect(Object.keys(target as object)[0], `${name} exports["${subpath}"]`).toBe('types');
      }
    }
  });

  for (const name of manifests.keys()) {
    it(`${name} from its tarball`, async () => {
      const app = mkdtempSync(join(work, 'app-'));
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
      const needed = [...closure(name)].map((n) => tarballs.get(n)!);
      run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', ...needed], app);
      for (const pkg of closure(name)) if (REBUILD.has(pkg)) run('npm', ['rebuild', pkg], app);
      // Nothing but the package's own closure (and third-party dependencies) is installed.
      const installed = readdirSync(join(app, 'node_modules', '@bytelatent')).map((d) => `@bytelatent/${d}`);
      expect(installed.sort()).toEqual([...closure(name)].sort());
      writeFileSync(join(app, 'smoke.mjs'), SMOKE[name] ?? `await import('${name}');`);
      expect(() => run(process.execPath, ['smoke.mjs'], app, { ...process.env, EXPECT_NATIVE: expectNative ? '1' : '0' })).not.toThrow();
      checkRequire(app, name);
      if (name === '@bytelatent/entropy-patcher') checkPatcherDefaults(app);
      if (name === '@bytelatent/blt') checkBltReadme(app);
      if (name === '@bytelatent/train') checkTrainBin(app);
      if (name === '@bytelatent/serve') await checkServeBin(app);
    }, 180_000);
  }
});
