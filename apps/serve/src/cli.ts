#!/usr/bin/env node
/**
 * `bytelatent-serve`: serves the shipped BLT and entropy patcher (or your own, or Meta's released
 * ones from a folder of any published layout) over HTTP on localhost, with the web page at `/`.
 * Run `bytelatent-serve --help`.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '@bytelatent/nn';
import { loadServeModels } from './load-models.js';
import { createApiServer } from './server.js';
import { WEB_DIR } from './paths.js';

tf.env().set('PROD', true);

const BIN = 'bytelatent-serve';

const USAGE = `usage: bytelatent-serve [options]
       bytelatent-serve --help | --version

Serves a BLT and its entropy patcher (default: the demo BLT shipped in @bytelatent/blt): GET /health,
POST /v1/patch, POST /v1/score, POST /v1/generate (JSON or server-sent events), the OpenAI-compatible
GET /v1/models and POST /v1/completions (a token is a byte), and a web page at / that runs the
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
  --patcher PATH      entropy model: a safetensors file (default with --blt: pretrained:small of
                      @bytelatent/entropy-patcher), or a folder of any layout (default: where the
                      reference keeps it); the BLT's patching settings still apply
  --blt FILE          BLT safetensors with its blt_args metadata (bytelatent-train export-blt)
  --model-id ID       the model's id in /v1/models and /v1/completions (default: its folder or
                      file name, blt-demo for the demo)
  --backend NAME      auto (default) | wasm | cpu | webgpu
  --max-concurrent N  model calls at once (default 1)
  --max-queue N       requests waiting before 503 (default 16)
  --timeout-ms N      per-request time limit (default 60000)
  -h, --help          this text
  --version           the name and version of this command

Exit status: 0 stopped (SIGINT, SIGTERM), 1 error (model files, backend, port), 2 usage error.`;

const BACKENDS: ReadonlyArray<'auto' | BackendName> = ['auto', 'wasm', 'cpu', 'webgpu'];

/** A mistake in the command line: exit status 2 (other failures are 1), so scripts can tell them apart. */
class UsageError extends Error {}

function version(): string {
  // Relative to this module, so it is right wherever the app is installed (dist/ sits beside package.json).
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      patcher: { type: 'string' },
      blt: { type: 'string' },
      model: { type: 'string' },
      'model-id': { type: 'string' },
      backend: { type: 'string' },
      'max-concurrent': { type: 'string' },
      'max-queue': { type: 'string' },
      'timeout-ms': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (values.version) {
    process.stdout.write(`${BIN} ${version()}\n`);
    return;
  }
  const int = (name: string, v: string | undefined, fallback: number, min: number) => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
  // Every flag is checked before the models load, so a typo costs no wait.
  const envPort = process.env['PORT'] || undefined; // an empty $PORT is an unset one
  const port = int(values.port === undefined && envPort !== undefined ? 'port (from $PORT)' : 'port', values.port ?? envPort, 8080, 0);
  const maxConcurrent = int('max-concurrent', values['max-concurrent'], 1, 1);
  const maxQueue = int('max-queue', values['max-queue'], 16, 0);
  const requestTimeoutMs = int('timeout-ms', values['timeout-ms'], 60_000, 1);
  const backendName = (values.backend ?? 'auto') as 'auto' | BackendName;
  if (!BACKENDS.includes(backendName)) throw new UsageError(`--backend must be one of ${BACKENDS.join(', ')}, got "${backendName}"`);
  const modelId = values['model-id'];
  if (modelId !== undefined && !/^[\w.:-]{1,128}$/.test(modelId))
    throw new UsageError(`--model-id must be 1 to 128 letters, digits, "_", "-", "." or ":", got "${modelId}"`);
  const backend = await initBackend({ backend: backendName });
  const { service, files, folders } = await loadServeModels({
    patcher: values.patcher,
    blt: values.blt,
    model: values.model,
    backend: backend.name,
  });
  const { server } = createApiServer({
    service,
    ...(files ? { modelFiles: files } : {}),
    ...(folders ? { modelFolders: folders } : {}),
    publicDir: WEB_DIR,
    ...(modelId !== undefined ? { modelId } : {}),
    maxConcurrent,
    maxQueue,
    requestTimeoutMs,
  });
  const host = values.host ?? '127.0.0.1';
  server.listen(port, host, () => {
    const address = server.address();
    const actual = typeof address === 'object' && address ? address.port : port;
    const layout = service.info.bltLayout ? ` (${service.info.bltLayout} layout)` : '';
    process.stdout.write(
      `bytelatent serve: http://${host}:${actual}/ (backend ${service.info.backend}; patcher ${service.info.patcherModel}; BLT ${service.info.bltModel}${layout})\n`,
    );
    if (!files && !folders)
      process.stdout.write('the page runs this model through the API only (a model behind a URL is not handed to the page)\n');
  });
  const stop = () => {
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/** parseArgs' messages can run over several lines; a usage error is one line. */
const oneLine = (message: string): string => message.replace(/\s*\n\s*/g, ' ');

main().catch((e: unknown) => {
  const err = e as Error & { code?: unknown };
  // Usage errors (ours, and parseArgs' unknown or malformed options): one line and a pointer, exit 2.
  if (e instanceof UsageError || (e instanceof TypeError && typeof err.code === 'string' && err.code.startsWith('ERR_PARSE_ARGS'))) {
    process.stderr.write(`${BIN}: ${oneLine(err.message)} (see ${BIN} --help)\n`);
    process.exit(2);
  }
  // Anything else (model files that cannot be read, a backend that does not start) is a failure: exit 1.
  // Node's own errors (ENOENT) already start with their code.
  const code = e instanceof Error && typeof err.code === 'string' && !e.message.startsWith(err.code) ? `${err.code}: ` : '';
  process.stderr.write(`${BIN}: ${e instanceof Error ? `${code}${e.message}` : String(e)}\n`);
  process.exit(1);
});
