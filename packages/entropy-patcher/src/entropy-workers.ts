/**
 * Worker threads that patch long inputs on every core (Node). The wasm backend runs one thread in
 * Node, and an entropy model's contexts are independent (the reference cuts long inputs into
 * contexts computed one by one): each worker holds a copy of the model on the same backend and
 * computes whole context groups, so the entropies are the ones a single thread computes.
 *
 * Workers start on the first call long enough to share, in the background (the call does not wait
 * for them: it shares with those already up), hold the process open only while computing, and stop
 * when the patcher is disposed.
 */
import type { BackendName } from '@bytelatent/nn';
import type { ContextHelper, ContextHelpers } from './entropy-model.js';

/** The part of `node:worker_threads`' Worker used here. */
interface WorkerLike {
  postMessage(value: unknown): void;
  on(event: 'message', listener: (value: unknown) => void): void;
  on(event: 'error' | 'exit', listener: (value: unknown) => void): void;
  ref(): void;
  unref(): void;
  terminate(): Promise<number>;
}

/**
 * Fewest context groups a call must have to be shared: below, the round trip to a worker costs more
 * than it saves (a 1 KiB input, one group of four contexts and one of a single id, measured slower
 * on two threads than on one).
 */
const MIN_SHARED_GROUPS = 3;

/** The worker script: built next to this module (tests run this module from `src/`, the script from `dist/`). */
function workerUrl(): URL {
  const here = import.meta.url;
  return here.endsWith('.ts') ? new URL(here.replace(/\/src\/[^/]*$/, '/dist/entropy-worker.js')) : new URL('./entropy-worker.js', here);
}

class WorkerHelper implements ContextHelper {
  readonly ready: Promise<boolean>;
  private alive = true;
  private nextId = 0;
  /** Context groups this worker computed. */
  computed = 0;
  private readonly pending = new Map<number, { resolve: (v: Float32Array[]) => void; reject: (e: Error) => void }>();

  constructor(private readonly worker: WorkerLike) {
    worker.unref();
    this.ready = new Promise<boolean>((resolve) => {
      worker.on('message', (raw) => {
        const message = raw as { ready?: boolean; id?: number; values?: Float32Array[]; error?: string };
        if (message.ready === true) return resolve(true);
        const request = this.pending.get(message.id!);
        if (request === undefined) return;
        this.pending.delete(message.id!);
        if (this.pending.size === 0) worker.unref();
        if (message.error !== undefined) request.reject(new Error(message.error));
        else {
          this.computed++;
          request.resolve(message.values!);
        }
      });
      const fail = (why: unknown) => {
        this.alive = false;
        resolve(false);
        for (const request of this.pending.values()) request.reject(new Error(`entropy worker stopped: ${String(why)}`));
        this.pending.clear();
      };
      worker.on('error', fail);
      worker.on('exit', fail);
    });
  }

  get usable(): boolean {
    return this.alive;
  }

  run(contexts: ArrayLike<number>[]): Promise<Float32Array[]> {
    if (!this.alive) return Promise.reject(new Error('entropy worker stopped'));
    const id = this.nextId++;
    return new Promise<Float32Array[]>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Held open while computing: the caller awaits the answer.
      this.worker.ref();
      this.worker.postMessage({ id, contexts: contexts.map((c) => Int32Array.from(c)) });
    });
  }

  stop(): void {
    this.alive = false;
    void this.worker.terminate();
  }
}

/**
 * `count` worker threads, each with the model of `weights` (a safetensors file with the model's
 * arguments in its metadata, as `EntropyModel.toSafetensors` writes) on `backend`.
 */
export class EntropyWorkers implements ContextHelpers {
  private helpers: WorkerHelper[] | undefined;
  private stopped = false;

  constructor(
    readonly count: number,
    private readonly weights: () => Promise<Uint8Array>,
    private readonly backend: BackendName,
  ) {}

  start(groups: number): ContextHelper[] {
    if (groups < MIN_SHARED_GROUPS || this.stopped) return [];
    if (this.helpers === undefined) {
      const helpers: WorkerHelper[] = [];
      this.helpers = helpers;
      const ready = this.spawn(helpers);
      // Until they are spawned, the call shares with helpers that report ready once they are.
      return Array.from({ length: this.count }, (_, i) => ({
        ready: ready.then(() => helpers[i]?.ready ?? false).catch(() => false),
        run: (contexts: ArrayLike<number>[]) =>
          helpers[i] !== undefined ? helpers[i].run(contexts) : Promise.reject(new Error('entropy worker not started')),
      }));
    }
    return this.helpers.filter((h) => h.usable);
  }

  /** Context groups the workers computed so far (how much was shared). */
  get computedGroups(): number {
    return this.helpers?.reduce((sum, h) => sum + h.computed, 0) ?? 0;
  }

  /** Stops the workers (a later call computes on the calling thread only). */
  stop(): void {
    this.stopped = true;
    this.helpers?.forEach((h) => h.stop());
  }

  private async spawn(into: WorkerHelper[]): Promise<void> {
    const [{ Worker }, weights] = await Promise.all([import('node:worker_threads'), this.weights()]);
    if (this.stopped) return;
    for (let i = 0; i < this.count; i++) {
      const worker = new Worker(workerUrl(), { workerData: { weights, backend: this.backend } }) as unknown as WorkerLike;
      into.push(new WorkerHelper(worker));
    }
  }
}

/**
 * How many threads patch by default: every core up to four, in Node, for a model on the wasm
 * backend without native matmuls (which already use every core) and small enough to copy into each
 * worker; else one.
 */
export function defaultPatchThreads(backend: { name: string; nativeMatMul?: { active: boolean } }, parameters: number): number {
  const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
  if (!isNode || backend.name !== 'wasm' || backend.nativeMatMul?.active === true || parameters > MAX_SHARED_PARAMETERS) return 1;
  // Synchronous (patchers are built synchronously too) and invisible to browser bundlers.
  const os = process.getBuiltinModule('node:os');
  return Math.max(1, Math.min(4, os.availableParallelism()));
}

/** Largest model copied into each worker by default (float32: 64 MB). */
const MAX_SHARED_PARAMETERS = 16_000_000;
