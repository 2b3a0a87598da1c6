/**
 * The training tab: text from the box (typed, pasted or dropped) or a picked file, a model trained
 * on it in a Web Worker (train-worker.ts) with a live curve of bits per byte, pause and resume, and
 * the result saved to IndexedDB or downloaded; saved models can be run in the page or downloaded.
 */
import type { TextTrainerOptions, TrainedModelFile, TrainingRecord } from '@bytelatent/blt';
import type { BrowserBackendChoice } from './engines.js';
import { deleteModel, listModels, loadModel, saveModel, type StoredModel } from './browser-store.js';
import type { SavePurpose, TrainEvent, TrainRequest } from './train-protocol.js';

const element = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const CURVE = { width: 900, height: 220, left: 48, right: 12, top: 10, bottom: 30 } as const;

/** Draws training bits per byte (a line) and held-out bits per byte (dots joined) against the step. */
function drawCurve(records: readonly TrainingRecord[], heldoutBefore: number, steps: number): void {
  const heldout: Array<[number, number]> = [
    ...(Number.isFinite(heldoutBefore) ? [[0, heldoutBefore] as [number, number]] : []),
    ...records.filter((r) => r.heldoutBitsPerByte !== undefined).map((r) => [r.step, r.heldoutBitsPerByte!] as [number, number]),
  ];
  const values = [...records.map((r) => r.bitsPerByte), ...heldout.map(([, v]) => v)];
  const top = Math.max(1, Math.ceil(Math.max(...values, 0)));
  const plotWidth = CURVE.width - CURVE.left - CURVE.right;
  const plotHeight = CURVE.height - CURVE.top - CURVE.bottom;
  const x = (step: number) => CURVE.left + (step / Math.max(1, steps)) * plotWidth;
  const y = (v: number) => CURVE.top + plotHeight - (Math.min(v, top) / top) * plotHeight;
  const parts: string[] = [];
  const yStep = top > 8 ? 2 : 1;
  for (let v = 0; v <= top; v += yStep) {
    parts.push(`<line class="grid" x1="${CURVE.left}" x2="${CURVE.width - CURVE.right}" y1="${y(v)}" y2="${y(v)}"/>`);
    parts.push(`<text x="${CURVE.left - 6}" y="${y(v) + 4}" text-anchor="end">${v}</text>`);
  }
  // Round ticks: a step of 1, 2 or 5 times a power of ten, at most 6 intervals.
  const magnitude = 10 ** Math.floor(Math.log10(Math.max(1, steps / 6)));
  const tick = [1, 2, 5, 10].map((m) => m * magnitude).find((t) => steps / t <= 6)!;
  for (let step = 0; step <= steps; step += tick) {
    parts.push(`<text x="${x(step)}" y="${CURVE.height - 12}" text-anchor="middle">${step}</text>`);
  }
  parts.push(`<text transform="translate(12 ${CURVE.top + plotHeight / 2}) rotate(-90)" text-anchor="middle">bits per byte</text>`);
  parts.push(`<text x="${CURVE.width - CURVE.right}" y="${CURVE.height - 1}" text-anchor="end">step →</text>`);
  parts.push(`<line class="axis" x1="${CURVE.left}" x2="${CURVE.left}" y1="${CURVE.top}" y2="${CURVE.top + plotHeight}"/>`);
  parts.push(
    `<line class="axis" x1="${CURVE.left}" x2="${CURVE.width - CURVE.right}" y1="${CURVE.top + plotHeight}" y2="${CURVE.top + plotHeight}"/>`,
  );
  if (records.length > 0)
    parts.push(
      `<polyline class="train" points="${records.map((r) => `${x(r.step).toFixed(1)},${y(r.bitsPerByte).toFixed(1)}`).join(' ')}" fill="none" stroke="#1f77b4" stroke-width="1.2"/>`,
    );
  if (heldout.length > 0) {
    parts.push(
      `<polyline points="${heldout.map(([s, v]) => `${x(s).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}" fill="none" stroke="#d62728" stroke-width="1.5"/>`,
    );
    parts.push(
      ...heldout.map(
        ([s, v]) =>
          `<circle class="heldout" cx="${x(s).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3" fill="#d62728"><title>step ${s}: ${v.toFixed(3)} bits per byte held out</title></circle>`,
      ),
    );
  }
  parts.push(`<text x="${CURVE.width - CURVE.right - 4}" y="${CURVE.top + 12}" text-anchor="end" fill="#1f77b4">training batches</text>`);
  parts.push(`<text x="${CURVE.width - CURVE.right - 4}" y="${CURVE.top + 26}" text-anchor="end" fill="#d62728">held-out text</text>`);
  const svg = element('lossCurve');
  svg.setAttribute('viewBox', `0 0 ${CURVE.width} ${CURVE.height}`);
  svg.innerHTML = parts.join('');
}

function download(file: Uint8Array, name: string): void {
  const url = URL.createObjectURL(new Blob([file as BlobPart], { type: 'application/octet-stream' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export interface TrainTabHooks {
  /** Runs a saved model in the page (the patching and generation tab). */
  run(model: StoredModel): Promise<void>;
}

/** Wires the training tab. */
export function setUpTrainTab(hooks: TrainTabHooks): void {
  const textBox = element<HTMLTextAreaElement>('trainText');
  const status = element('trainStatus');
  const startButton = element<HTMLButtonElement>('trainStart');
  const pauseButton = element<HTMLButtonElement>('trainPause');
  const saveButton = element<HTMLButtonElement>('trainSave');
  const downloadButton = element<HTMLButtonElement>('trainDownload');
  /** Bytes of a dropped or picked file (any bytes: the models read bytes); the box's text otherwise. */
  let fileBytes: { name: string; bytes: Uint8Array } | undefined;
  let worker: Worker | undefined;
  let records: TrainingRecord[] = [];
  let heldoutBefore = Number.NaN;
  let steps = 0;
  let paused = false;
  let describeRun = '';

  const setState = (state: string, text: string) => {
    status.dataset['state'] = state;
    status.textContent = text;
  };
  const textInfo = () => {
    const info = element('trainTextInfo');
    info.textContent = fileBytes
      ? `training on ${fileBytes.name} (${fileBytes.bytes.length} bytes)`
      : `${new TextEncoder().encode(textBox.value).length} bytes of text`;
  };
  const useFile = async (file: File) => {
    fileBytes = { name: file.name, bytes: new Uint8Array(await file.arrayBuffer()) };
    // Show the text when it is text; the bytes are what trains either way.
    textBox.value = new TextDecoder().decode(fileBytes.bytes.subarray(0, 200_000));
    textInfo();
  };
  textBox.addEventListener('input', () => {
    fileBytes = undefined;
    textInfo();
  });
  textBox.addEventListener('dragover', (e) => {
    e.preventDefault();
    textBox.classList.add('dragging');
  });
  textBox.addEventListener('dragleave', () => textBox.classList.remove('dragging'));
  textBox.addEventListener('drop', (e) => {
    e.preventDefault();
    textBox.classList.remove('dragging');
    const file = e.dataTransfer?.files[0];
    if (file) void useFile(file);
  });
  element<HTMLInputElement>('trainFile').addEventListener('change', (e) => {
    const file = (e.target as HTMLInputElement).files?.[0];
    if (file) void useFile(file);
  });
  textInfo();

  const send = (request: TrainRequest) => worker!.postMessage(request);
  const progress = () => {
    const last = records.at(-1);
    const held = [...records].reverse().find((r) => r.heldoutBitsPerByte !== undefined)?.heldoutBitsPerByte;
    return last
      ? `step ${last.step} of ${steps}: ${last.bitsPerByte.toFixed(3)} bits per byte on the batch, ` +
          `${(held ?? heldoutBefore).toFixed(3)} held out (${heldoutBefore.toFixed(3)} before training), ${Math.round(last.bytesPerSecond)} bytes/s`
      : `measuring the held-out text before the first step…`;
  };

  const onEvent = async (event: TrainEvent) => {
    switch (event.type) {
      case 'started':
        steps = event.steps;
        describeRun = `${event.parameters.toLocaleString('en')} parameters on ${event.backend}; ${event.trainBytes} bytes to train on, ${event.heldoutBytes} held out`;
        setState('running', `Training in this browser: ${describeRun}. ${progress()}`);
        pauseButton.disabled = false;
        saveButton.disabled = false;
        downloadButton.disabled = false;
        break;
      case 'step':
        records.push(event.record);
        heldoutBefore = event.heldoutBefore;
        status.dataset['step'] = String(event.record.step);
        if (event.record.heldoutBitsPerByte !== undefined) status.dataset['heldout'] = String(event.record.heldoutBitsPerByte);
        status.dataset['heldoutBefore'] = String(heldoutBefore);
        // A step that was in flight when the pause was asked for still lands.
        if (paused) setState('paused', `Paused: ${progress()}`);
        else setState('running', `Training in this browser: ${describeRun}. ${progress()}`);
        drawCurve(records, heldoutBefore, steps);
        break;
      case 'paused':
        setState('paused', `Paused: ${progress()}`);
        break;
      case 'finished':
        paused = false;
        pauseButton.disabled = true;
        startButton.textContent = 'Start again';
        setState('done', `Done: ${progress()}. Trained in this browser: ${describeRun}.`);
        break;
      case 'saved':
        await onSaved(event.model, event.purpose);
        break;
      case 'error':
        setState('error', `error: ${event.message}`);
        pauseButton.disabled = true;
        break;
    }
  };

  const onSaved = async (model: TrainedModelFile, purpose: SavePurpose) => {
    if (purpose === 'download') {
      download(model.file, model.fileName);
      status.dataset['saved'] = 'download';
      return;
    }
    const name = `${model.kind === 'blt' ? 'BLT' : 'entropy model'}, ${model.steps} steps, ${model.heldoutBitsPerByte.toFixed(3)} bits/byte held out`;
    await saveModel({ ...model, name, savedAt: new Date().toISOString() });
    status.dataset['saved'] = 'browser';
    await renderSaved();
  };

  startButton.addEventListener('click', () => {
    const text = fileBytes?.bytes ?? textBox.value;
    worker?.terminate();
    worker = new Worker(new URL('./train-worker.ts', import.meta.url), { type: 'module' });
    worker.onmessage = (e: MessageEvent<TrainEvent>) =>
      void onEvent(e.data).catch((error: unknown) => setState('error', `error: ${(error as Error).message}`));
    worker.onerror = (e) => setState('error', `error: the training worker failed (${e.message})`);
    records = [];
    heldoutBefore = Number.NaN;
    paused = false;
    // Enabled again once the worker has a model ('started').
    pauseButton.disabled = true;
    saveButton.disabled = true;
    downloadButton.disabled = true;
    pauseButton.textContent = 'Pause';
    delete status.dataset['step'];
    delete status.dataset['heldout'];
    delete status.dataset['saved'];
    const number = (id: string, fallback: number) => {
      const value = Number(element<HTMLInputElement>(id).value);
      return Number.isFinite(value) && value > 0 ? value : fallback;
    };
    const options: TextTrainerOptions = {
      kind: element<HTMLSelectElement>('trainKind').value as TextTrainerOptions['kind'],
      text,
      steps: Math.round(number('trainSteps', 200)),
      lr: number('trainLr', 3e-3),
      batchSize: Math.round(number('trainBatch', 8)),
    };
    steps = options.steps;
    drawCurve([], Number.NaN, steps);
    setState('starting', 'starting the training worker…');
    send({
      type: 'start',
      options,
      backend: element<HTMLSelectElement>('trainBackend').value as BrowserBackendChoice,
      wasmPaths: new URL('wasm/', document.baseURI).href,
    });
  });
  pauseButton.addEventListener('click', () => {
    paused = !paused;
    pauseButton.textContent = paused ? 'Resume' : 'Pause';
    send({ type: paused ? 'pause' : 'resume' });
    if (!paused) setState('running', `Training in this browser: ${describeRun}. ${progress()}`);
  });
  saveButton.addEventListener('click', () => send({ type: 'save', purpose: 'browser' }));
  downloadButton.addEventListener('click', () => send({ type: 'save', purpose: 'download' }));

  const list = element('savedModels');
  const renderSaved = async () => {
    let models: StoredModel[];
    try {
      models = await listModels();
    } catch (e) {
      list.replaceChildren(
        Object.assign(document.createElement('li'), { textContent: `IndexedDB is not available here: ${(e as Error).message}` }),
      );
      return;
    }
    if (models.length === 0) {
      list.replaceChildren(Object.assign(document.createElement('li'), { className: 'muted', textContent: 'none yet' }));
      return;
    }
    list.replaceChildren(
      ...models.map((m) => {
        const li = document.createElement('li');
        li.dataset['id'] = String(m.id);
        li.dataset['kind'] = m.kind;
        li.append(`${m.name} (${m.parameters.toLocaleString('en')} parameters, saved ${new Date(m.savedAt).toLocaleString()})`);
        const button = (label: string, action: () => Promise<void>) => {
          const b = document.createElement('button');
          b.textContent = label;
          b.dataset['action'] = label.toLowerCase();
          b.addEventListener('click', () => void action().catch((e: unknown) => setState('error', `error: ${(e as Error).message}`)));
          li.append(b);
        };
        button('Run', async () => {
          const stored = await loadModel(m.id!);
          if (stored) await hooks.run(stored);
        });
        button('Download', async () => {
          const stored = await loadModel(m.id!);
          if (stored) download(stored.file, stored.fileName);
        });
        button('Delete', async () => {
          await deleteModel(m.id!);
          await renderSaved();
        });
        return li;
      }),
    );
  };
  void renderSaved();
}
