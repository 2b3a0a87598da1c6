// Shared by the browser tests (not part of the build: tsconfig.json excludes this file).
import { createReadStream, existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, expect } from 'vitest';
import { initBackend } from '@bytelatent/nn';
import { loadServeModels } from './load-models.js';
import { WEB_DIR } from './paths.js';
import { createApiServer } from './server.js';

/** Debian's Chromium, or `CHROMIUM_PATH`; playwright never downloads a browser here. */
export const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

// Flags that work on Debian's Chromium here (shared/environment.md, gotcha 7).
const CHROMIUM_FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu-sandbox',
  '--enable-unsafe-webgpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/**
 * Whether the browser tests can run. CI installs Chromium and builds the page: there, a missing
 * browser (or page) is a failure, not a skip.
 */
export function browserAvailable(...requiredFiles: string[]): boolean {
  const missing = [CHROMIUM, ...requiredFiles].filter((f) => !existsSync(f));
  if (missing.length > 0 && process.env['CI']) throw new Error(`the browser tests need ${missing.join(', ')}`);
  return missing.length === 0;
}

/** Where the page tests write their screenshots. */
export const SCREENSHOTS = fileURLToPath(new URL('../test-output', import.meta.url));

/** What {@link useDemoPage} gives a test file: `base` and `browser` are set once its `beforeAll` ran. */
export interface DemoPage {
  /** Whether Chromium and the built page are here (in CI a missing one fails instead). */
  readonly available: boolean;
  /** The server's base URL, ending in `/`. */
  base: string;
  browser: Browser;
}

/**
 * This server with the shipped demo models on wasm, its page and `/models/` on a loopback port, and
 * a headless Chromium: started before the test file's tests and closed after them.
 */
export function useDemoPage(): DemoPage {
  const session = { available: browserAvailable(`${WEB_DIR}/index.html`), base: '', browser: undefined as unknown as Browser };
  let close: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    if (!session.available) return;
    const backend = await initBackend({ backend: 'wasm' });
    // The shipped demo: a hub folder, served to the page under /models/blt/.
    const { service, folders } = await loadServeModels({ backend: backend.name });
    const { server } = createApiServer({ service, modelFolders: folders!, publicDir: WEB_DIR });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    session.base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    close = () => new Promise<void>((resolve) => server.close(() => resolve()));
    session.browser = await launchChromium();
    await mkdir(SCREENSHOTS, { recursive: true });
  }, 120_000);
  afterAll(async () => {
    await session.browser?.close();
    await close?.();
  });
  return session;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS, headless: true });
}

/**
 * Serves a folder's files with the headers a threaded wasm page needs (COOP/COEP), HEAD included,
 * bodies streamed, on a loopback port.
 *
 * @returns the base URL (ending in `/`) and a function that closes the server
 */
export async function serveFolder(folder: string): Promise<{ base: string; close: () => Promise<void> }> {
  const types: Record<string, string> = {
    '.html': 'text/html',
    '.js': 'text/javascript',
    '.json': 'application/json',
    '.txt': 'text/plain; charset=utf-8',
    '.wasm': 'application/wasm',
  };
  const server: Server = createServer((req, res) => {
    const path = normalize(join(folder, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
    if (!path.startsWith(folder + sep) || (req.method !== 'GET' && req.method !== 'HEAD')) return void res.writeHead(404).end();
    stat(path).then(
      (st) => {
        if (!st.isFile()) return void res.writeHead(404).end();
        res.writeHead(200, {
          'Content-Type': types[extname(path)] ?? 'application/octet-stream',
          'Content-Length': st.size,
          'Cross-Origin-Opener-Policy': 'same-origin',
          'Cross-Origin-Embedder-Policy': 'require-corp',
        });
        if (req.method === 'HEAD') return void res.end();
        createReadStream(path).pipe(res);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * Bundles a check page of `browser-checks/` with vite into `outDir`, with tfjs's wasm binaries
 * beside it under `wasm/` (initBackend's wasmPaths), as scripts/build-web.mjs does for the app.
 */
export async function bundleCheckPage(checksDir: string, html: string, outDir: string): Promise<void> {
  await build({
    root: checksDir,
    base: './',
    logLevel: 'error',
    configFile: false,
    build: {
      outDir,
      emptyOutDir: false,
      minify: false,
      target: 'es2022',
      chunkSizeWarningLimit: 8192,
      rollupOptions: { input: join(checksDir, html) },
    },
  });
  const wasmDist = join(dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  await mkdir(join(outDir, 'wasm'));
  for (const f of (await readdir(wasmDist)).filter((n) => n.endsWith('.wasm'))) await copyFile(join(wasmDist, f), join(outDir, 'wasm', f));
}

/**
 * Opens a check page (`browser-checks/`) and returns the `window.checkResult` it sets when done,
 * after asserting that it threw nothing and reported no error.
 */
export async function runCheckPage<T extends { readonly error?: string }>(browser: Browser, url: string): Promise<T> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    await page.goto(url);
    await page.waitForFunction(() => (window as unknown as { checkResult?: unknown }).checkResult !== undefined, null, {
      timeout: 150_000,
    });
    const result = (await page.evaluate(() => (window as unknown as { checkResult: unknown }).checkResult)) as T;
    expect(errors).toEqual([]);
    expect(result.error).toBeUndefined();
    return result;
  } finally {
    await page.close();
  }
}
