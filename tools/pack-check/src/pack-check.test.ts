import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Every publishable package must install from its `npm pack` tarball into an empty project, with
// only the tarballs of its own @bytelatent dependencies beside it, and work there.
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const packagesDir = join(root, 'packages');

interface Manifest {
  name: string;
  private?: boolean;
  exports: Record<string, unknown>;
  dependencies?: Record<string, string>;
  files?: string[];
}

const manifests = new Map<string, { dir: string; manifest: Manifest }>();
for (const dir of readdirSync(packagesDir)) {
  const path = join(packagesDir, dir, 'package.json');
  if (!existsSync(path)) continue;
  const manifest = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  if (!manifest.private) manifests.set(manifest.name, { dir: join(packagesDir, dir), manifest });
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
    const model = new EntropyModel({ dim: 16, n_layers: 1, n_heads: 2, max_seqlen: 64, attn_bias_type: 'local_block_causal', sliding_window: 8, multiple_of: 16 }, 1);
    const patcher = await EntropyPatcher.fromSafetensors(await model.toSafetensors(), { threshold: 5.5 });
    const r = await patcher.patch('hello world');
    if (r.patchLengths.reduce((a, b) => a + b, 0) !== 13 || r.entropies.some((h) => !(h > 0))) throw new Error('entropy-patcher broken');`,
};

let work: string;
const tarballs = new Map<string, string>();

function run(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
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

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'bytelatent-pack-'));
  for (const [name, { dir }] of manifests) {
    const out = run('npm', ['pack', '--json', '--pack-destination', work], dir);
    const [info] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
    tarballs.set(name, join(work, info!.filename));
    // Shipped files: built code and sources for the declaration maps, never tests or build info.
    const paths = info!.files.map((f) => f.path);
    expect(paths, name).toContain('dist/index.js');
    expect(paths, name).toContain('dist/index.d.ts');
    expect(paths.filter((p) => p.includes('.test.') || p.endsWith('.tsbuildinfo')), name).toEqual([]);
  }
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

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
    it(`${name} from its tarball`, () => {
      const app = mkdtempSync(join(work, 'app-'));
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
      const needed = [...closure(name)].map((n) => tarballs.get(n)!);
      run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', ...needed], app);
      // Nothing but the package's own closure (and third-party dependencies) is installed.
      const installed = readdirSync(join(app, 'node_modules', '@bytelatent')).map((d) => `@bytelatent/${d}`);
      expect(installed.sort()).toEqual([...closure(name)].sort());
      writeFileSync(join(app, 'smoke.mjs'), SMOKE[name] ?? `await import('${name}');`);
      expect(() => run(process.execPath, ['smoke.mjs'], app)).not.toThrow();
    }, 120_000);
  }
});
