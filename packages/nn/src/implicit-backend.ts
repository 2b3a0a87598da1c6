/**
 * What nn says when a model is built before any backend was chosen, and the cpu banner it keeps
 * off our users' consoles. At nn's root so that the layers (which build weights) and the backends
 * (which choose them) both use it without importing each other.
 */
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { engine, getBackend } from '@tensorflow/tfjs-core';

/**
 * tfjs prints a banner on the cpu backend's first tensor in Node (advice to install tfjs-node): the
 * backend was chosen on purpose, the banner would only reach our users' consoles.
 */
export function silenceCpuBanner(backend: MathBackendCPU | undefined): void {
  if (backend !== undefined) (backend as unknown as { firstUse: boolean }).firstUse = false;
}

/** Whether {@link noteImplicitBackend} has spoken in this process. */
let implicitNoted = false;

/**
 * Called where a model's first weight is created without a loader having set the backend up (a
 * constructor, which cannot wait for `initBackend`): when nobody chose a backend and tfjs falls
 * back to its pure-JavaScript cpu backend, says so once, in one console line that names the fix,
 * instead of tfjs's banner about tfjs-node.
 */
export function noteImplicitBackend(): void {
  if (implicitNoted) return;
  const running = engine().backendName as string | undefined | null;
  if (typeof running === 'string' && running !== '') return;
  // Initialises tfjs's default backend, as the first tensor would.
  const backend = engine().backend as unknown;
  if (getBackend() !== 'cpu') return;
  implicitNoted = true;
  silenceCpuBanner(backend as MathBackendCPU);
  console.warn(
    "bytelatent: no backend was chosen, so TensorFlow.js runs this model on its pure-JavaScript cpu backend (about 30x slower than wasm); call nn's initBackend() before building models",
  );
}
