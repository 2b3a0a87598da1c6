// @bytelatent/blt's checkpoint format in a real browser:
// browser-checks/checkpoint.ts, bundled here by vite, runs in Debian's Chromium; it saves to
// IndexedDB and loads back, loads over HTTP a directory that Node saved, and asks for a checkpoint
// that does not exist. The logits must be identical in all three.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from 'vite';
import { ByteLatentTransformer, saveBlt, type BltArgs } from '@bytelatent/blt';
import { encode } from '@bytelatent/bytes';
import { initBackend } from '@bytelatent/nn';
import { browserAvailable, launchChromium } from './test-helpers.js';
import { TINY_BLT_ARGS } from './test-fixtures.js';

const ARGS: BltArgs = { ...TINY_BLT_ARGS, patching_mode: 'static' };
const SEED = 7;
const CHECKS = fileURLToPath(new URL('../browser-checks', import.meta.url));
const available = browserAvailable();

let root = '';
let server: Server | undefined;

function serveFolder(folder: string): Promise<string> {
  const s = createServer((req, res) => {
    const path = normalize(join(folder, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
    if (!path.startsWith(folder + sep)) return void res.writeHead(404).end();
    readFile(path).then(
      (body) =>
        res
          .writeHead(200, {
            'Content-Type':
              { '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json' }[extname(path)] ?? 'application/octet-stream',
          })
          .end(body),
      () => res.writeHead(404).end(),
    );
  });
  server = s;
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}/`)));
}

beforeAll(async () => {
  if (!available) return;
  root = await mkdtemp(join(tmpdir(), 'blt-browser-checkpoint-'));
  await build({
    root: CHECKS,
    base: './',
    logLevel: 'error',
    configFile: false,
    build: { outDir: root, emptyOutDir: false, minify: false, target: 'es2022', rollupOptions: { input: join(CHECKS, 'checkpoint.html') } },
  });
  await initBackend({ backend: 'cpu' });
  const model = new ByteLatentTransformer(ARGS, SEED);
  await saveBlt(model, join(root, 'node-checkpoint'));
  model.dispose();
}, 120_000);

afterAll(async () => {
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  if (root) await rm(root, { recursive: true, force: true });
});

describe.skipIf(!available)('BLT checkpoints in Chromium', () => {
  it('round-trips through IndexedDB and loads a Node-saved checkpoint over HTTP, exactly', async () => {
    const base = await serveFolder(root);
    const tokens = Array.from(encode('Patches scale better than tokens.', { bos: true, eos: false }));
    const lengths = [1];
    for (let rest = tokens.length - 1; rest > 0; rest -= 4) lengths.push(Math.min(4, rest));
    const query = new URLSearchParams({
      args: JSON.stringify(ARGS),
      seed: String(SEED),
      tokens: JSON.stringify(tokens),
      lengths: JSON.stringify(lengths),
    });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${base}checkpoint.html?${query.toString()}`);
      await page.waitForFunction(() => (window as unknown as { checkResult?: unknown }).checkResult !== undefined, null, {
        timeout: 60_000,
      });
      const result = (await page.evaluate(() => (window as unknown as { checkResult: unknown }).checkResult)) as Record<string, any>;
      expect(errors).toEqual([]);
      expect(result['error']).toBeUndefined();
      expect(result['savedBytes']).toBeGreaterThan(0);
      expect(result['indexedDbMaxAbsDiff']).toBe(0);
      expect(result['httpMaxAbsDiff']).toBe(0);
      expect(result['logits'].every((x: number) => Number.isFinite(x))).toBe(true);
      expect(result['missing']).toMatchObject({ name: 'BltError', code: 'INVALID_CHECKPOINT' });
      expect(result['missing'].message).toMatch(/no-such-checkpoint/);
      expect(result['numTensors']).toBe(0);
    } finally {
      await browser.close();
    }
  }, 120_000);
});
