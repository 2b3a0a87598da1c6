// The API under load on 127.0.0.1: 1,000 seeded requests from 50 concurrent clients — patch,
// score and generate (streamed or not), malformed, oversize, and clients that disconnect early — against
// the shipped entropy patcher and a tiny random BLT. Every answer must be one the request allows, no 5xx
// but the deliberate 503 back-pressure, RSS bounded, no tensor left behind, oversize bodies refused
// before being buffered. The full-size run (the shipped BLT) is `node apps/serve/dist/load-cli.js`.
import type { AddressInfo, Socket } from 'node:net';
import { request, type Server } from 'node:http';
import * as tf from '@tensorflow/tfjs-core';
import { ByteLatentTransformer } from '@bytelatent/blt';
import { EntropyPatcher } from '@bytelatent/entropy-patcher';
import { initBackend } from '@bytelatent/nn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiServer } from './server.js';
import { ModelService } from './model-service.js';
import { createGenerator } from './generator.js';
import { ConcurrencyLimiter } from './limiter.js';
import { buildRequests, runLoad, sampleRss, type LoadLimits } from './load-driver.js';
import { TINY_BLT_ARGS } from './test-fixtures.js';

/** server.test.ts's tiny BLT. */

const LIMITS: LoadLimits = { maxBodyBytes: 8192, maxTextBytes: 2048, maxPromptBytes: 256, maxGenerateBytes: 32 };

let base: URL;
let server: Server;
let limiter: ConcurrencyLimiter;
let patcher: EntropyPatcher;
let blt: ByteLatentTransformer;
const sockets: Socket[] = [];
const stderr: string[] = [];
const realStderrWrite = process.stderr.write.bind(process.stderr);

async function idle(): Promise<void> {
  for (let i = 0; i < 400 && (limiter.stats.active > 0 || limiter.stats.queued > 0); i++) await new Promise((r) => setTimeout(r, 25));
  expect(limiter.stats).toMatchObject({ active: 0, queued: 0 });
}

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
  patcher = await EntropyPatcher.pretrained();
  blt = new ByteLatentTransformer(TINY_BLT_ARGS, 1);
  const service = new ModelService(patcher, blt, createGenerator(blt, patcher), {
    backend: tf.getBackend(),
    patcherModel: 'pretrained',
    bltModel: 'random',
  });
  ({ server, limiter } = createApiServer({ service, ...LIMITS, maxQueue: 40 }));
  server.on('connection', (s: Socket) => sockets.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  // The server reports internal errors on stderr: collect them.
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    stderr.push(String(chunk));
    return (realStderrWrite as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write;
});
afterAll(async () => {
  process.stderr.write = realStderrWrite;
  await new Promise((r) => server.close(() => r(undefined)));
  patcher.dispose();
  blt.dispose();
});

describe('serve under load', () => {
  it('1,000 mixed requests, 50 concurrent: only acceptable answers, no 5xx but 503, bounded RSS, no leaked tensor', async () => {
    // Warm-up: one of each model call, so that lazily built state is not counted as a leak.
    const warm = await runLoad(base, buildRequests(40, 1, LIMITS), 1);
    expect(warm.figures.unexpected, JSON.stringify(warm.figures.unexpected)).toEqual([]);
    await idle();
    const tensorsBefore = tf.memory().numTensors;
    const rss = sampleRss();
    const { figures } = await runLoad(base, buildRequests(1000, 9, LIMITS), 50);
    await idle();
    const memory = rss.stop();
    const tensorsAfter = tf.memory().numTensors;
    const mib = (x: number) => Math.round(x / 2 ** 20);
    const line = {
      ...figures,
      kinds: undefined,
      rssBaselineMiB: mib(memory.baseline),
      rssPeakMiB: mib(memory.peak),
      rssEndMiB: mib(memory.end),
      tensorsBefore,
      tensorsAfter,
    };
    realStderrWrite(`load figures: ${JSON.stringify(line)}\n`);

    expect(figures.unexpected).toEqual([]);
    expect(figures.serverErrors).toBe(0);
    expect(stderr.filter((l) => l.includes('internal error'))).toEqual([]);
    // The mix really exercised every path.
    expect(figures.status['200']).toBeGreaterThan(100);
    expect(figures.status['503']).toBeGreaterThan(0); // 50 clients against 1 + 40 slots: back-pressure happened
    expect((figures.status['400'] ?? 0) + (figures.status['413'] ?? 0) + (figures.status['415'] ?? 0)).toBeGreaterThan(250);
    expect(figures.status['0']).toBeGreaterThan(50);
    expect(Object.keys(figures.kinds).length).toBeGreaterThan(20);
    // Bounded: no growth with the number of requests (the tiny models take a few MiB).
    expect(memory.peak - memory.baseline).toBeLessThan(256 * 2 ** 20);
    expect(tensorsAfter).toBe(tensorsBefore);
    // Oversize uploads were cut off far before their 64 MiB.
    expect(figures.maxOversizeSent).toBeLessThan(16 * 2 ** 20);
    // And the server still answers.
    const health = await fetch(new URL('/health', base));
    expect(health.status).toBe(200);
  }, 180_000);

  it('refuses oversize bodies before buffering them: a declared 100 MiB body, a chunked stream past the limit', async () => {
    // Declared: answered from the headers alone; the server reads (almost) nothing.
    const declared = await new Promise<{ status: number; ms: number }>((resolve, reject) => {
      const t0 = performance.now();
      const req = request({
        host: base.hostname,
        port: base.port,
        method: 'POST',
        path: '/v1/patch',
        agent: false,
        headers: { 'Content-Type': 'application/json', 'Content-Length': 100 * 2 ** 20 },
      });
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, ms: performance.now() - t0 }));
      });
      req.on('error', reject);
      req.flushHeaders();
    });
    expect(declared.status).toBe(413);
    expect(sockets.at(-1)!.bytesRead).toBeLessThan(4096);

    // Chunked: counted as it arrives and refused as soon as it passes the limit.
    const streamed = await new Promise<{ status: number; sent: number }>((resolve) => {
      let sent = 0;
      let done = false;
      const req = request({
        host: base.hostname,
        port: base.port,
        method: 'POST',
        path: '/v1/score',
        agent: false,
        headers: { 'Content-Type': 'application/json' },
      });
      const end = (status: number) => {
        if (done) return;
        done = true;
        resolve({ status, sent });
      };
      req.on('response', (res) => {
        res.resume();
        end(res.statusCode!);
      });
      req.on('error', () => end(0));
      const chunk = Buffer.alloc(16 * 1024, 0x20);
      const pump = () => {
        while (!done && sent < 64 * 2 ** 20) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
      };
      pump();
    });
    const socket = sockets.at(-1)!;
    expect([413, 0]).toContain(streamed.status);
    // The server stopped reading one chunk past its limit; the client could not push its 64 MiB.
    expect(socket.bytesRead).toBeLessThan(LIMITS.maxBodyBytes + 256 * 1024);
    expect(streamed.sent).toBeLessThan(16 * 2 ** 20);
    await idle();
  });
});
