/**
 * The page: the paper's patching figure, live (patches coloured, per-byte entropy with the
 * threshold line), and streaming generation with patch starts marked. `?run=server` (default)
 * calls the API; `?run=browser&backend=auto|webgpu|wasm|cpu` runs the same models in the page.
 */
import type { PatchResponse } from '../src/model-service.js';
import { createBrowserEngine, createServerEngine, type BrowserBackendChoice, type Engine } from './engines.js';
import { DEFAULT_SAMPLING } from '../src/sampling-defaults.js';

const element = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const BACKENDS: readonly BrowserBackendChoice[] = ['auto', 'webgpu', 'wasm', 'cpu'];
const SVG_WIDTH = 900;
const SVG_HEIGHT = 180;

function drawPlot(entropies: readonly number[], threshold: number | null): void {
  const n = Math.max(entropies.length, 1);
  const max = Math.max(threshold ?? 0, ...entropies, 1) * 1.1;
  const x = (i: number) => ((i + 0.5) * (SVG_WIDTH / n)).toFixed(1);
  const y = (v: number) => (SVG_HEIGHT - (v / max) * SVG_HEIGHT).toFixed(1);
  const points = entropies.map((e, i) => `${x(i)},${y(e)}`).join(' ');
  element('plot').innerHTML =
    `<polyline points="${points}" fill="none" stroke="#1f77b4" stroke-width="2"/>` +
    entropies
      .map((e, i) => `<circle cx="${x(i)}" cy="${y(e)}" r="2.5" fill="${threshold !== null && e > threshold ? '#d62728' : '#1f77b4'}"/>`)
      .join('') +
    (threshold !== null
      ? `<line x1="0" x2="${SVG_WIDTH}" y1="${y(threshold)}" y2="${y(threshold)}" stroke="#d62728" stroke-dasharray="6 4"/>`
      : '');
}

function renderPatches(r: PatchResponse): void {
  element('patches').replaceChildren(
    ...r.patches.map((p, i) => {
      const span = document.createElement('span');
      span.className = `p${i % 2}`;
      span.textContent = p.text;
      return span;
    }),
  );
  drawPlot(r.entropies, r.threshold);
  element('patchinfo').textContent =
    `${r.patches.length} patches over ${r.bytes} bytes (mean ${r.meanPatchSize} bytes), threshold ${r.threshold?.toFixed(3) ?? '—'} nats`;
}

async function main(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const run = params.get('run') === 'browser' ? 'browser' : 'server';
  const requested = params.get('backend') as BrowserBackendChoice | null;
  const backend: BrowserBackendChoice = requested && BACKENDS.includes(requested) ? requested : 'auto';
  const runSelect = element<HTMLSelectElement>('run');
  const backendSelect = element<HTMLSelectElement>('backend');
  runSelect.value = run;
  backendSelect.value = backend;
  backendSelect.disabled = run !== 'browser';
  // Switching reloads the page: tensors belong to the backend they were created on.
  const navigate = () => {
    const next = new URLSearchParams({ run: runSelect.value });
    if (runSelect.value === 'browser') next.set('backend', backendSelect.value);
    location.search = next.toString();
  };
  runSelect.addEventListener('change', navigate);
  backendSelect.addEventListener('change', navigate);

  const status = element('status');
  let engine: Engine;
  try {
    engine = run === 'browser' ? await createBrowserEngine(backend, (m) => (status.textContent = m)) : await createServerEngine();
  } catch (e) {
    status.textContent = `could not start: ${(e as Error).message}`;
    status.dataset['state'] = 'error';
    return;
  }
  status.textContent = engine.description;
  status.dataset['state'] = 'ready';
  status.dataset['run'] = run;

  let latest = 0;
  const updatePatches = async () => {
    const ticket = ++latest;
    const text = element<HTMLTextAreaElement>('text').value;
    if (!text) return;
    try {
      const r = await engine.patch(text);
      if (ticket === latest) renderPatches(r);
    } catch (e) {
      element('patchinfo').textContent = `error: ${(e as Error).message}`;
    }
  };

  const generateButton = element<HTMLButtonElement>('generate');
  const generate = async () => {
    const out = element('generated');
    const info = element('geninfo');
    out.replaceChildren();
    delete info.dataset['state'];
    info.textContent = 'generating…';
    generateButton.disabled = true;
    try {
      const done = await engine.generate(
        {
          prompt: element<HTMLTextAreaElement>('prompt').value,
          maxBytes: Number(element<HTMLInputElement>('maxBytes').value),
          temperature: Number(element<HTMLInputElement>('temperature').value),
          topK: 0,
          topP: DEFAULT_SAMPLING.topP,
          seed: 1,
          stop: [],
        },
        (chunk) => {
          const span = document.createElement('span');
          if (chunk.patchStart) span.className = 'start';
          span.textContent = chunk.text;
          out.append(span);
        },
      );
      info.textContent = `${done.bytes} bytes, ${done.patches} patches, ${done.bytesPerSecond} bytes/s (${done.finishReason})`;
      info.dataset['state'] = 'done';
    } catch (e) {
      info.textContent = `error: ${(e as Error).message}`;
      info.dataset['state'] = 'error';
    } finally {
      generateButton.disabled = false;
    }
  };

  element('text').addEventListener('input', () => void updatePatches());
  generateButton.addEventListener('click', () => void generate());
  generateButton.disabled = false;
  await updatePatches();
}

void main();
