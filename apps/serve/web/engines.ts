/**
 * The page's two ways of running the models, behind one interface: the server's JSON API, or the
 * same ModelService code running here in the browser on tfjs (WebGPU, wasm or cpu), with the
 * weights the server hands out at /models/ — two safetensors files, or a folder of a published
 * layout read with loadPretrained on its URL (`/models/index.json` says which).
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, modelFolderFromFiles, openModelFolder, type BackendInfo } from '@bytelatent/nn';
import type { GenerateChunk, GenerateParams, GenerateResult, ModelService, PatchResponse, ScoreResponse } from '../src/model-service.js';
import {
  createModelService,
  createModelServiceFromPretrained,
  modelKindOfFile,
  serviceWithModelFile,
  type ModelIndex,
} from '../src/service-from-bytes.js';
import { cachingFetch, weightTraffic } from './browser-store.js';

export type BrowserBackendChoice = 'auto' | 'webgpu' | 'wasm' | 'cpu';

/** The patching rule the page asks for (the model's own settings where a field is absent). */
export interface PatchChoice {
  readonly mode?: 'entropy' | 'monotonic' | 'combined' | 'space' | 'static' | 'byte';
  readonly threshold?: number;
  /** The combined rule's rise (entropy minus the previous byte's). */
  readonly thresholdAdd?: number;
  readonly patchSize?: number;
}

export interface Engine {
  /** One plain sentence for the page: where the model runs and on which backend. */
  readonly description: string;
  /** Why that backend (initBackend's reason), for a tooltip. */
  readonly detail: string;
  patch(text: string, choice?: PatchChoice): Promise<PatchResponse>;
  /** Bits the BLT spends on each byte of the text (its own patching). */
  score(text: string): Promise<ScoreResponse>;
  generate(params: GenerateParams, onChunk: (chunk: GenerateChunk) => void): Promise<GenerateResult>;
}

async function post(path: string, body: unknown): Promise<Response> {
  const res = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) {
    const error = ((await res.json().catch(() => undefined)) as { error?: { message?: string } } | undefined)?.error;
    throw new Error(error?.message ?? `${res.status} ${res.statusText}`);
  }
  return res;
}

/** Calls the server: /v1/patch, and /v1/generate as server-sent events. */
export async function createServerEngine(): Promise<Engine> {
  const health = (await (await fetch('health')).json()) as { backend: string };
  return {
    description: `Running on the server (backend ${health.backend}).`,
    detail: 'the page calls /v1/patch, /v1/score and /v1/generate',
    patch: async (text, choice = {}) => (await (await post('v1/patch', { text, ...choice })).json()) as PatchResponse,
    score: async (text) => (await (await post('v1/score', { text })).json()) as ScoreResponse,
    generate: async (params, onChunk) => {
      const res = await post('v1/generate', { ...params, stream: true });
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
          const data: unknown = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? 'null');
          if (event === 'message') onChunk(data as GenerateChunk);
          else if (event === 'done') return data as GenerateResult;
          else if (event === 'error') throw new Error((data as { error: { message: string } }).error.message);
        }
      }
      throw new Error('the server closed the stream before the generation finished');
    },
  };
}

/** A file of the server's, through the IndexedDB weights cache. */
async function fetchBytes(path: string): Promise<Uint8Array> {
  const res = await cachingFetch(path);
  if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${res.statusText}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** How the weights came: "7.2 MB of weights from this browser's cache" (after a revalidation), or downloaded. */
function weightsSentence(): string {
  const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
  const parts = [];
  if (weightTraffic.fromCache > 0) parts.push(`${mb(weightTraffic.fromCache)} of weights from this browser's cache`);
  if (weightTraffic.downloaded > 0) parts.push(`${mb(weightTraffic.downloaded)} of weights downloaded`);
  return parts.join(', ') || 'weights loaded';
}

function describeBackend(info: BackendInfo): string {
  const name = info.name === 'webgpu' ? 'WebGPU' : info.name;
  return info.adapter ? `${name} (${info.software ? 'software ' : ''}adapter "${info.adapter}")` : name;
}

/**
 * Starts tfjs in the page on the chosen backend: `'auto'` takes WebGPU on a hardware adapter, else
 * wasm, else cpu (see initBackend); naming `'webgpu'` accepts a software adapter too, so that it can
 * be tried anywhere.
 */
function startBackend(backend: BrowserBackendChoice): Promise<BackendInfo> {
  tf.env().set('PROD', true);
  return initBackend({ backend, wasmPaths: new URL('wasm/', document.baseURI).href, allowSoftwareGpu: backend === 'webgpu' });
}

/** An engine over a model service running in this page. */
function inPageEngine(service: ModelService, info: BackendInfo, loaded: string, started: number): Engine {
  const never = new AbortController().signal;
  return {
    description: `Running in this browser on ${describeBackend(info)}; ${loaded} in ${Math.round(performance.now() - started)} ms.`,
    detail: info.reason,
    patch: (text, choice = {}) => service.patch(text, choice),
    score: (text) => service.score(text, never),
    generate: (params, onChunk) => service.generate(params, never, onChunk),
  };
}

/**
 * Builds, in this page, the models the server hands out at `/models/` (described by
 * `/models/index.json`), their weights through the IndexedDB cache.
 */
async function serverModelsInPage(info: BackendInfo): Promise<{ service: ModelService; loaded: string }> {
  weightTraffic.fromCache = 0;
  weightTraffic.downloaded = 0;
  const indexResponse = await fetch('models/index.json');
  if (!indexResponse.ok)
    throw new Error(
      `this server does not hand out its models (GET models/index.json: ${indexResponse.status}); run the model on the server`,
    );
  const index = (await indexResponse.json()) as ModelIndex;
  if (index.format === 'pretrained') {
    // The same loader as the server's: loadPretrained on the folder, entropy model and patching settings from its files.
    const base = new URL('models/', document.baseURI);
    const patcher =
      index.patcher === null
        ? undefined
        : index.patcher.endsWith('/')
          ? await openModelFolder(new URL(index.patcher, base).href, { fetch: cachingFetch })
          : await fetchBytes(new URL(index.patcher, base).href);
    const { service } = await createModelServiceFromPretrained({
      blt: await openModelFolder(new URL(index.blt, base).href, { fetch: cachingFetch }),
      ...(patcher !== undefined ? { patcher } : {}),
      backend: info.name,
    });
    return { service, loaded: `${index.layout}-layout folder loaded (${weightsSentence()})` };
  }
  const [patcher, blt] = await Promise.all([fetchBytes(`models/${index.patcher}`), fetchBytes(`models/${index.blt}`)]);
  const service = await createModelService({
    patcher,
    blt,
    patcherName: 'patcher.safetensors',
    bltName: 'blt.safetensors',
    backend: info.name,
  });
  return { service, loaded: weightsSentence() };
}

/**
 * Loads the models the server hands out into this page on the chosen tfjs backend.
 */
export async function createBrowserEngine(backend: BrowserBackendChoice, onProgress: (message: string) => void): Promise<Engine> {
  onProgress(`starting tfjs (${backend})…`);
  const info = await startBackend(backend);
  onProgress(`loading the models for backend ${info.name}…`);
  const started = performance.now();
  const { service, loaded } = await serverModelsInPage(info);
  return inPageEngine(service, info, loaded, started);
}

/**
 * Runs a model file in this page — one trained in the training tab, or a `bytelatent-train` export:
 * a BLT file with the server's entropy model, or an entropy model file with the server's BLT.
 *
 * @param name - what the status line calls the model
 */
export async function createModelFileEngine(
  backend: BrowserBackendChoice,
  file: Uint8Array,
  name: string,
  onProgress: (message: string) => void,
): Promise<Engine> {
  const info = await startBackend(backend);
  const started = performance.now();
  onProgress(`loading the server's models for backend ${info.name}…`);
  const { service } = await serverModelsInPage(info);
  const swapped = await serviceWithModelFile(service, file, name);
  const kind =
    modelKindOfFile(file) === 'blt' ? `BLT "${name}" with the server's entropy model` : `entropy model "${name}" with the server's BLT`;
  return inPageEngine(swapped, info, `your ${kind} loaded`, started);
}

/** Files of a model folder the loaders read: configurations and weights (as the server hands out). */
const MODEL_FILE = /\.(json|safetensors|pth|pt|bin|ckpt)$/i;

/**
 * Runs a model folder the user picked on this computer (a directory picker's files), in this
 * browser: any layout `loadPretrained` reads, its entropy model and patching settings from its files.
 * Paths are taken relative to the picked folder.
 *
 * @param files - the picker's files (`webkitRelativePath` gives each one's place in the folder)
 */
export async function createPickedFolderEngine(
  backend: BrowserBackendChoice,
  files: readonly File[],
  onProgress: (message: string) => void,
): Promise<Engine> {
  const info = await startBackend(backend);
  const started = performance.now();
  const wanted = files.filter((f) => MODEL_FILE.test(f.name));
  if (wanted.length === 0) throw new Error('the folder holds no configuration or weights file (.json, .safetensors, .pth)');
  const root = (wanted[0]!.webkitRelativePath || wanted[0]!.name).split('/')[0]!;
  onProgress(`reading ${wanted.length} files of ${root}…`);
  const entries = await Promise.all(
    wanted.map(
      async (f) =>
        [(f.webkitRelativePath || f.name).split('/').slice(1).join('/') || f.name, new Uint8Array(await f.arrayBuffer())] as const,
    ),
  );
  const bytes = entries.reduce((sum, [, b]) => sum + b.byteLength, 0);
  const { service, layout } = await createModelServiceFromPretrained({
    blt: modelFolderFromFiles(new Map(entries), root),
    bltName: root,
    backend: info.name,
  });
  return inPageEngine(service, info, `${root} (${layout} layout, ${(bytes / 1e6).toFixed(1)} MB from this computer) loaded`, started);
}
