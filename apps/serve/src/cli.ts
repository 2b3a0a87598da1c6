#!/usr/bin/env node
/**
 * `bytelatent-serve`: serves the shipped BLT and entropy patcher (or your own, or Meta's released
 * ones from a folder of any published layout) over HTTP on localhost, with the web page at `/`.
 * Run `bytelatent-serve --help`.
 */
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '@bytelatent/nn';
import { loadServeModels, DEFAULT_BLT_MODEL } from './load-models.js';
import { createApiServer } from './server.js';
import { WEB_DIR } from './paths.js';

tf.env().set('PROD', true);

const USAGE = `usage: bytelatent-serve [options]

Serves a BLT and its entropy patcher (default: the shipped demo BLT): GET /health, POST /v1/patch,
POST /v1/score, POST /v1/generate (JSON or server-sent events), and a web page at / that runs the
models either through this API or in the browser itself (tfjs WebGPU, wasm or cpu; weights from
/models/, described by /models/index.json).

options:
  --port N            port (default $PORT or 8080; 0 picks a free one)
  --host H            interface (default 127.0.0.1)
  --model DIR         a BLT folder of any published layout (or an http(s) URL of one): consolidated
                      (params.json + consolidated.pth, e.g. Meta's hf-weights/blt_1b), hub
                      (config.json {"args"} + model.safetensors, e.g. facebook/blt-1b) or
                      transformers (model_type "blt"); its entropy model and patching settings are
                      read from the files (instead of --blt)
  --patcher PATH      entropy model: a safetensors file (default with --blt: the one shipped in
                      @bytelatent/entropy-patcher), or with --model a folder of any layout (default:
                      where the reference keeps it); the BLT's patching settings still apply
  --blt FILE          BLT safetensors with its blt_args metadata (default: ${DEFAULT_BLT_MODEL})
  --backend NAME      auto (default) | wasm | cpu | webgpu
  --max-concurrent N  model calls at once (default 1)
  --max-queue N       requests waiting before 503 (default 16)
  --timeout-ms N      per-request time limit (default 60000)
  -h, --help          this text`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      patcher: { type: 'string' },
      blt: { type: 'string' },
      model: { type: 'string' },
      backend: { type: 'string' },
      'max-concurrent': { type: 'string' },
      'max-queue': { type: 'string' },
      'timeout-ms': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const int = (name: string, v: string | undefined, fallback: number, min: number) => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
  const port = int('port', values.port ?? process.env['PORT'], 8080, 0);
  const backendName = (values.backend ?? 'auto') as 'auto' | BackendName;
  const backend = await initBackend({ backend: backendName });
  const { service, files, folders } = await loadServeModels({ patcher: values.patcher, blt: values.blt, model: values.model, backend: backend.name });
  const { server } = createApiServer({
    service,
    ...(files ? { modelFiles: files } : {}),
    ...(folders ? { modelFolders: folders } : {}),
    publicDir: WEB_DIR,
    maxConcurrent: int('max-concurrent', values['max-concurrent'], 1, 1),
    maxQueue: int('max-queue', values['max-queue'], 16, 0),
    requestTimeoutMs: int('timeout-ms', values['timeout-ms'], 60_000, 1),
  });
  const host = values.host ?? '127.0.0.1';
  server.listen(port, host, () => {
    const address = server.address();
    const actual = typeof address === 'object' && address ? address.port : port;
    const layout = service.info.bltLayout ? ` (${service.info.bltLayout} layout)` : '';
    process.stdout.write(`bytelatent serve: http://${host}:${actual}/ (backend ${service.info.backend}; patcher ${service.info.patcherModel}; BLT ${service.info.bltModel}${layout})\n`);
    if (!files && !folders) process.stdout.write('the page runs this model through the API only (a model behind a URL is not handed to the page)\n');
  });
  const stop = () => {
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(2);
});
