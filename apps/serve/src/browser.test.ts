// The web page in a real browser: Debian's Chromium driven by playwright-core (never a downloaded
// browser), headless, against this server on 127.0.0.1 with the shipped models. Both ways of
// running the model are exercised: through the API, and in the page on tfjs wasm and WebGPU
// (SwiftShader here: slow, so the WebGPU generation is short). Screenshots go to test-output/.
import { describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { SCREENSHOTS, useDemoPage } from './test-helpers.js';

const demo = useDemoPage();
const PROMPT = 'Alice was beginning to';

interface PageRun {
  status: string;
  patches: string[];
  plotPoints: number;
  generated: string;
  /** How many separate DOM updates the generated text arrived in. */
  updates: number;
  info: string;
}

async function runPage(query: string, maxBytes: number, screenshot: string): Promise<PageRun> {
  const page: Page = await demo.browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    await page.goto(demo.base + query);
    await page.waitForFunction(() => document.getElementById('status')!.dataset['state'] !== undefined, null, { timeout: 120_000 });
    const status = (await page.textContent('#status')) ?? '';
    expect(await page.getAttribute('#status', 'data-state'), status).toBe('ready');
    await page.waitForFunction(() => document.querySelectorAll('#patches span').length > 1, null, { timeout: 120_000 });
    const patches = await page.locator('#patches span').allTextContents();
    const plotPoints = await page.locator('#plot circle').count();
    // Count the DOM updates of the output while it streams in.
    await page.evaluate(() => {
      const w = window as unknown as { updates: number };
      w.updates = 0;
      new MutationObserver(() => (w.updates += 1)).observe(document.getElementById('generated')!, { childList: true });
    });
    await page.fill('#prompt', PROMPT);
    await page.fill('#maxBytes', String(maxBytes));
    await page.fill('#temperature', '0');
    await page.click('#generate');
    await page.waitForFunction(() => document.getElementById('geninfo')!.dataset['state'] !== undefined, null, { timeout: 150_000 });
    const info = (await page.textContent('#geninfo')) ?? '';
    expect(await page.getAttribute('#geninfo', 'data-state'), info).toBe('done');
    await page.screenshot({ path: `${SCREENSHOTS}/${screenshot}.png`, fullPage: true });
    expect(errors).toEqual([]);
    return {
      status,
      patches,
      plotPoints,
      generated: (await page.textContent('#generated')) ?? '',
      updates: await page.evaluate(() => (window as unknown as { updates: number }).updates),
      info,
    };
  } finally {
    await page.close();
  }
}

describe.skipIf(!demo.available)('the web page in Chromium', () => {
  let server: PageRun;

  it('renders patches and streams a generation through the API', async () => {
    server = await runPage('', 24, 'page-server');
    expect(server.status).toMatch(/on the server \(backend wasm\)/);
    const text = await (await fetch(demo.base)).text();
    const sample = /<textarea id="text"[^>]*>([^<]*)</.exec(text)![1]!;
    expect(server.patches.join('')).toBe(sample);
    // One point per byte in the entropy plot.
    expect(server.plotPoints).toBe(new TextEncoder().encode(sample).length);
    expect(server.info).toMatch(/^24 bytes, \d+ patches/);
    expect(new TextEncoder().encode(server.generated).length).toBe(24);
    // MutationObserver callbacks batch the appends of one task: several callbacks mean several arrivals.
    expect(server.updates).toBeGreaterThan(2);
  }, 180_000);

  it('re-patches live from the threshold slider and the rule; shows the BLT bits per byte as a heat strip', async () => {
    const page: Page = await demo.browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    try {
      await page.goto(demo.base);
      await page.waitForFunction(() => document.querySelectorAll('#patches span').length > 1, null, { timeout: 120_000 });
      const health = (await (await fetch(`${demo.base}health`)).json()) as { models: { patcher: { defaults: { threshold: number } } } };
      // The controls start at the model's own settings.
      expect(Number(await page.inputValue('#threshold'))).toBeCloseTo(health.models.patcher.defaults.threshold, 6);
      expect(await page.inputValue('#mode')).toBe('entropy');
      const sample = await page.inputValue('#text');
      const patchesNow = () => page.locator('#patches span').allTextContents();
      const initial = await patchesNow();
      expect(await page.locator('#plot line.boundary').count()).toBe(initial.length - 1);
      expect(await page.locator('#plot text.byte').count()).toBeGreaterThan(50); // the characters under the curve
      // The heat strip: one tinted span per character, and the figure's bits per byte.
      await page.waitForFunction(() => document.getElementById('bitsinfo')!.textContent!.includes('bits per byte'), null, {
        timeout: 60_000,
      });
      expect(await page.locator('#bits span').count()).toBe([...sample].length);
      expect(await page.textContent('#bitsinfo')).toMatch(/^\d+\.\d{3} bits per byte over \d+ bytes$/);
      await page.screenshot({ path: `${SCREENSHOTS}/page-patching-default.png`, fullPage: true });
      // A lower threshold: more patches, re-drawn at once.
      const moved = async (selector: string, value: string) => {
        const before = await page.getAttribute('#patches', 'data-ticket');
        await page.$eval(
          selector,
          (el, v) => {
            (el as HTMLInputElement).value = v;
            el.dispatchEvent(new Event(el.tagName === 'SELECT' ? 'change' : 'input', { bubbles: true }));
          },
          value,
        );
        await page.waitForFunction((t) => document.getElementById('patches')!.dataset['ticket'] !== t, before, { timeout: 30_000 });
      };
      await moved('#threshold', '1');
      const lower = await patchesNow();
      expect(lower.length).toBeGreaterThan(initial.length);
      expect(lower.join('')).toBe(sample);
      expect(await page.textContent('#patchinfo')).toMatch(/entropy, threshold 1\.00 nats/);
      await page.screenshot({ path: `${SCREENSHOTS}/page-patching-threshold-1.png`, fullPage: true });
      // The space rule (the reference's: a patch starts at each space-like byte after a word); no threshold control.
      await moved('#mode', 'space');
      expect(await page.isHidden('#thresholdAddLabel')).toBe(true);
      const api = async (body: object) =>
        (
          (await (
            await fetch(`${demo.base}v1/patch`, {
              method: 'POST',
              headers: { 'Content-Type': 'application/json' },
              body: JSON.stringify({ text: sample, ...body }),
            })
          ).json()) as { patches: Array<{ text: string }> }
        ).patches.map((p) => p.text);
      expect(await patchesNow()).toEqual(await api({ mode: 'space' }));
      expect(await patchesNow()).not.toEqual(lower);
      expect(await page.isHidden('#thresholdLabel')).toBe(true);
      // The combined rule: the threshold, and a rise over the previous byte's entropy.
      await moved('#mode', 'combined');
      expect(await page.isVisible('#thresholdAddLabel')).toBe(true);
      await moved('#thresholdAdd', '0.3');
      const combined = await patchesNow();
      expect(combined).toEqual(await api({ mode: 'combined', threshold: 1, thresholdAdd: 0.3 }));
      expect(await page.textContent('#patchinfo')).toMatch(/combined, threshold 1\.00 nats, rise 0\.30 nats/);
      await page.screenshot({ path: `${SCREENSHOTS}/page-patching-combined.png`, fullPage: true });
      await moved('#mode', 'static');
      expect(await patchesNow()).toEqual(await api({ mode: 'static', patchSize: 4 }));
      expect(await page.isVisible('#patchSizeLabel')).toBe(true);
      await page.screenshot({ path: `${SCREENSHOTS}/page-patching-static.png`, fullPage: true });
      // The static rule's size.
      await moved('#patchSize', '6');
      expect(await patchesNow()).toEqual(await api({ mode: 'static', patchSize: 6 }));
      expect(await page.textContent('#patchinfo')).toMatch(/mean [\d.]+ bytes; static\)$/);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 180_000);

  it('sampling controls: a seed repeats a generation, top-k 1 is greedy, a stop string ends it; the run choice reloads in the browser', async () => {
    const page: Page = await demo.browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    try {
      await page.goto(demo.base);
      await page.waitForFunction(() => document.getElementById('status')!.dataset['state'] === 'ready', null, { timeout: 120_000 });
      const generate = async () => {
        await page.click('#generate');
        await page.waitForFunction(() => document.getElementById('geninfo')!.dataset['state'] !== undefined, null, { timeout: 120_000 });
        const info = (await page.textContent('#geninfo')) ?? '';
        expect(await page.getAttribute('#geninfo', 'data-state'), info).toBe('done');
        return { text: (await page.textContent('#generated')) ?? '', info };
      };
      await page.fill('#prompt', PROMPT);
      await page.fill('#maxBytes', '40');
      await page.fill('#temperature', '1');
      await page.fill('#topP', '0.9');
      await page.fill('#seed', '7');
      const first = await generate();
      expect(first.info).toMatch(/^40 bytes, \d+ patches, .* \(length; seed 7\)$/);
      expect((await generate()).text).toBe(first.text);
      // top-k 1 keeps only the likeliest byte: the greedy bytes of the API at temperature 0.
      const greedy = (
        (await (
          await fetch(`${demo.base}v1/generate`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ prompt: PROMPT, maxBytes: 40, temperature: 0 }),
          })
        ).json()) as { text: string }
      ).text;
      await page.fill('#topK', '1');
      expect((await generate()).text).toBe(greedy);
      // A stop string: the generation ends before its first occurrence.
      const stop = greedy.slice(12, 15);
      await page.fill('#stop', stop);
      const stopped = await generate();
      expect(stopped.text).toBe(greedy.slice(0, greedy.indexOf(stop)));
      expect(stopped.info).toMatch(/\(stop; seed 7\)$/);
      // Running in the browser: the choice reloads the page with the models in it.
      expect(await page.isDisabled('#backend')).toBe(true);
      await Promise.all([page.waitForURL(/\?run=browser&backend=auto$/), page.selectOption('#run', 'browser')]);
      await page.waitForFunction(() => document.getElementById('status')!.dataset['state'] !== undefined, null, { timeout: 120_000 });
      expect(await page.textContent('#status')).toMatch(/^Running in this browser on /);
      expect(await page.isEnabled('#backend')).toBe(true);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 240_000);

  it('downloads the weights once: a second visit revalidates them (304) and reads them from IndexedDB', async () => {
    const context = await demo.browser.newContext();
    const statuses: string[] = [];
    try {
      const visit = async () => {
        const page = await context.newPage();
        await page.goto(`${demo.base}?run=browser&backend=wasm`);
        await page.waitForFunction(() => document.getElementById('status')!.dataset['state'] !== undefined, null, { timeout: 120_000 });
        statuses.push((await page.textContent('#status')) ?? '');
        const weights = await page.evaluate(() =>
          (performance.getEntriesByType('resource') as PerformanceResourceTiming[])
            .filter((e) => e.name.endsWith('.safetensors'))
            .map((e) => ({ name: e.name, transferred: e.transferSize, size: e.encodedBodySize })),
        );
        await page.close();
        return weights;
      };
      const first = await visit();
      expect(first.length).toBeGreaterThanOrEqual(2); // the BLT and its entropy model
      expect(first.reduce((s, e) => s + e.transferred, 0)).toBeGreaterThan(5e6);
      const second = await visit();
      expect(second.map((e) => e.name).sort()).toEqual(first.map((e) => e.name).sort());
      // Only headers cross the wire (a 304), the bodies come from IndexedDB.
      for (const e of second) expect(e.transferred, e.name).toBeLessThan(2000);
      // The page says where the weights came from: the network, then IndexedDB.
      expect(statuses[0]).toMatch(/\(6\.\d MB of weights downloaded\)/);
      expect(statuses[1]).toMatch(/\(6\.\d MB of weights from this browser's cache\)/);
    } finally {
      await context.close();
    }
  }, 180_000);

  it('runs the same models in the page on wasm, with the same patches and greedy bytes', async () => {
    const page = await runPage('?run=browser&backend=wasm', 24, 'page-browser-wasm');
    expect(page.status).toMatch(
      /^Running in this browser on wasm; hub-layout folder loaded \(6\.\d MB of weights (downloaded|from this browser's cache)\) in \d+ ms\.$/,
    );
    expect(page.patches).toEqual(server.patches);
    expect(page.generated).toBe(server.generated);
    expect(page.updates).toBeGreaterThan(2);
  }, 180_000);

  it('runs the page on WebGPU (software adapter here)', async () => {
    // SwiftShader runs WebGPU on the CPU at ~0.4 GFLOP/s: two bytes are enough to prove the path.
    const page = await runPage('?run=browser&backend=webgpu', 2, 'page-browser-webgpu');
    expect(page.status).toMatch(/in this browser on WebGPU \((software )?adapter "/);
    expect(page.patches).toEqual(server.patches);
    expect(server.generated.startsWith(page.generated)).toBe(true);
  }, 240_000);
});
