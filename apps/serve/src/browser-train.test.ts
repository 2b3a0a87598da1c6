// The page's training tab in Debian's Chromium (playwright-core, headless), against this server with
// the shipped models: a model trains in the page's Web Worker on wasm, the held-out bits per byte
// fall, pause holds it and resume finishes it; the saved model runs in the page, and the downloaded
// file loads in the loaders and in this server. Screenshots go to test-output/.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { EntropyPatcher } from '@bytelatent/entropy-patcher';
import { initBackend } from '@bytelatent/nn';
import { loadServeModels } from './load-models.js';
import { SCREENSHOTS, useDemoPage } from './test-helpers.js';

const demo = useDemoPage();

const trainState = (page: Page) => page.getAttribute('#trainStatus', 'data-state');
const dataNumber = async (page: Page, name: string) => Number(await page.getAttribute('#trainStatus', `data-${name}`));

/** Opens the training tab, sets the run up on wasm and starts it. */
async function startTraining(page: Page, kind: 'entropy' | 'blt', steps: number, batch: number, backend = 'wasm'): Promise<void> {
  await page.goto(`${demo.base}#train`);
  expect(await page.isVisible('#train')).toBe(true);
  expect(await page.isHidden('#explore')).toBe(true);
  expect(await page.textContent('#trainTextInfo')).toMatch(/^1\d{3} bytes of text$/);
  await page.selectOption('#trainKind', kind);
  await page.fill('#trainSteps', String(steps));
  await page.fill('#trainBatch', String(batch));
  await page.selectOption('#trainBackend', backend);
  await page.click('#trainStart');
}

async function waitForState(page: Page, states: string[], timeout = 180_000): Promise<string> {
  await page.waitForFunction((wanted) => wanted.includes(document.getElementById('trainStatus')!.dataset['state'] ?? ''), states, {
    timeout,
  });
  const state = (await trainState(page))!;
  if (state === 'error') throw new Error((await page.textContent('#trainStatus')) ?? 'error');
  return state;
}

/** Saves through the Download button and returns the file's bytes. */
async function downloaded(page: Page): Promise<{ name: string; bytes: Uint8Array }> {
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 60_000 }), page.click('#trainDownload')]);
  const path = await download.path();
  return { name: download.suggestedFilename(), bytes: new Uint8Array(await readFile(path)) };
}

/** Saves to IndexedDB and runs the newest saved model in the page; returns the page's status line. */
async function saveAndRun(page: Page, kind: 'entropy' | 'blt'): Promise<string> {
  await page.click('#trainSave');
  await page.waitForFunction(() => document.querySelector(`#savedModels li[data-id]`) !== null, null, { timeout: 60_000 });
  expect(await page.getAttribute('#savedModels li[data-id]', 'data-kind')).toBe(kind);
  await page.click('#savedModels li[data-id] button[data-action=run]');
  await page.waitForFunction(
    () =>
      ['trained'].includes(document.getElementById('status')!.dataset['run'] ?? '') ||
      document.getElementById('status')!.dataset['state'] === 'error',
    null,
    { timeout: 120_000 },
  );
  expect(await page.getAttribute('#status', 'data-state')).toBe('ready');
  expect(await page.isVisible('#explore')).toBe(true);
  return (await page.textContent('#status')) ?? '';
}

describe.skipIf(!demo.available)('training in the page (Chromium, Web Worker on wasm)', () => {
  it('trains an entropy model: the held-out bits fall, pause holds the step, resume finishes; saved, downloaded and run', async () => {
    const page = await demo.browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    try {
      await startTraining(page, 'entropy', 30, 8);
      await page.waitForFunction(() => Number(document.getElementById('trainStatus')!.dataset['step'] ?? 0) >= 3, null, {
        timeout: 120_000,
      });
      await page.click('#trainPause');
      await waitForState(page, ['paused']);
      expect(await page.textContent('#trainPause')).toBe('Resume');
      expect(await page.textContent('#trainStatus')).toMatch(/^Paused: step \d+ of 30: \d\.\d{3} bits per byte on the batch/);
      const pausedAt = await dataNumber(page, 'step');
      // A step in flight when the pause arrived may still land; after that, nothing moves.
      await page.waitForTimeout(500);
      const held = await dataNumber(page, 'step');
      expect(held - pausedAt).toBeLessThanOrEqual(1);
      await page.waitForTimeout(1500);
      expect(await dataNumber(page, 'step')).toBe(held);
      expect(held).toBeLessThan(30);
      await page.screenshot({ path: `${SCREENSHOTS}/page-train-paused.png`, fullPage: true });
      await page.click('#trainPause');
      await waitForState(page, ['done']);
      expect(await dataNumber(page, 'step')).toBe(30);
      const before = await dataNumber(page, 'heldout-before');
      const after = await dataNumber(page, 'heldout');
      expect(before).toBeGreaterThan(7); // about log2(260) at random initialisation
      expect(after).toBeLessThan(before - 2);
      // The curve: a point per held-out evaluation (before step 1, at 10, 20 and 30).
      expect(await page.locator('#lossCurve circle.heldout').count()).toBe(4);
      expect(await page.textContent('#trainStatus')).toMatch(
        /^Done: step 30 of 30: \d\.\d{3} bits per byte on the batch, \d\.\d{3} held out \(\d\.\d{3} before training\)/,
      );
      await page.screenshot({ path: `${SCREENSHOTS}/page-train-done.png`, fullPage: true });

      // The downloaded file: what EntropyPatcher.fromSafetensors and `bytelatent-serve --patcher FILE` read.
      const file = await downloaded(page);
      expect(file.name).toBe('entropy-model.safetensors');
      await initBackend({ backend: 'cpu' });
      const patcher = await EntropyPatcher.fromSafetensors(file.bytes);
      expect(patcher.defaults).toMatchObject({ mode: 'entropy' });
      patcher.dispose();

      // Saved in the browser, then run: the text is patched by this model at its own threshold.
      const status = await saveAndRun(page, 'entropy');
      expect(status).toMatch(
        /^Running in this browser on wasm; your entropy model "entropy model, 30 steps, \d\.\d{3} bits\/byte held out" with the server's BLT loaded in \d+ ms\.$/,
      );
      await page.waitForFunction(() => document.querySelectorAll('#patches span').length > 1, null, { timeout: 60_000 });
      expect(await page.textContent('#patchinfo')).toContain(`threshold ${patcher.defaults.threshold!.toFixed(2)} nats`);
      await page.screenshot({ path: `${SCREENSHOTS}/page-trained-entropy-model.png`, fullPage: true });
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 300_000);

  it('trains a BLT; the saved one scores and generates in the page, and the downloaded file loads in this server', async () => {
    const page = await demo.browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    try {
      await startTraining(page, 'blt', 10, 4);
      await waitForState(page, ['done']);
      expect(await dataNumber(page, 'heldout')).toBeLessThan((await dataNumber(page, 'heldout-before')) - 1);
      const file = await downloaded(page);
      expect(file.name).toBe('blt.safetensors');
      const dir = await mkdtemp(join(tmpdir(), 'page-blt-'));
      try {
        await writeFile(join(dir, file.name), file.bytes);
        const { service } = await loadServeModels({ blt: join(dir, file.name), backend: 'cpu' });
        expect(service.patching.mode).toBe('space');
        expect((await service.score('Alice was', new AbortController().signal)).bytes).toBe(9);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      const status = await saveAndRun(page, 'blt');
      expect(status).toMatch(/your BLT "BLT, 10 steps, \d\.\d{3} bits\/byte held out" with the server's entropy model loaded/);
      await page.waitForFunction(() => document.getElementById('bitsinfo')!.textContent!.includes('bits per byte'), null, {
        timeout: 60_000,
      });
      // The figure starts at this BLT's own rule (space), not the entropy model's.
      expect(await page.inputValue('#mode')).toBe('space');
      expect(await page.textContent('#patchinfo')).toMatch(/; space\)$/);
      await page.fill('#maxBytes', '8');
      await page.click('#generate');
      await page.waitForFunction(() => document.getElementById('geninfo')!.dataset['state'] !== undefined, null, { timeout: 120_000 });
      expect(await page.getAttribute('#geninfo', 'data-state'), (await page.textContent('#geninfo')) ?? '').toBe('done');
      expect(await page.textContent('#geninfo')).toMatch(/^8 bytes, \d+ patches/);
      await page.screenshot({ path: `${SCREENSHOTS}/page-trained-blt.png`, fullPage: true });
      // Back to the training tab: the saved model can be deleted.
      await page.click('#tabTrain');
      expect(await page.isVisible('#train')).toBe(true);
      await page.click('#savedModels li[data-id] button[data-action=delete]');
      await page.waitForFunction(() => document.getElementById('savedModels')!.textContent === 'none yet', null, { timeout: 30_000 });
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 300_000);

  it('trains on WebGPU in the worker (software adapter here)', async () => {
    // SwiftShader runs WebGPU on the CPU at ~0.4 GFLOP/s: two small steps prove the path.
    const page = await demo.browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    try {
      await startTraining(page, 'entropy', 2, 1, 'webgpu');
      await waitForState(page, ['done'], 240_000);
      expect(await page.textContent('#trainStatus')).toMatch(/^Done: step 2 of 2:.*parameters on WebGPU \((software )?adapter "/);
      expect(await dataNumber(page, 'heldout')).toBeLessThan(await dataNumber(page, 'heldout-before'));
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 300_000);

  it('takes its text from a picked file or a file dropped on the box', async () => {
    const page = await demo.browser.newPage();
    try {
      await page.goto(`${demo.base}#train`);
      await page.setInputFiles('#trainFile', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('héllo '.repeat(100)) });
      await page.waitForFunction(() => document.getElementById('trainTextInfo')!.textContent!.startsWith('training on'));
      expect(await page.textContent('#trainTextInfo')).toBe('training on notes.txt (700 bytes)');
      expect(await page.inputValue('#trainText')).toBe('héllo '.repeat(100));
      // A drop: the browser's DataTransfer with a file, as a drag from the desktop delivers it.
      await page.evaluate(() => {
        const data = new DataTransfer();
        data.items.add(new File([new Uint8Array(300).fill(0x41)], 'dropped.bin'));
        document.getElementById('trainText')!.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
      });
      await page.waitForFunction(() => document.getElementById('trainTextInfo')!.textContent!.includes('dropped.bin'));
      expect(await page.textContent('#trainTextInfo')).toBe('training on dropped.bin (300 bytes)');
      // Typing goes back to the box's text.
      await page.fill('#trainText', 'typed');
      expect(await page.textContent('#trainTextInfo')).toBe('5 bytes of text');
    } finally {
      await page.close();
    }
  }, 60_000);

  it('says what is wrong with too little text, and trains nothing', async () => {
    const page = await demo.browser.newPage();
    try {
      await page.goto(`${demo.base}#train`);
      await page.fill('#trainText', 'too short');
      expect(await page.textContent('#trainTextInfo')).toBe('9 bytes of text');
      await page.selectOption('#trainBackend', 'wasm');
      await page.click('#trainStart');
      await page.waitForFunction(() => document.getElementById('trainStatus')!.dataset['state'] === 'error', null, { timeout: 60_000 });
      expect(await page.textContent('#trainStatus')).toBe('error: the text has 9 bytes; training needs at least 256');
      expect(await page.isDisabled('#trainPause')).toBe(true);
    } finally {
      await page.close();
    }
  }, 120_000);
});
