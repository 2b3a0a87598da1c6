/**
 * The page: the paper's patching figure, live (patches coloured, per-byte entropy over the bytes
 * with the threshold line and patch boundaries; threshold and rule as controls), the BLT's bits per
 * byte as a heat strip, and streaming generation with patch starts marked and sampling controls. `?run=server` (default)
 * calls the API; `?run=browser&backend=auto|webgpu|wasm|cpu` runs the same models in the page.
 */
import type { PatchResponse, ScoreResponse } from '../src/model-service.js';
import {
  createBrowserEngine,
  createModelFileEngine,
  createPickedFolderEngine,
  createServerEngine,
  type BrowserBackendChoice,
  type Engine,
  type PatchChoice,
} from './engines.js';
import { DEFAULT_SAMPLING } from '../src/sampling-defaults.js';
import { setUpTrainTab } from './train-tab.js';
import type { StoredModel } from './browser-store.js';

const element = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const BACKENDS: readonly BrowserBackendChoice[] = ['auto', 'webgpu', 'wasm', 'cpu'];
const PLOT = { width: 900, height: 200, left: 44, right: 8, top: 8, labels: 34 } as const;

/** One label per byte: the character that starts at it, `·` for the continuation bytes of a character, `␣` and `⏎` for blanks. */
function byteLabels(text: string): string[] {
  const labels: string[] = [];
  for (const ch of text) {
    const size = new TextEncoder().encode(ch).length;
    labels.push(ch === ' ' ? '␣' : ch === '\n' ? '⏎' : ch === '\t' ? '⇥' : ch);
    for (let k = 1; k < size; k++) labels.push('·');
  }
  return labels;
}

/**
 * The paper's patching figure: entropy of each next byte (y, nats) over the bytes (x, the characters
 * written under their points), the threshold as a dashed line, and a green line where each patch starts.
 */
function drawFigure(text: string, r: PatchResponse): void {
  const n = Math.max(r.entropies.length, 1);
  const labels = byteLabels(text);
  const plotWidth = PLOT.width - PLOT.left - PLOT.right;
  const plotHeight = PLOT.height - PLOT.top - PLOT.labels;
  const top = Math.ceil(Math.max(r.threshold ?? 0, ...r.entropies, 1));
  const x = (i: number) => PLOT.left + (i + 0.5) * (plotWidth / n);
  const y = (v: number) => PLOT.top + plotHeight - (v / top) * plotHeight;
  const parts: string[] = [];
  for (let v = 0; v <= top; v++) {
    parts.push(`<line class="grid" x1="${PLOT.left}" x2="${PLOT.width - PLOT.right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}"/>`);
    parts.push(`<text x="${PLOT.left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v}</text>`);
  }
  parts.push(
    `<text transform="translate(12 ${(PLOT.top + plotHeight / 2).toFixed(0)}) rotate(-90)" text-anchor="middle">entropy (nats)</text>`,
  );
  parts.push(`<line class="axis" x1="${PLOT.left}" x2="${PLOT.left}" y1="${PLOT.top}" y2="${PLOT.top + plotHeight}"/>`);
  parts.push(
    `<line class="axis" x1="${PLOT.left}" x2="${PLOT.width - PLOT.right}" y1="${PLOT.top + plotHeight}" y2="${PLOT.top + plotHeight}"/>`,
  );
  // Patch starts (after the first), through the plot and the characters.
  for (const p of r.patches.slice(1)) {
    const at = (x(p.start) + x(p.start - 1)) / 2;
    parts.push(
      `<line class="boundary" data-start="${p.start}" x1="${at.toFixed(1)}" x2="${at.toFixed(1)}" y1="${PLOT.top}" y2="${PLOT.height - 4}"/>`,
    );
  }
  parts.push(
    `<polyline points="${r.entropies.map((e, i) => `${x(i).toFixed(1)},${y(e).toFixed(1)}`).join(' ')}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>`,
  );
  const above = (e: number) => r.threshold !== null && e > r.threshold;
  parts.push(
    ...r.entropies.map(
      (e, i) =>
        `<circle cx="${x(i).toFixed(1)}" cy="${y(e).toFixed(1)}" r="2.5" fill="${above(e) ? '#d62728' : '#1f77b4'}"><title>byte ${i} ${labels[i] ?? ''}: ${e} nats</title></circle>`,
    ),
  );
  if (r.threshold !== null) {
    parts.push(
      `<line data-testid="threshold-line" x1="${PLOT.left}" x2="${PLOT.width - PLOT.right}" y1="${y(r.threshold).toFixed(1)}" y2="${y(r.threshold).toFixed(1)}" stroke="#d62728" stroke-dasharray="6 4"/>`,
    );
  }
  // The characters under their points; with many bytes, every k-th so that they stay readable.
  const every = Math.max(1, Math.ceil(n / (plotWidth / 8)));
  for (let i = 0; i < n; i += every) {
    parts.push(
      `<text class="byte" x="${x(i).toFixed(1)}" y="${PLOT.height - PLOT.labels + 16}" text-anchor="middle">${escapeXml(labels[i] ?? '')}</text>`,
    );
  }
  parts.push(`<text x="${PLOT.width - PLOT.right}" y="${PLOT.height - 2}" text-anchor="end">bytes →</text>`);
  const svg = element('plot');
  svg.setAttribute('viewBox', `0 0 ${PLOT.width} ${PLOT.height}`);
  svg.innerHTML = parts.join('');
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}

function renderPatches(text: string, r: PatchResponse): void {
  element('patches').replaceChildren(
    ...r.patches.map((p, i) => {
      const span = document.createElement('span');
      span.className = `p${i % 2}`;
      span.textContent = p.text;
      return span;
    }),
  );
  drawFigure(text, r);
  const rule =
    r.mode === 'entropy' || r.mode === 'monotonic' || r.mode === 'combined'
      ? `${r.mode}, threshold ${r.threshold?.toFixed(2) ?? '—'} nats${r.mode === 'combined' ? `, rise ${r.thresholdAdd?.toFixed(2) ?? '—'} nats` : ''}`
      : r.mode;
  element('patchinfo').textContent = `${r.patches.length} patches over ${r.bytes} bytes (mean ${r.meanPatchSize} bytes; ${rule})`;
}

/** Per-byte bits as a heat strip: each character tinted by the bits its bytes cost, white 0 to red >= 8. */
function renderBits(text: string, r: ScoreResponse): void {
  const spans: HTMLSpanElement[] = [];
  let at = 0;
  for (const ch of text) {
    const size = new TextEncoder().encode(ch).length;
    const bits = r.bits.slice(at, at + size).reduce((a, b) => a + b, 0);
    at += size;
    const heat = Math.min(1, bits / 8);
    const span = document.createElement('span');
    span.textContent = ch;
    span.title = `${bits.toFixed(2)} bits`;
    span.style.background = `rgb(255, ${Math.round(255 - heat * 216)}, ${Math.round(255 - heat * 215)})`;
    spans.push(span);
  }
  element('bits').replaceChildren(...spans);
  element('bitsinfo').textContent = `${r.bitsPerByte.toFixed(3)} bits per byte over ${r.bytes} bytes`;
}

async function main(): Promise<void> {
  // The tabs: patching and generation, and training.
  const tabs = [
    [element('tabExplore'), element('explore')],
    [element('tabTrain'), element('train')],
  ] as const;
  const showTab = (index: number) =>
    tabs.forEach(([tab, panel], i) => {
      tab.setAttribute('aria-selected', String(i === index));
      panel.hidden = i !== index;
    });
  tabs.forEach(([tab], i) => tab.addEventListener('click', () => showTab(i)));
  if (location.hash === '#train') showTab(1);
  // Training needs no running model: the tab works while the models load, and if they cannot.
  let runSavedModel: (model: StoredModel) => Promise<void> = async () => {
    throw new Error('no model runs in the page yet (see the status line at the top)');
  };
  setUpTrainTab({ run: (model) => runSavedModel(model) });

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

  status.title = engine.detail;

  const modeSelect = element<HTMLSelectElement>('mode');
  const thresholdInput = element<HTMLInputElement>('threshold');
  const patchSizeInput = element<HTMLInputElement>('patchSize');
  const thresholdAddInput = element<HTMLInputElement>('thresholdAdd');
  // Until the user touches a control, the model's own patching settings (what it was trained with).
  let choice: PatchChoice | undefined;
  const readChoice = (): PatchChoice => {
    const mode = modeSelect.value as NonNullable<PatchChoice['mode']>;
    const entropyRule = mode === 'entropy' || mode === 'monotonic' || mode === 'combined';
    element('thresholdLabel').hidden = !entropyRule;
    element('thresholdAddLabel').hidden = mode !== 'combined';
    element('patchSizeLabel').hidden = mode !== 'static';
    element('thresholdValue').textContent = Number(thresholdInput.value).toFixed(2);
    element('thresholdAddValue').textContent = Number(thresholdAddInput.value).toFixed(2);
    return {
      mode,
      ...(entropyRule ? { threshold: Number(thresholdInput.value) } : {}),
      ...(mode === 'combined' ? { thresholdAdd: Number(thresholdAddInput.value) } : {}),
      ...(mode === 'static' ? { patchSize: Number(patchSizeInput.value) || 4 } : {}),
    };
  };

  let latest = 0;
  const updatePatches = async () => {
    const ticket = ++latest;
    const text = element<HTMLTextAreaElement>('text').value;
    if (!text) return;
    try {
      const r = await engine.patch(text, choice);
      if (ticket !== latest) return;
      if (choice === undefined) {
        // Show the model's own settings on the controls.
        if ([...modeSelect.options].some((o) => o.value === r.mode)) modeSelect.value = r.mode;
        if (r.threshold !== null) thresholdInput.value = String(r.threshold);
        if (r.thresholdAdd !== null) thresholdAddInput.value = String(r.thresholdAdd);
        readChoice();
      }
      renderPatches(text, r);
      element('patches').dataset['ticket'] = String(ticket);
    } catch (e) {
      element('patchinfo').textContent = `error: ${(e as Error).message}`;
    }
  };
  const onControl = () => {
    choice = readChoice();
    void updatePatches();
  };
  modeSelect.addEventListener('change', onControl);
  thresholdInput.addEventListener('input', onControl);
  patchSizeInput.addEventListener('input', onControl);
  thresholdAddInput.addEventListener('input', onControl);

  let latestScore = 0;
  const updateBits = async () => {
    const ticket = ++latestScore;
    const text = element<HTMLTextAreaElement>('text').value;
    if (!text) return;
    try {
      const r = await engine.score(text);
      if (ticket === latestScore) renderBits(text, r);
    } catch (e) {
      element('bitsinfo').textContent = `error: ${(e as Error).message}`;
    }
  };

  element<HTMLInputElement>('temperature').value = String(DEFAULT_SAMPLING.temperature);
  element<HTMLInputElement>('topP').value = String(DEFAULT_SAMPLING.topP);
  const generateButton = element<HTMLButtonElement>('generate');
  const generate = async () => {
    const out = element('generated');
    const info = element('geninfo');
    out.replaceChildren();
    delete info.dataset['state'];
    info.textContent = 'generating…';
    generateButton.disabled = true;
    const number = (id: string, fallback: number) => {
      const value = element<HTMLInputElement>(id).value.trim();
      return value === '' || !Number.isFinite(Number(value)) ? fallback : Number(value);
    };
    // An empty seed draws a new one each time (shown below, to reproduce a generation).
    const seed = number('seed', Math.floor(Math.random() * 2 ** 32));
    const stop = element<HTMLInputElement>('stop').value.replace(/\\n/g, '\n');
    try {
      const done = await engine.generate(
        {
          prompt: element<HTMLTextAreaElement>('prompt').value,
          maxBytes: number('maxBytes', 120),
          temperature: number('temperature', DEFAULT_SAMPLING.temperature),
          topK: number('topK', 0),
          topP: number('topP', DEFAULT_SAMPLING.topP),
          seed,
          stop: stop ? [stop] : [],
        },
        (chunk) => {
          const span = document.createElement('span');
          if (chunk.patchStart) span.className = 'start';
          span.textContent = chunk.text;
          out.append(span);
        },
      );
      info.textContent = `${done.bytes} bytes, ${done.patches} patches, ${done.bytesPerSecond} bytes/s (${done.finishReason}; seed ${seed})`;
      info.dataset['state'] = 'done';
    } catch (e) {
      info.textContent = `error: ${(e as Error).message}`;
      info.dataset['state'] = 'error';
    } finally {
      generateButton.disabled = false;
    }
  };

  /** Replaces the running model by one loaded in this browser (a picked folder, a trained model). */
  const replaceEngine = async (load: () => Promise<Engine>, run: string, what: string) => {
    delete status.dataset['state'];
    status.textContent = `loading ${what}…`;
    generateButton.disabled = true;
    try {
      engine = await load();
      status.textContent = engine.description;
      status.title = engine.detail;
      status.dataset['state'] = 'ready';
      status.dataset['run'] = run;
      choice = undefined;
      await updatePatches();
      await updateBits();
    } catch (e) {
      status.textContent = `could not load ${what}: ${(e as Error).message}`;
      status.dataset['state'] = 'error';
    } finally {
      generateButton.disabled = false;
    }
  };

  // A model folder from this computer replaces the running model, in this browser.
  element<HTMLInputElement>('folder').addEventListener('change', (event) => {
    const files = [...((event.target as HTMLInputElement).files ?? [])];
    if (files.length === 0) return;
    const progress = (m: string) => (status.textContent = m);
    void replaceEngine(
      () => createPickedFolderEngine(backendSelect.value as BrowserBackendChoice, files, progress),
      'folder',
      'the folder',
    );
  });

  // A model saved in the training tab replaces the running model, in this browser.
  runSavedModel = async (model) => {
    showTab(0);
    const progress = (m: string) => (status.textContent = m);
    await replaceEngine(
      () => createModelFileEngine(backendSelect.value as BrowserBackendChoice, model.file, model.name, progress),
      'trained',
      `your ${model.kind === 'blt' ? 'BLT' : 'entropy model'}`,
    );
  };

  // Typing re-patches at once; scoring with the BLT waits for a pause.
  let scoreTimer: ReturnType<typeof setTimeout> | undefined;
  element('text').addEventListener('input', () => {
    void updatePatches();
    clearTimeout(scoreTimer);
    scoreTimer = setTimeout(() => void updateBits(), 400);
  });
  generateButton.addEventListener('click', () => void generate());
  generateButton.disabled = false;
  await updatePatches();
  await updateBits();
}

void main();
