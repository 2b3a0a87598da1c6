/**
 * The training tab's Web Worker: trains a TextTrainer on its own tfjs (WebGPU, wasm or cpu), one
 * step at a time, so that the page stays responsive and can pause, resume and save between steps.
 */
// Gradient functions, registered straight from tfjs-core's ES modules: a bundler resolves their
// extensionless imports, which Node cannot (Node code imports `@bytelatent/nn/gradients`, the tfjs
// umbrella, instead). The umbrella would add webgl, layers and converter: about 3 MB more here.
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@bytelatent/nn';
import { TextTrainer } from '@bytelatent/blt';
import type { TrainEvent, TrainRequest } from './train-protocol.js';

const post = (event: TrainEvent, transfer: Transferable[] = []) => (self as unknown as Worker).postMessage(event, transfer);

let trainer: TextTrainer | undefined;
let running = false;
let heldoutBefore = Number.NaN;
/** The step being computed: a save waits for it, so that the file holds whole updates. */
let inFlight: Promise<unknown> = Promise.resolve();
/** A save in progress: the loop waits for it, so that the weights do not change under it. */
let saving: Promise<unknown> | undefined;
let loops = 0;
/** Every request runs after the previous one (and after the step in flight). */
let queue: Promise<void> = Promise.resolve();

/** Steps until paused or done, yielding to the message queue between steps. */
async function train(): Promise<void> {
  // A newer loop (a resume, a new start) makes this one stop.
  const mine = ++loops;
  running = true;
  while (running && mine === loops && trainer && !trainer.done) {
    if (saving) await saving;
    // A resume right after a pause: the old loop's last step may still be running.
    await inFlight;
    const current = trainer;
    if (!running || mine !== loops || current.done) break;
    const step = current.trainStep();
    inFlight = step.catch(() => undefined);
    const record = await step;
    if (Number.isNaN(heldoutBefore)) heldoutBefore = current.heldoutBitsPerByte;
    post({ type: 'step', record, heldoutBefore });
    // Let 'pause' and 'save' in.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  if (mine !== loops) return;
  if (trainer?.done) post({ type: 'finished', step: trainer.step });
  running = false;
}

async function handle(request: TrainRequest): Promise<void> {
  switch (request.type) {
    case 'start': {
      running = false;
      await inFlight;
      trainer?.dispose();
      trainer = undefined;
      heldoutBefore = Number.NaN;
      tf.env().set('PROD', true);
      const info = await initBackend({
        backend: request.backend,
        wasmPaths: request.wasmPaths,
        allowSoftwareGpu: request.backend === 'webgpu',
      });
      trainer = new TextTrainer(request.options);
      const adapter = info.adapter ? ` (${info.software ? 'software ' : ''}adapter "${info.adapter}")` : '';
      post({
        type: 'started',
        backend: `${info.name === 'webgpu' ? 'WebGPU' : info.name}${adapter}`,
        parameters: trainer.parameters,
        trainBytes: trainer.trainBytes,
        heldoutBytes: trainer.heldoutBytes,
        steps: trainer.steps,
      });
      void train().catch(fail);
      return;
    }
    case 'pause':
      running = false;
      post({ type: 'paused', step: trainer?.step ?? 0 });
      return;
    case 'resume':
      if (trainer && !running && !trainer.done) void train().catch(fail);
      return;
    case 'save': {
      if (!trainer) throw new Error('nothing is training: start first');
      const current = trainer;
      const saved = inFlight.then(() => current.save());
      saving = saved.catch(() => undefined);
      try {
        const model = await saved;
        post({ type: 'saved', model, purpose: request.purpose }, [model.file.buffer]);
      } finally {
        saving = undefined;
      }
      return;
    }
  }
}

function fail(e: unknown): void {
  running = false;
  post({ type: 'error', message: e instanceof Error ? e.message : String(e) });
}

self.onmessage = (event: MessageEvent<TrainRequest>) => {
  queue = queue.then(() => handle(event.data)).catch(fail);
};
