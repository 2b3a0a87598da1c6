#!/usr/bin/env node
/**
 * The full-size load test: starts the API on 127.0.0.1 with the shipped models (or yours),
 * in this process, sends the seeded mix of `load-driver.ts` — patch, score, generate (streamed or not),
 * malformed, oversize, early disconnects — from N concurrent clients, and prints one JSON line:
 * requests, status counts, latency percentiles, RSS (baseline, peak, end), tensors before and after,
 * and whether every answer was acceptable. Exit code 1 when one was not, or a tensor leaked.
 *
 *   npx turbo run build --filter=@bytelatent/serve && node apps/serve/dist/load-cli.js [--requests 1000] [--concurrency 50]
 */
import { parseArgs } from 'node:util';
import type { AddressInfo } from 'node:net';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '@bytelatent/nn';
import { loadServeModels } from './load-models.js';
import { createApiServer } from './server.js';
import { buildRequests, runLoad, sampleRss, type LoadLimits } from './load-driver.js';

tf.env().set('PROD', true);

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '1000' },
      concurrency: { type: 'string', default: '50' },
      seed: { type: 'string', default: '9' },
      'max-queue': { type: 'string', default: '16' },
      backend: { type: 'string', default: 'auto' },
      patcher: { type: 'string' },
      blt: { type: 'string' },
    },
    strict: true,
  });
  const int = (name: string, v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be an integer >= 0, got "${v}"`);
    return n;
  };
  const backend = await initBackend({ backend: values.backend as 'auto' | BackendName });
  const { service } = await loadServeModels({ patcher: values.patcher, blt: values.blt, backend: backend.name });
  // The server's defaults (as `bytelatent-serve` runs), except the queue, which is a flag.
  const limits: LoadLimits = { maxBodyBytes: 64 * 1024, maxTextBytes: 16 * 1024, maxPromptBytes: 4 * 1024, maxGenerateBytes: 1024 };
  const { server, limiter } = createApiServer({ service, ...limits, maxQueue: int('max-queue', values['max-queue']) });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  try {
    // Until the server has no work left (a disconnected client's work stops at its next check).
    const idle = async () => {
      for (let i = 0; i < 2000 && (limiter.stats.active > 0 || limiter.stats.queued > 0); i++) await new Promise((r) => setTimeout(r, 10));
    };
    await runLoad(base, buildRequests(40, 1, limits), 1); // warm-up
    await idle();
    const tensorsBefore = tf.memory().numTensors;
    const rss = sampleRss();
    const { figures } = await runLoad(
      base,
      buildRequests(int('requests', values.requests), int('seed', values.seed), limits),
      Math.max(1, int('concurrency', values.concurrency)),
    );
    await idle();
    const memory = rss.stop();
    const tensorsAfter = tf.memory().numTensors;
    const mib = (x: number) => Math.round((x / 2 ** 20) * 10) / 10;
    const { kinds: _kinds, unexpected, ...rest } = figures;
    const ok = unexpected.length === 0 && figures.serverErrors === 0 && tensorsAfter === tensorsBefore;
    const line = {
      bench: 'serve-load',
      backend: backend.name,
      bltParameters: service.blt?.parameterCount() ?? 0,
      ...rest,
      unexpected: unexpected.length,
      ...(unexpected.length ? { unexpectedSample: unexpected.slice(0, 5) } : {}),
      rssBaselineMiB: mib(memory.baseline),
      rssPeakMiB: mib(memory.peak),
      rssEndMiB: mib(memory.end),
      tensorsBefore,
      tensorsAfter,
      ok,
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
    return ok ? 0 : 1;
  } finally {
    const closed = new Promise((r) => server.close(() => r(undefined)));
    server.closeAllConnections();
    await closed;
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  },
);
