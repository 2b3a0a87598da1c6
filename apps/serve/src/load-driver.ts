/**
 * A seeded HTTP load generator for the API, shared by the load test (`load.test.ts`, small
 * models) and the full-size load script (`load-cli.ts`, the shipped models): a mix of patch, score and
 * generate requests — streamed and not —, malformed ones, oversize ones and clients that disconnect
 * early, sent by N concurrent clients over keep-alive connections. Every request says which answers
 * are acceptable; the figures say what came back, how fast, and what the server process did (RSS).
 */
import { seededUniform } from '@bytelatent/nn';
import { Agent, request, type IncomingMessage } from 'node:http';

/** Limits the requests are built against (the server's options). */
export interface LoadLimits {
  readonly maxBodyBytes: number;
  readonly maxTextBytes: number;
  readonly maxPromptBytes: number;
  readonly maxGenerateBytes: number;
}

/** How a request ends on the client side. */
type Ending =
  /** Send everything, read the whole answer. */
  | 'complete'
  /** Send the headers and half the body, then close the connection. */
  | 'mid-body'
  /** Send the request, then close the connection before the answer (after `delayMs`). */
  | 'before-answer'
  /** Read the answer's headers and its first bytes, then close the connection. */
  | 'mid-answer'
  /** Declare a huge Content-Length, send no body: the answer must come at once. */
  | 'declared-oversize'
  /** Stream a chunked body far past the limit until the server refuses it. */
  | 'streamed-oversize';

/** One request of the mix. */
export interface LoadRequest {
  readonly kind: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer;
  readonly ending: Ending;
  readonly delayMs?: number;
  /** Acceptable statuses; 0 stands for "no answer" (the client closed first, or the server reset a refused upload). */
  readonly accept: readonly number[];
}

/** What one request got. */
export interface LoadResult {
  readonly kind: string;
  /** HTTP status, or 0 when the client closed first or the connection was reset. */
  readonly status: number;
  readonly ms: number;
  /** The error code of the body (`{"error":{"code"}}`), when there is one. */
  readonly code?: string;
  readonly accepted: boolean;
  /** Body bytes the client managed to send (oversize uploads). */
  readonly sent?: number;
}

/** mulberry32 in [0, 1) from a 32-bit seed: `@bytelatent/nn`'s `seededUniform` (one implementation for the project). */
export const mulberry32: (seed: number) => () => number = seededUniform;

const PIECES = [
  'the ',
  'cat ',
  'Ünïcode ',
  '✓ ',
  '日本語 ',
  '\u0000',
  '\t',
  'def f(x):\n',
  '🙂',
  '\ud800',
  '\udfff',
  '"quoted" ',
  '\\',
  'a'.repeat(9),
];

/** A random text of about `bytes` UTF-8 bytes (NUL, lone surrogates, emoji and CJK included). */
function text(random: () => number, bytes: number): string {
  let out = '';
  while (Buffer.byteLength(out) < bytes) out += PIECES[Math.floor(random() * PIECES.length)]!;
  return out;
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const JSON_HEADERS = { 'Content-Type': 'application/json' };

/**
 * The seeded mix: about 45 % valid model requests (patch 22 %, score 10 %, generate 13 %, a third of
 * those streamed), 25 % malformed, 12 % oversize, 13 % disconnecting early, 5 % GET.
 *
 * @param count - requests
 * @param seed - the mix's seed
 * @param limits - the server's limits (oversize requests pass them, valid ones stay under)
 */
export function buildRequests(count: number, seed: number, limits: LoadLimits): LoadRequest[] {
  const random = mulberry32(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const out: LoadRequest[] = [];
  const post = (
    kind: string,
    path: string,
    body: Buffer,
    accept: number[],
    ending: Ending = 'complete',
    extra: Partial<LoadRequest> = {},
  ): LoadRequest => ({
    kind,
    method: 'POST',
    path,
    headers: JSON_HEADERS,
    body,
    ending,
    accept,
    ...extra,
  });
  // Valid requests may meet a full queue: 503 is the deliberate answer then.
  const OK = [200, 503];
  const textBytes = () => (random() < 0.8 ? int(1, 200) : int(200, Math.floor(limits.maxTextBytes * 0.9)));
  const generateBody = () => ({
    prompt: text(random, int(0, Math.min(48, limits.maxPromptBytes - 8))),
    maxBytes: int(1, Math.min(12, limits.maxGenerateBytes)),
    temperature: random() < 0.5 ? 0 : 0.8,
    seed: int(0, 1000),
  });
  for (let i = 0; i < count; i++) {
    const r = random();
    if (r < 0.22) {
      const mode = pick(['entropy', 'entropy', 'monotonic', 'space', 'static', 'byte'] as const);
      const body: Record<string, unknown> = { text: text(random, textBytes()), mode };
      if (mode === 'monotonic') body['threshold'] = 0.5;
      if (mode === 'static') body['patchSize'] = int(1, 8);
      if (random() < 0.3) body['maxPatchLength'] = int(1, 16);
      out.push(post('patch', '/v1/patch', json(body), OK));
    } else if (r < 0.32) {
      out.push(post('score', '/v1/score', json({ text: text(random, Math.min(textBytes(), 400)) }), OK));
    } else if (r < 0.45) {
      const stream = random() < 0.33;
      out.push(post(stream ? 'generate-stream' : 'generate', '/v1/generate', json({ ...generateBody(), stream }), OK));
    } else if (r < 0.7) {
      const m = pick([
        () => post('malformed:json', '/v1/patch', Buffer.from('{"text": "abc'), [400]),
        () => post('malformed:not-object', '/v1/score', Buffer.from('[1,2,3]'), [400]),
        () => post('malformed:utf8', '/v1/patch', Buffer.from([0x7b, 0x22, 0x74, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), [400]),
        () => ({ ...post('malformed:content-type', '/v1/patch', json({ text: 'x' }), [415]), headers: { 'Content-Type': 'text/plain' } }),
        () => post('malformed:unknown-field', '/v1/generate', json({ prompt: 'x', colour: 'red' }), [400]),
        () => post('malformed:type', '/v1/patch', json({ text: 42 }), [400]),
        () => post('malformed:empty-text', '/v1/score', json({ text: '' }), [400]),
        () => post('malformed:range', '/v1/generate', json({ prompt: 'x', maxBytes: limits.maxGenerateBytes + 1 }), [400]),
        () => post('malformed:nan', '/v1/generate', Buffer.from('{"prompt":"x","temperature":NaN}'), [400]),
        () => post('malformed:mode', '/v1/patch', json({ text: 'abc', mode: 'wordpiece' }), [400]),
        // Checked by the patcher, in the queue: a full queue answers first.
        () => post('malformed:static-without-size', '/v1/patch', json({ text: 'abc', mode: 'static' }), [400, 503]),
        () => ({ kind: 'malformed:method', method: 'DELETE', path: '/v1/patch', headers: {}, ending: 'complete' as const, accept: [405] }),
        () => ({
          kind: 'malformed:route',
          method: 'POST',
          path: `/v2/${int(0, 99)}`,
          headers: JSON_HEADERS,
          body: json({}),
          ending: 'complete' as const,
          accept: [404],
        }),
        () => ({
          kind: 'malformed:traversal',
          method: 'GET',
          path: '/..%2f..%2fpackage.json',
          headers: {},
          ending: 'complete' as const,
          accept: [400, 404],
        }),
      ]);
      out.push(m());
    } else if (r < 0.82) {
      const m = pick([
        () => {
          // Over the text limit; over the body limit too if the limits are close (then the server may reset the unread upload).
          const body = json({ text: 'x'.repeat(limits.maxTextBytes + 1) });
          return post('oversize:text', '/v1/patch', body, body.length > limits.maxBodyBytes ? [413, 0] : [413]);
        },
        () => post('oversize:prompt', '/v1/generate', json({ prompt: 'y'.repeat(limits.maxPromptBytes + 1) }), [413]),
        () => post('oversize:body', '/v1/score', json({ text: 'z'.repeat(limits.maxBodyBytes + 10) }), [413, 0]),
        () => ({
          ...post('oversize:declared', '/v1/patch', Buffer.alloc(0), [413], 'declared-oversize'),
          headers: { ...JSON_HEADERS, 'Content-Length': String(100 * 1024 * 1024) },
        }),
        () => post('oversize:streamed', '/v1/score', Buffer.alloc(0), [413, 0], 'streamed-oversize'),
      ]);
      out.push(m());
    } else if (r < 0.95) {
      const m = pick([
        () => post('disconnect:mid-body', '/v1/patch', json({ text: text(random, 300) }), [0], 'mid-body'),
        () =>
          post('disconnect:before-answer', '/v1/score', json({ text: text(random, 200) }), [0, 200, 503], 'before-answer', {
            delayMs: int(0, 30),
          }),
        () => post('disconnect:generate', '/v1/generate', json(generateBody()), [0, 200, 503], 'before-answer', { delayMs: int(0, 60) }),
        () =>
          post(
            'disconnect:mid-stream',
            '/v1/generate',
            json({ ...generateBody(), maxBytes: Math.min(64, limits.maxGenerateBytes), stream: true }),
            [0, 200, 503],
            'mid-answer',
          ),
      ]);
      out.push(m());
    } else {
      out.push({ kind: 'health', method: 'GET', path: '/health', headers: {}, ending: 'complete', accept: [200] });
    }
  }
  return out;
}

function errorCode(body: string): string | undefined {
  try {
    return (JSON.parse(body) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

/** Sends one request as its `ending` says. Never rejects. */
export function send(base: URL, spec: LoadRequest, agent: Agent): Promise<LoadResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    let sent = 0;
    const finish = (status: number, code?: string) => {
      if (settled) return;
      settled = true;
      resolve({
        kind: spec.kind,
        status,
        ms: performance.now() - t0,
        ...(code ? { code } : {}),
        accepted: spec.accept.includes(status),
        ...(spec.ending.endsWith('oversize') ? { sent } : {}),
      });
    };
    const streaming = spec.ending === 'streamed-oversize';
    const headers: Record<string, string | number> = { ...spec.headers };
    if (spec.body && !streaming && headers['Content-Length'] === undefined) headers['Content-Length'] = spec.body.length;
    // Connections the client cuts, or the server closes, must not go back to the keep-alive pool.
    const ownAgent = spec.ending !== 'complete' || spec.kind.startsWith('oversize');
    const req = request({
      host: base.hostname,
      port: base.port,
      method: spec.method,
      path: spec.path,
      headers,
      agent: ownAgent ? false : agent,
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      // A keep-alive socket that the server closed for idleness just as this request went out (Node's
      // documented race, frequent on a loaded machine): the request never reached the server, so
      // send it again on a fresh connection, as an HTTP client library would.
      if (req.reusedSocket && e.code === 'ECONNRESET' && spec.ending === 'complete' && !settled) {
        settled = true;
        void send(base, spec, agent).then(resolve);
        return;
      }
      finish(0);
    });
    req.on('response', (res: IncomingMessage) => {
      if (spec.ending === 'mid-answer') {
        res.once('data', () => {
          req.destroy();
          finish(0);
        });
        res.on('end', () => finish(res.statusCode ?? 0));
        res.on('error', () => finish(0));
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => finish(res.statusCode ?? 0, errorCode(Buffer.concat(chunks).toString('utf8'))));
      res.on('error', () => finish(res.statusCode ?? 0));
      res.on('close', () => finish(res.statusCode ?? 0, errorCode(Buffer.concat(chunks).toString('utf8'))));
    });
    switch (spec.ending) {
      case 'complete':
        req.end(spec.body);
        break;
      case 'mid-body':
        req.write(spec.body!.subarray(0, spec.body!.length >> 1));
        setTimeout(() => {
          req.destroy();
          finish(0);
        }, 2);
        break;
      case 'before-answer':
        req.end(spec.body);
        setTimeout(() => {
          req.destroy();
          finish(0);
        }, spec.delayMs ?? 0);
        break;
      case 'mid-answer':
        req.end(spec.body);
        break;
      case 'declared-oversize':
        req.flushHeaders();
        break;
      case 'streamed-oversize': {
        // 16 KiB chunks, up to 64 MiB, with back-pressure: stops when the server answers or resets.
        const chunk = Buffer.alloc(16 * 1024, 0x20);
        const pump = () => {
          while (!settled && sent < 64 * 1024 * 1024) {
            sent += chunk.length;
            if (!req.write(chunk)) {
              req.once('drain', pump);
              return;
            }
          }
          if (!settled) req.end();
        };
        req.write('{"text":"');
        pump();
        break;
      }
    }
  });
}

/** Figures of a load run. */
export interface LoadFigures {
  readonly requests: number;
  readonly concurrency: number;
  readonly seconds: number;
  /** Count per status (0: no answer: the client closed first, or a refused upload was reset). */
  readonly status: Readonly<Record<string, number>>;
  /** Count per request kind. */
  readonly kinds: Readonly<Record<string, number>>;
  /** Answers outside a request's acceptable statuses, with what came back. */
  readonly unexpected: ReadonlyArray<{ kind: string; status: number; code?: string }>;
  /** 5xx answers other than the deliberate 503 OVERLOADED. */
  readonly serverErrors: number;
  /** Latency of the requests that got an answer, ms. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Most body bytes a streamed oversize upload got through before it was refused. */
  readonly maxOversizeSent: number;
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/**
 * Sends `requests` with `concurrency` clients (each takes the next request when its last one ends).
 *
 * @returns every result and the figures
 */
export async function runLoad(
  base: URL,
  requests: readonly LoadRequest[],
  concurrency: number,
): Promise<{ results: LoadResult[]; figures: LoadFigures }> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const results: LoadResult[] = new Array(requests.length);
  let next = 0;
  const t0 = performance.now();
  const client = async () => {
    while (next < requests.length) {
      const i = next++;
      results[i] = await send(base, requests[i]!, agent);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  const status: Record<string, number> = {};
  const kinds: Record<string, number> = {};
  for (const r of results) {
    status[r.status] = (status[r.status] ?? 0) + 1;
    kinds[r.kind] = (kinds[r.kind] ?? 0) + 1;
  }
  const answered = results
    .filter((r) => r.status > 0)
    .map((r) => r.ms)
    .sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 10) / 10;
  return {
    results,
    figures: {
      requests: results.length,
      concurrency,
      seconds: round(seconds),
      status,
      kinds,
      unexpected: results.filter((r) => !r.accepted).map((r) => ({ kind: r.kind, status: r.status, ...(r.code ? { code: r.code } : {}) })),
      serverErrors: results.filter((r) => r.status >= 500 && !(r.status === 503 && r.code === 'OVERLOADED')).length,
      p50Ms: round(quantile(answered, 0.5)),
      p99Ms: round(quantile(answered, 0.99)),
      maxMs: round(answered.at(-1) ?? 0),
      maxOversizeSent: Math.max(0, ...results.filter((r) => r.kind === 'oversize:streamed').map((r) => r.sent ?? 0)),
    },
  };
}

/** Samples the process's resident set size every `intervalMs` until stopped. */
export function sampleRss(intervalMs = 25): { stop: () => { baseline: number; peak: number; end: number } } {
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, intervalMs);
  return {
    stop: () => {
      clearInterval(timer);
      const end = process.memoryUsage().rss;
      return { baseline, peak: Math.max(peak, end), end };
    },
  };
}
