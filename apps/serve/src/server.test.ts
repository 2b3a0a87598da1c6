import type { AddressInfo } from 'node:net';
import { request } from 'node:http';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ByteLatentTransformer, bltPatchingFromSettings } from '@bytelatent/blt';
import { bltScorer, evaluateBitsPerByte } from '@bytelatent/evals';
import { EntropyPatcher } from '@bytelatent/entropy-patcher';
import { createApiServer } from './server.js';
import { ModelService } from './model-service.js';
import { createGenerator } from './generator.js';
import { WEB_DIR } from './paths.js';
import { TINY_BLT_ARGS } from './test-fixtures.js';

let base = '';
let close: () => Promise<void>;
let patcher: EntropyPatcher;
let blt: ByteLatentTransformer;

async function call(method: string, path: string, body?: string | object, headers: Record<string, string> = {}) {
  const res = await fetch(base + path, {
    method,
    headers: body === undefined ? headers : { 'Content-Type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers };
}

beforeAll(async () => {
  patcher = await EntropyPatcher.pretrained();
  blt = new ByteLatentTransformer(TINY_BLT_ARGS, 1);
  const service = new ModelService(patcher, blt, createGenerator(blt, patcher), {
    backend: tf.getBackend(),
    patcherModel: 'pretrained',
    bltModel: 'random',
  });
  const { server } = createApiServer({
    service,
    publicDir: WEB_DIR,
    maxBodyBytes: 4096,
    maxTextBytes: 1024,
    maxPromptBytes: 256,
    maxGenerateBytes: 64,
    maxQueue: 2,
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  close = () => new Promise((r) => server.close(() => r()));
});
afterAll(async () => {
  await close();
  patcher.dispose();
  blt.dispose();
});

describe('serve API', () => {
  it('GET /health describes the models', async () => {
    const r = await call('GET', '/health');
    expect(r.status).toBe(200);
    expect(r.json.status).toBe('ok');
    expect(r.json.models.blt.parameters).toBe(blt.parameterCount());
    expect(r.json.models.patcher.defaults.threshold).toBeGreaterThan(0);
  });

  it('POST /v1/patch returns patches covering the text and one entropy per byte', async () => {
    const text = 'Alice was beginning to get very tired. Ünïcode ✓';
    const r = await call('POST', '/v1/patch', { text });
    expect(r.status).toBe(200);
    // Patches are contiguous byte ranges covering the text (a patch may split a character).
    const ranges = r.json.patches as Array<{ start: number; end: number }>;
    expect(ranges[0]!.start).toBe(0);
    ranges.slice(1).forEach((p, i) => expect(p.start).toBe(ranges[i]!.end));
    expect(ranges.at(-1)!.end).toBe(Buffer.byteLength(text));
    expect(r.json.entropies).toHaveLength(Buffer.byteLength(text));
    expect(r.json.bytes).toBe(Buffer.byteLength(text));
    const space = await call('POST', '/v1/patch', { text: 'a bc def', mode: 'space' });
    expect(space.json.patches.map((p: { text: string }) => p.text)).toEqual(['a ', 'bc ', 'def']);
    // Top-k: floor(N / patchSize) − 2 starts besides 0 and 1, N = bytes + BOS; the BOS patch is not a segment.
    const n = Buffer.byteLength(text) + 1;
    const topK = await call('POST', '/v1/patch', { text, mode: 'entropy-top-k', patchSize: 6 });
    expect(topK.status).toBe(200);
    expect(topK.json.mode).toBe('entropy-top-k');
    expect(topK.json.patches.length).toBeLessThanOrEqual(Math.floor(n / 6) - 2 + 1);
    const combined = await call('POST', '/v1/patch', { text, mode: 'combined', threshold: 1, thresholdAdd: 0.5 });
    expect(combined.status).toBe(200);
    // Without its relative threshold the combined rule is a bad request, named.
    const missing = await call('POST', '/v1/patch', { text, mode: 'combined', threshold: 1 });
    expect([missing.status, missing.json.error.message]).toEqual([400, expect.stringMatching(/thresholdAdd/)]);
  });

  it('POST /v1/score gives bits per byte and one loss per byte, windowing long text', async () => {
    const text = 'the quick brown fox jumps over the lazy dog. '.repeat(3);
    const r = await call('POST', '/v1/score', { text });
    expect(r.status).toBe(200);
    expect(r.json.bits).toHaveLength(text.length);
    expect(r.json.bitsPerByte).toBeGreaterThan(5); // an untrained model is around log2(260) = 8.02
    expect(r.json.bitsPerByte).toBeLessThan(12);
    // The same figures as bytelatent-eval on the same windows: one scorer, one patching.
    const scorer = bltScorer(blt, bltPatchingFromSettings(patcher.defaults, patcher));
    const expected = await evaluateBitsPerByte(scorer, text, { windowBytes: blt.args.encoder.maxSeqLen });
    expect(text.length).toBeGreaterThan(blt.args.encoder.maxSeqLen); // several windows
    expect(r.json.bitsPerByte).toBeCloseTo(expected.bitsPerByte, 3);
    expect(r.json.patches).toBe(scorer.patchCounts().patches);
  });

  it('POST /v1/generate returns text; the same seed gives the same text', async () => {
    const a = await call('POST', '/v1/generate', { prompt: 'Hello', maxBytes: 12, temperature: 1, seed: 7 });
    const b = await call('POST', '/v1/generate', { prompt: 'Hello', maxBytes: 12, temperature: 1, seed: 7 });
    expect(a.status).toBe(200);
    expect(a.json.bytes).toBeGreaterThan(0);
    expect(a.json.text).toBe(b.json.text);
    expect(['length', 'stop', 'eos', 'context']).toContain(a.json.finishReason);
  });

  it('streams server-sent events whose chunks add up to the text', async () => {
    const r = await call('POST', '/v1/generate', { prompt: 'Hi', maxBytes: 16, seed: 3, temperature: 0.7, stream: true });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/event-stream');
    const blocks = r.text.trim().split('\n\n');
    const done = blocks.find((b) => b.startsWith('event: done'))!;
    const chunks = blocks.filter((b) => b.startsWith('data: ')).map((b) => JSON.parse(b.slice(6)) as { text: string });
    const result = JSON.parse(done.split('\n')[1]!.slice(6)) as { text: string };
    expect(chunks.map((c) => c.text).join('')).toBe(result.text);
    const json = await call('POST', '/v1/generate', { prompt: 'Hi', maxBytes: 16, seed: 3, temperature: 0.7 });
    expect(json.json.text).toBe(result.text);
  });

  it('answers bad requests with typed 4xx errors', async () => {
    const cases: Array<[string, string, string | object | undefined, Record<string, string>, number, string]> = [
      ['POST', '/v1/patch', '{"text": ', {}, 400, 'MALFORMED_JSON'],
      ['POST', '/v1/patch', '[1,2]', {}, 400, 'INVALID_REQUEST'],
      ['POST', '/v1/patch', { text: 5 }, {}, 400, 'INVALID_REQUEST'],
      ['POST', '/v1/patch', { text: 'x', colour: 'red' }, {}, 400, 'INVALID_REQUEST'],
      ['POST', '/v1/patch', { text: '' }, {}, 400, 'INVALID_REQUEST'],
      ['POST', '/v1/patch', { text: 'x'.repeat(2000) }, {}, 413, 'INPUT_TOO_LARGE'],
      ['POST', '/v1/patch', { text: 'x'.repeat(5000) }, {}, 413, 'BODY_TOO_LARGE'],
      ['POST', '/v1/generate', { prompt: 'x', maxBytes: 65 }, {}, 400, 'INVALID_REQUEST'],
      ['POST', '/v1/generate', { prompt: 'x', topP: 0 }, {}, 400, 'INVALID_REQUEST'],
      ['POST', '/v1/generate', { prompt: 'x'.repeat(300) }, {}, 413, 'INPUT_TOO_LARGE'],
      ['POST', '/v1/score', 'text=hi', { 'Content-Type': 'text/plain' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['GET', '/v1/patch', undefined, {}, 405, 'METHOD_NOT_ALLOWED'],
      ['GET', '/nope', undefined, {}, 404, 'NOT_FOUND'],
      ['GET', '/../package.json', undefined, {}, 404, 'NOT_FOUND'],
    ];
    for (const [method, path, body, headers, status, code] of cases) {
      const r = await call(method, path, body, headers);
      expect([path, r.status, r.json?.error?.code]).toEqual([path, status, code]);
      expect(typeof r.json.error.message).toBe('string');
    }
  });

  it('refuses an oversize body from its Content-Length, before reading it', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        base + '/v1/patch',
        { method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': String(10 ** 9) } },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on('error', reject);
      req.write('{"text":"');
      // never sends the announced gigabyte
    });
    expect(status).toBe(413);
  });

  it('returns 503 when the queue is full, and serves the others', async () => {
    const many = await Promise.all(Array.from({ length: 8 }, () => call('POST', '/v1/generate', { prompt: 'abc', maxBytes: 24 })));
    const statuses = many.map((r) => r.status);
    expect(statuses.filter((s) => s === 503).length).toBeGreaterThan(0);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(3);
    expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
    expect(many.find((r) => r.status === 503)!.json.error.code).toBe('OVERLOADED');
  });

  it('stops generating when the client disconnects, and leaks no tensor', async () => {
    await call('POST', '/v1/generate', { prompt: 'warm', maxBytes: 4 });
    const before = tf.memory().numTensors;
    const controller = new AbortController();
    const res = await fetch(base + '/v1/generate', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'abc', maxBytes: 64, stream: true }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    controller.abort();
    await new Promise((r) => setTimeout(r, 300));
    const health = await call('GET', '/health');
    expect(health.json.queue.active).toBe(0);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('serves the web page', async () => {
    const r = await call('GET', '/');
    expect(r.status).toBe(200);
    expect(r.text).toContain('Byte Latent Transformer');
    const script = /<script type="module"[^>]* src="\.\/([^"]+)"/.exec(r.text)?.[1];
    expect(script).toBeDefined();
    const bundle = await call('GET', `/${script}`);
    expect(bundle.headers.get('content-type')).toMatch(/javascript/);
    expect(bundle.text).toContain('v1/generate');
    expect((await call('GET', '/wasm/tfjs-backend-wasm-simd.wasm')).headers.get('content-type')).toBe('application/wasm');
    // The page revalidates (304 while unchanged); its hashed assets never change.
    expect((await call('GET', '/', undefined, { 'If-None-Match': r.headers.get('etag')! })).status).toBe(304);
    expect(bundle.headers.get('cache-control')).toBe(script!.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache');
    expect((await call('GET', '/../package.json')).status).toBe(404);
  });

  it('hands the page the model files only when given them', async () => {
    expect((await call('GET', '/models/blt.safetensors')).status).toBe(404);
    const { server } = createApiServer({
      service: new ModelService(patcher, blt, undefined, { backend: 'cpu', patcherModel: 'p', bltModel: 'b' }),
      modelFiles: { patcher: Uint8Array.of(1, 2, 3), blt: Uint8Array.of(4, 5) },
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/models/`;
      const r = await fetch(url + 'blt.safetensors');
      expect(r.status).toBe(200);
      expect([...new Uint8Array(await r.arrayBuffer())]).toEqual([4, 5]);
      expect(r.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
      // Cached by the browser: revalidated with its ETag, answered 304 without a body while unchanged.
      const etag = r.headers.get('etag')!;
      expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
      expect(r.headers.get('cache-control')).toBe('no-cache');
      const again = await fetch(url + 'blt.safetensors', { headers: { 'If-None-Match': etag } });
      expect([again.status, (await again.arrayBuffer()).byteLength, again.headers.get('etag')]).toEqual([304, 0, etag]);
      expect((await fetch(url + 'blt.safetensors', { headers: { 'If-None-Match': '"other"' } })).status).toBe(200);
      expect((await fetch(url + 'patcher.safetensors', { headers: { 'If-None-Match': etag } })).status).toBe(200);
      expect((await fetch(url + 'patcher.safetensors', { method: 'HEAD' })).headers.get('content-length')).toBe('3');
      expect((await fetch(url + 'blt.safetensors', { method: 'POST' })).status).toBe(405);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
