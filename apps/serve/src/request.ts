/** Reading and validating JSON request bodies: size-limited while streaming, never buffered past the limit. */
import type { IncomingMessage } from 'node:http';
import { HttpError, badRequest } from './http-error.js';

/**
 * Reads a JSON object body. A `Content-Length` above `maxBytes` is refused before any byte is read;
 * a chunked body is counted as it arrives and refused as soon as it passes the limit.
 *
 * @throws {HttpError} 415 (not JSON), 413 (too large), 400 (malformed JSON or not an object)
 */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json')
    throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', `Content-Type must be application/json, got "${type || 'none'}"`);
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) {
    throw new HttpError(413, 'BODY_TOO_LARGE', `the body is ${declared} bytes; the limit is ${maxBytes}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new HttpError(413, 'BODY_TOO_LARGE', `the body passed the limit of ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new HttpError(400, 'MALFORMED_JSON', 'the body is not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, 'MALFORMED_JSON', `the body is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badRequest('the body must be a JSON object');
  return value as Record<string, unknown>;
}

/** Field readers that name the field and what was expected. */
export class Fields {
  constructor(private readonly body: Record<string, unknown>) {}

  /** Rejects fields the endpoint does not know (a typo must not be silently ignored). */
  only(allowed: readonly string[]): this {
    const unknown = Object.keys(this.body).filter((k) => !allowed.includes(k));
    if (unknown.length) throw badRequest(`unknown field(s): ${unknown.join(', ')} (allowed: ${allowed.join(', ')})`);
    return this;
  }

  string(name: string, options: { required: true; maxBytes: number; allowEmpty?: boolean }): string;
  string(name: string, options: { required?: false; maxBytes: number; allowEmpty?: boolean }): string | undefined;
  string(name: string, options: { required?: boolean; maxBytes: number; allowEmpty?: boolean }): string | undefined {
    const v = this.body[name];
    if (v === undefined) {
      if (options.required) throw badRequest(`"${name}" is required`);
      return undefined;
    }
    if (typeof v !== 'string') throw badRequest(`"${name}" must be a string, got ${describe(v)}`);
    if (!options.allowEmpty && v.length === 0) throw badRequest(`"${name}" must not be empty`);
    const bytes = Buffer.byteLength(v, 'utf8');
    if (bytes > options.maxBytes)
      throw new HttpError(413, 'INPUT_TOO_LARGE', `"${name}" is ${bytes} bytes; the limit is ${options.maxBytes}`);
    return v;
  }

  number(name: string, options: { min?: number; max?: number; integer?: boolean; exclusiveMin?: boolean } = {}): number | undefined {
    const v = this.body[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw badRequest(`"${name}" must be a finite number, got ${describe(v)}`);
    if (options.integer && !Number.isInteger(v)) throw badRequest(`"${name}" must be an integer, got ${v}`);
    if (options.min !== undefined && (options.exclusiveMin ? v <= options.min : v < options.min)) {
      throw badRequest(`"${name}" must be ${options.exclusiveMin ? '>' : '>='} ${options.min}, got ${v}`);
    }
    if (options.max !== undefined && v > options.max) throw badRequest(`"${name}" must be <= ${options.max}, got ${v}`);
    return v;
  }

  boolean(name: string): boolean | undefined {
    const v = this.body[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') throw badRequest(`"${name}" must be true or false, got ${describe(v)}`);
    return v;
  }

  stringList(name: string, options: { maxItems: number; maxBytes: number }): string[] | undefined {
    const v = this.body[name];
    if (v === undefined) return undefined;
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || list.some((s) => typeof s !== 'string' || s.length === 0)) {
      throw badRequest(`"${name}" must be a non-empty string or an array of them, got ${describe(v)}`);
    }
    if (list.length > options.maxItems) throw badRequest(`"${name}" holds ${list.length} items; the limit is ${options.maxItems}`);
    for (const s of list as string[]) {
      if (Buffer.byteLength(s) > options.maxBytes) throw badRequest(`an item of "${name}" is longer than ${options.maxBytes} bytes`);
    }
    return list as string[];
  }

  oneOf<T extends string>(name: string, values: readonly T[]): T | undefined {
    const v = this.body[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v))
      throw badRequest(`"${name}" must be one of ${values.join(', ')}, got ${describe(v)}`);
    return v as T;
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 30 ? `${v.slice(0, 30)}…` : v)}`;
  return `${typeof v === 'object' ? 'an object' : `the ${typeof v} ${String(v)}`}`;
}
