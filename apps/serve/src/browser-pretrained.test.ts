// The web page on a folder model (`--model DIR`): in the browser it reads /models/index.json and runs
// loadPretrained on the folder's URL — the same loader as the server — so patches and greedy bytes
// equal the server's. Debian's Chromium through playwright-core, headless (see browser.test.ts).
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { ByteLatentTransformer, savePretrained } from '@bytelatent/blt';
import { EntropyModel, EntropyPatcher } from '@bytelatent/entropy-patcher';
import { initBackend } from '@bytelatent/nn';
import { DEFAULT_BLT_FOLDER, loadServeModels } from './load-models.js';
import { createApiServer } from './server.js';
import { WEB_DIR } from './paths.js';
import { browserAvailable, launchChromium } from './test-helpers.js';
import { TINY_FOLDER_BLT_ARGS } from './test-fixtures.js';

const available = browserAvailable(`${WEB_DIR}/index.html`);

const ARGS = { ...TINY_FOLDER_BLT_ARGS, max_seqlen: 256, max_encoder_seq_length: 256, local_attention_window_len: 256 };

let base = '';
let folder = '';
let closeServer: () => Promise<void>;
let browser: Browser;

beforeAll(async () => {
  if (!available) return;
  const backend = await initBackend({ backend: 'wasm' });
  folder = join(mkdtempSync(join(tmpdir(), 'serve-page-folder-')), 'blt');
  const blt = new ByteLatentTransformer(ARGS, 5);
  const patcher = EntropyPatcher.fromModel(
    new EntropyModel(
      {
        dim: 16,
        n_layers: 1,
        n_heads: 2,
        max_seqlen: 256,
        vocab_size: 260,
        attn_bias_type: 'local_block_causal',
        sliding_window: 256,
        multiple_of: 16,
      },
      6,
    ),
    { mode: 'entropy', threshold: 5.1, maxPatchLength: 3 },
  );
  await savePretrained(blt, patcher, folder, { layout: 'transformers' });
  blt.dispose();
  patcher.dispose();
  const { service, folders } = await loadServeModels({ model: folder, backend: backend.name });
  const { server } = createApiServer({ service, modelFolders: folders!, publicDir: WEB_DIR });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  closeServer = () => new Promise((resolve) => server.close(() => resolve()));
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await closeServer?.();
});

async function runPage(query: string): Promise<{ status: string; patches: string[]; generated: string }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    await page.goto(base + query);
    await page.waitForFunction(() => document.getElementById('status')!.dataset['state'] !== undefined, null, { timeout: 120_000 });
    const status = (await page.textContent('#status')) ?? '';
    expect(await page.getAttribute('#status', 'data-state'), status).toBe('ready');
    await page.waitForFunction(() => document.querySelectorAll('#patches span').length > 1, null, { timeout: 120_000 });
    const patches = await page.locator('#patches span').allTextContents();
    await page.fill('#prompt', 'A folder model');
    await page.fill('#maxBytes', '12');
    await page.fill('#temperature', '0');
    await page.click('#generate');
    await page.waitForFunction(() => document.getElementById('geninfo')!.dataset['state'] !== undefined, null, { timeout: 150_000 });
    expect(await page.getAttribute('#geninfo', 'data-state'), (await page.textContent('#geninfo')) ?? '').toBe('done');
    expect(errors).toEqual([]);
    return { status, patches, generated: (await page.textContent('#generated')) ?? '' };
  } finally {
    await page.close();
  }
}

describe.skipIf(!available)('the web page on a folder model', () => {
  it("runs the transformers-layout folder in the browser (loadPretrained by URL) with the server's patches and bytes", async () => {
    const server = await runPage('');
    expect(server.status).toMatch(/on the server/);
    const page = await runPage('?run=browser&backend=wasm');
    expect(page.status).toMatch(/in this browser on wasm; transformers-layout folder loaded/);
    expect(page.patches).toEqual(server.patches);
    // The folder's max_patch_length (3) in the page too.
    expect(Math.max(...page.patches.map((p) => new TextEncoder().encode(p).length))).toBeLessThanOrEqual(3);
    expect(page.generated).toBe(server.generated);
  }, 240_000);

  it('runs the folder with an explicit --patcher folder in the browser (read through the weights cache) with the same patches', async () => {
    const backend = await initBackend({ backend: 'wasm' });
    const { service, folders } = await loadServeModels({
      model: folder,
      patcher: join(DEFAULT_BLT_FOLDER, 'entropy_model'),
      backend: backend.name,
    });
    const { server } = createApiServer({ service, modelFolders: folders!, publicDir: WEB_DIR });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const folderBase = base;
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    try {
      expect(((await (await fetch(`${base}models/index.json`)).json()) as { patcher: string }).patcher).toBe('patcher/');
      const onServer = await runPage('');
      const inPage = await runPage('?run=browser&backend=wasm');
      expect(inPage.status).toMatch(/in this browser on wasm; transformers-layout folder loaded \([\d.]+ MB of weights downloaded\)/);
      expect(inPage.patches).toEqual(onServer.patches);
      expect(inPage.generated).toBe(onServer.generated);
    } finally {
      base = folderBase;
      await new Promise((resolve) => server.close(resolve));
    }
  }, 240_000);

  it('runs a folder the user picks on this computer, in the browser, with the same patches', async () => {
    const server = await runPage('');
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    try {
      await page.goto(base);
      await page.waitForFunction(() => document.getElementById('status')!.dataset['run'] === 'server', null, { timeout: 60_000 });
      await page.setInputFiles('#folder', folder);
      await page.waitForFunction(
        () =>
          document.getElementById('status')!.dataset['run'] === 'folder' || document.getElementById('status')!.dataset['state'] === 'error',
        null,
        {
          timeout: 120_000,
        },
      );
      const status = (await page.textContent('#status')) ?? '';
      expect(status).toMatch(
        /^Running in this browser on \w+; blt \(transformers layout, [\d.]+ MB from this computer\) loaded in \d+ ms\.$/,
      );
      await page.waitForFunction(() => document.getElementById('patches')!.dataset['ticket'] !== '1', null, { timeout: 60_000 });
      expect(await page.locator('#patches span').allTextContents()).toEqual(server.patches);
      // A folder without model files is refused in the status line, saying why.
      const notes = join(mkdtempSync(join(tmpdir(), 'serve-page-notes-')), 'notes');
      mkdirSync(notes);
      writeFileSync(join(notes, 'readme.txt'), 'not a model');
      await page.setInputFiles('#folder', notes);
      await page.waitForFunction(() => document.getElementById('status')!.dataset['state'] === 'error', null, { timeout: 60_000 });
      expect(await page.textContent('#status')).toBe(
        'could not load the folder: the folder holds no configuration or weights file (.json, .safetensors, .pth)',
      );
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 240_000);
});
