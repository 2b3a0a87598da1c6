/** Writing answers: a JSON body, and server-sent events (our `/v1/generate` stream and OpenAI's). */
import type { ServerResponse } from 'node:http';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * Starts a server-sent event stream (no proxy buffering) and returns its writer: one event per call,
 * `data` already serialised (JSON, or OpenAI's `[DONE]`), optionally named. Events after the client
 * went away are dropped.
 */
export function openEventStream(res: ServerResponse): (data: string, event?: string) => void {
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-cache',
    Connection: 'keep-alive',
    'X-Accel-Buffering': 'no',
  });
  return (data, event) => {
    if (!res.writableEnded && !res.destroyed) res.write(`${event ? `event: ${event}\n` : ''}data: ${data}\n\n`);
  };
}
