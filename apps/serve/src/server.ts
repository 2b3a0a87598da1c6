/**
 * The HTTP API and the web page: `GET /health`, `POST /v1/patch`, `POST /v1/score`,
 * `POST /v1/generate` (JSON, or server-sent events with `"stream": true`), the OpenAI-compatible
 * `GET /v1/models` and `POST /v1/completions` (openai.ts), and the page at `/`.
 * Plain `node:http`: no framework, every limit explicit.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';
import { HttpError, toHttpError } from './http-error.js';
import { modelIdFor, openAiRoutes } from './openai.js';
import { openEventStream, sendJson } from './response.js';
import { DEFAULT_SAMPLING } from './sampling-defaults.js';
import { ConcurrencyLimiter } from './limiter.js';
import { Fields, readJsonBody } from './request.js';
import type { ModelService, GenerateParams } from './model-service.js';
import type { ModelIndex } from './service-from-bytes.js';

export interface ServerOptions {
  readonly service: ModelService;
  /** Folder of the web page's static files (index.html, app.js, ...). */
  readonly publicDir?: string;
  /** Largest request body, bytes (default 64 KiB). */
  readonly maxBodyBytes?: number;
  /** Largest text for /v1/patch and /v1/score, bytes (default 16 KiB). */
  readonly maxTextBytes?: number;
  /** Largest prompt, bytes (default 4 KiB). */
  readonly maxPromptBytes?: number;
  /** Most bytes one generation may request (default 1024). */
  readonly maxGenerateBytes?: number;
  /** Model calls running at once (default 1: tfjs computes on one thread) and waiting (default 16). */
  readonly maxConcurrent?: number;
  readonly maxQueue?: number;
  /** The id of the BLT in the OpenAI-compatible endpoints (default: its file or folder name, e.g. `blt-demo`). */
  readonly modelId?: string;
  /** A request's time limit, queueing included (default 60 s). */
  readonly requestTimeoutMs?: number;
  /**
   * The model files, served at `GET /models/patcher.safetensors` and `/models/blt.safetensors` so
   * that the page can run the same models in the browser. Omitted: the page can only use the API.
   */
  readonly modelFiles?: { readonly patcher: Uint8Array; readonly blt: Uint8Array };
  /**
   * A model folder of a published layout, served under `/models/blt/` (and its entropy model where
   * the loader looks for it) so that the page runs it with `loadPretrained` on the folder's URL.
   * `/models/index.json` tells the page which of the two it has.
   */
  readonly modelFolders?: ServedModelFolders;
}

/** The folders of a model the page loads with `loadPretrained`. */
export interface ServedModelFolders {
  /** The BLT's folder, served at `/models/blt/`. */
  readonly blt: string;
  /** Its layout (`consolidated`, `hub`, `transformers`), named in `/models/index.json`. */
  readonly layout: string;
  /**
   * An explicit entropy model: a folder, served at `/models/patcher/`, or the bytes of a safetensors
   * file, at `/models/patcher.safetensors`. Absent: the loader finds it where the reference keeps it.
   */
  readonly patcher?: { readonly folder: string } | { readonly file: Uint8Array };
  /**
   * Consolidated layout: the `entropy_model/` folder beside the BLT's, served at
   * `/models/entropy_model/`, which is where the loader looks from `/models/blt/` (`../entropy_model`).
   */
  readonly sibling?: string;
}

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.safetensors': 'application/octet-stream',
  '.bin': 'application/octet-stream',
};

/**
 * Builds the server (not listening yet).
 *
 * @returns the `node:http` server and its limiter (for stats and tests)
 */
export function createApiServer(options: ServerOptions): { server: Server; limiter: ConcurrencyLimiter } {
  const o = {
    maxBodyBytes: 64 * 1024,
    maxTextBytes: 16 * 1024,
    maxPromptBytes: 4 * 1024,
    maxGenerateBytes: 1024,
    maxConcurrent: 1,
    maxQueue: 16,
    requestTimeoutMs: 60_000,
    ...options,
  };
  const limiter = new ConcurrencyLimiter(o.maxConcurrent, o.maxQueue);
  const service = o.service;
  if (o.modelFiles && o.modelFolders) throw new Error('give modelFiles or modelFolders, not both');
  const folders = o.modelFolders;
  const explicitFile = folders?.patcher && 'file' in folders.patcher ? folders.patcher.file : undefined;
  const explicitFolder = folders?.patcher && 'folder' in folders.patcher ? folders.patcher.folder : undefined;
  // URL prefix -> folder on disk, for the page's loadPretrained.
  const folderRoutes: Array<readonly [string, string]> = folders
    ? [
        ['/models/blt/', folders.blt],
        ...(explicitFolder !== undefined ? [['/models/patcher/', explicitFolder] as const] : []),
        ...(folders.patcher === undefined && folders.sibling !== undefined ? [['/models/entropy_model/', folders.sibling] as const] : []),
      ]
    : [];
  const index: ModelIndex | undefined = o.modelFiles
    ? { format: 'safetensors', blt: 'blt.safetensors', patcher: 'patcher.safetensors' }
    : folders
      ? {
          format: 'pretrained',
          layout: folders.layout,
          blt: 'blt/',
          patcher: explicitFolder !== undefined ? 'patcher/' : explicitFile ? 'patcher.safetensors' : null,
        }
      : undefined;

  const routes: Record<string, Record<string, (req: IncomingMessage, res: ServerResponse, signal: AbortSignal) => Promise<void>>> = {
    '/health': {
      GET: async (_req, res) => sendJson(res, 200, { status: 'ok', ...service.describe(), queue: limiter.stats }),
    },
    ...(index ? { '/models/index.json': bytesRoute(new TextEncoder().encode(JSON.stringify(index)), 'application/json') } : {}),
    ...(o.modelFiles
      ? {
          '/models/patcher.safetensors': bytesRoute(o.modelFiles.patcher),
          '/models/blt.safetensors': bytesRoute(o.modelFiles.blt),
        }
      : {}),
    ...(explicitFile ? { '/models/patcher.safetensors': bytesRoute(explicitFile) } : {}),
    // OpenAI-compatible: GET /v1/models, POST /v1/completions (openai.ts).
    ...(service.blt
      ? openAiRoutes({
          service,
          limiter,
          modelId: o.modelId ?? modelIdFor(service.info.bltModel ?? 'blt'),
          created: Math.floor(Date.now() / 1000),
          maxBodyBytes: o.maxBodyBytes,
          maxPromptBytes: o.maxPromptBytes,
          maxGenerateBytes: o.maxGenerateBytes,
        })
      : {}),
    '/v1/patch': {
      POST: async (req, res, signal) => {
        const f = new Fields(await readJsonBody(req, o.maxBodyBytes)).only([
          'text',
          'threshold',
          'thresholdAdd',
          'mode',
          'maxPatchLength',
          'patchSize',
        ]);
        const text = f.string('text', { required: true, maxBytes: o.maxTextBytes });
        const threshold = f.number('threshold');
        // Every rule that patches text with the entropy model or without a model ('bpe' reads
        // BPE-delimiter tokens and 'bpe-patcher' another model: not text rules).
        const mode = f.oneOf('mode', ['entropy', 'monotonic', 'combined', 'entropy-top-k', 'space', 'static', 'byte'] as const);
        const thresholdAdd = f.number('thresholdAdd');
        const maxPatchLength = f.number('maxPatchLength', { min: 1, integer: true, max: 4096 });
        // 'static' mode's patch size, or the mean patch size 'entropy-top-k' aims at.
        const patchSize = f.number('patchSize', { min: 1, max: 4096, ...(mode === 'static' ? { integer: true } : {}) });
        const result = await limiter.run(() => service.patch(text, { threshold, thresholdAdd, mode, maxPatchLength, patchSize }), signal);
        sendJson(res, 200, result);
      },
    },
    '/v1/score': {
      POST: async (req, res, signal) => {
        const f = new Fields(await readJsonBody(req, o.maxBodyBytes)).only(['text']);
        const text = f.string('text', { required: true, maxBytes: o.maxTextBytes });
        sendJson(res, 200, await limiter.run(() => service.score(text, signal), signal));
      },
    },
    '/v1/generate': {
      POST: async (req, res, signal) => {
        const f = new Fields(await readJsonBody(req, o.maxBodyBytes)).only([
          'prompt',
          'maxBytes',
          'temperature',
          'topK',
          'topP',
          'seed',
          'stop',
          'stream',
        ]);
        const params: GenerateParams = {
          prompt: f.string('prompt', { required: true, maxBytes: o.maxPromptBytes, allowEmpty: true }),
          maxBytes: f.number('maxBytes', { min: 1, max: o.maxGenerateBytes, integer: true }) ?? Math.min(128, o.maxGenerateBytes),
          temperature: f.number('temperature', { min: 0, max: 10 }) ?? DEFAULT_SAMPLING.temperature,
          topK: f.number('topK', { min: 0, integer: true, max: 260 }) ?? 0,
          topP: f.number('topP', { min: 0, max: 1, exclusiveMin: true }) ?? DEFAULT_SAMPLING.topP,
          seed: f.number('seed', { integer: true, min: 0, max: 2 ** 32 - 1 }) ?? 0,
          stop: f.stringList('stop', { maxItems: 8, maxBytes: 64 }) ?? [],
        };
        const stream = f.boolean('stream') ?? false;
        if (!stream) {
          sendJson(res, 200, await limiter.run(() => service.generate(params, signal), signal));
          return;
        }
        await limiter.run(async () => {
          const send = openEventStream(res);
          try {
            const done = await service.generate(params, signal, (chunk) => send(JSON.stringify(chunk)));
            send(JSON.stringify(done), 'done');
          } catch (e) {
            send(JSON.stringify(toHttpError(e, signal).toJSON()), 'error');
          }
          res.end();
        }, signal);
      },
    },
  };

  const server = createServer((req, res) => {
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new HttpError(504, 'TIMEOUT', `the request took longer than ${o.requestTimeoutMs} ms`)),
      o.requestTimeoutMs,
    );
    // The client went away before the answer was complete: stop the work (generation checks the signal).
    res.on('close', () => {
      clearTimeout(timer);
      if (!res.writableFinished) controller.abort(new Error('client disconnected'));
    });
    handle(req, res, controller.signal).catch((e: unknown) => {
      // The client went away (mid-upload, queued, or mid-generation) and the work stopped because of it:
      // there is nobody to answer and nothing went wrong here, so no 500 and no "internal error" log.
      const gone = controller.signal.aborted && !(controller.signal.reason instanceof HttpError);
      if (gone && (e === controller.signal.reason || (e as NodeJS.ErrnoException)?.code === 'ECONNRESET')) return;
      const err = toHttpError(e, controller.signal);
      if (err.status >= 500 && err.code === 'INTERNAL')
        process.stderr.write(`internal error on ${req.method} ${req.url}: ${(e as Error)?.stack ?? String(e)}\n`);
      if (res.headersSent) {
        res.end();
        return;
      }
      // A refused body may still be arriving: answer, then close the connection instead of reading it.
      sendJson(res, err.status, err.toJSON(), err.code === 'BODY_TOO_LARGE' ? { Connection: 'close' } : {});
      if (err.code === 'BODY_TOO_LARGE') req.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = routes[url.pathname];
    if (route) {
      const handler = route[req.method ?? 'GET'];
      if (!handler)
        throw new HttpError(
          405,
          'METHOD_NOT_ALLOWED',
          `${req.method} is not allowed on ${url.pathname} (use ${Object.keys(route).join(', ')})`,
        );
      await handler(req, res, signal);
      return;
    }
    const folderRoute = folderRoutes.find(([prefix]) => url.pathname.startsWith(prefix));
    if (folderRoute) {
      if (req.method !== 'GET' && req.method !== 'HEAD')
        throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${url.pathname} (use GET, HEAD)`);
      await serveModelFile(folderRoute[1], url.pathname.slice(folderRoute[0].length), req, res, req.method === 'HEAD');
      return;
    }
    if ((req.method === 'GET' || req.method === 'HEAD') && o.publicDir) {
      await serveStatic(o.publicDir, url.pathname, req, res, req.method === 'HEAD');
      return;
    }
    throw new HttpError(404, 'NOT_FOUND', `no route ${req.method} ${url.pathname}`);
  }

  return { server, limiter };
}

/** Headers of every static response: cross-origin isolation lets the page use wasm threads and SharedArrayBuffer. */
const ISOLATION_HEADERS = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } as const;

/**
 * Caching of files: each response carries an `ETag`, and `Cache-Control: no-cache` makes the browser
 * ask again with `If-None-Match`, which a file that did not change answers with 304 and no body — so
 * the page's megabytes of weights download once, and a changed model is never served stale.
 *
 * @returns true when the 304 was sent
 */
function answeredNotModified(req: IncomingMessage, res: ServerResponse, etag: string): boolean {
  const asked = req.headers['if-none-match'];
  if (asked === undefined || !asked.split(',').some((tag) => tag.trim() === etag || tag.trim() === '*')) return false;
  res.writeHead(304, { ETag: etag, 'Cache-Control': 'no-cache', ...ISOLATION_HEADERS });
  res.end();
  return true;
}

/** GET and HEAD of a file held in memory (the model files the page downloads). */
function bytesRoute(
  body: Uint8Array,
  type = 'application/octet-stream',
): Record<string, (req: IncomingMessage, res: ServerResponse) => Promise<void>> {
  const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"`;
  const send = async (req: IncomingMessage, res: ServerResponse) => {
    if (answeredNotModified(req, res, etag)) return;
    res.writeHead(200, {
      'Content-Type': type,
      'Content-Length': body.byteLength,
      'Cache-Control': 'no-cache',
      ETag: etag,
      ...ISOLATION_HEADERS,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  return { GET: send, HEAD: send };
}

/** A file's validator: its size and modification time (a rewritten checkpoint gets a new one). */
const fileEtag = (size: number, mtimeMs: number) => `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`;

/** The files of a model folder the loaders read: configurations and weights, nothing else. */
const MODEL_FOLDER_FILE = /\.(json|safetensors|pth|pt|bin|ckpt)$/i;

/**
 * GET and HEAD of a file of a model folder, streamed from disk (a released checkpoint's weights are
 * GBs). Only configuration and weights files, never outside the folder (symbolic links inside it, as
 * a Hugging Face cache's snapshot holds, are followed).
 */
async function serveModelFile(root: string, relative: string, req: IncomingMessage, res: ServerResponse, head: boolean): Promise<void> {
  let rel: string;
  try {
    rel = decodeURIComponent(relative);
  } catch {
    throw new HttpError(400, 'INVALID_REQUEST', 'malformed URL');
  }
  const path = normalize(join(root, rel));
  const inside = path.startsWith(normalize(root).replace(/[\\/]+$/, '') + sep);
  if (!inside || !MODEL_FOLDER_FILE.test(path) || rel.split(/[\\/]/).some((part) => part.startsWith('.')))
    throw new HttpError(404, 'NOT_FOUND', `no model file ${rel}`);
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) throw new HttpError(404, 'NOT_FOUND', `no model file ${rel}`);
  const etag = fileEtag(info.size, info.mtimeMs);
  if (answeredNotModified(req, res, etag)) return;
  res.writeHead(200, {
    'Content-Type': extname(path) === '.json' ? 'application/json' : 'application/octet-stream',
    'Content-Length': info.size,
    'Cache-Control': 'no-cache',
    ETag: etag,
    ...ISOLATION_HEADERS,
  });
  if (head) {
    res.end();
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const stream = createReadStream(path);
    stream.on('error', reject);
    res.on('close', () => {
      stream.destroy();
      resolve();
    });
    stream.pipe(res);
  });
}

async function serveStatic(root: string, pathname: string, req: IncomingMessage, res: ServerResponse, head: boolean): Promise<void> {
  let rel: string;
  try {
    rel = decodeURIComponent(pathname === '/' ? '/index.html' : pathname);
  } catch {
    throw new HttpError(400, 'INVALID_REQUEST', 'malformed URL');
  }
  const path = normalize(join(root, rel));
  // Never serve outside the public folder (../ tricks).
  if (!path.startsWith(normalize(root) + sep)) throw new HttpError(404, 'NOT_FOUND', `no file ${pathname}`);
  // The validator first: a revalidated file is answered without reading it.
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) throw new HttpError(404, 'NOT_FOUND', `no file ${pathname}`);
  const etag = fileEtag(info.size, info.mtimeMs);
  if (answeredNotModified(req, res, etag)) return;
  let body: Buffer;
  try {
    body = await readFile(path);
  } catch {
    throw new HttpError(404, 'NOT_FOUND', `no file ${pathname}`);
  }
  res.writeHead(200, {
    'Content-Type': MIME[extname(path)] ?? 'application/octet-stream',
    'Content-Length': body.length,
    // The bundler names assets by their content's hash: such a file never changes.
    'Cache-Control': rel.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
    ETag: etag,
    ...ISOLATION_HEADERS,
  });
  res.end(head ? undefined : body);
}
