/**
 * The worker thread of `./entropy-workers.ts` (Node): builds the entropy model from the
 * safetensors bytes it is given, on the backend it is told (the parent's, so that every thread runs
 * the same kernels and returns the same values), then answers `{ id, contexts }` with
 * `{ id, values }` (one Float32Array per context) or `{ id, error }`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type BackendName, initBackend, parseSafetensors } from '@bytelatent/nn';
import { ARGS_METADATA_KEY, EntropyModel, type EntropyModelArgs } from './entropy-model.js';

const port = parentPort;
if (port === null) throw new Error('entropy-worker.js runs as a worker thread of @bytelatent/entropy-patcher');
const { weights, backend } = workerData as { weights: Uint8Array; backend: BackendName };
await initBackend({ backend, nativeMatMul: 'off' });
const file = parseSafetensors(weights);
const model = EntropyModel.fromSafetensors(file, JSON.parse(file.metadata[ARGS_METADATA_KEY]!) as EntropyModelArgs);
port.on('message', (message: { id: number; contexts: Int32Array[] }) => {
  model.contextEntropies(message.contexts).then(
    (values) =>
      port.postMessage(
        { id: message.id, values },
        values.map((v) => v.buffer as ArrayBuffer),
      ),
    (e: unknown) => port.postMessage({ id: message.id, error: e instanceof Error ? e.message : String(e) }),
  );
});
port.postMessage({ ready: true });
