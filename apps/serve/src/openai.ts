/**
 * OpenAI-compatible endpoints beside our own: `GET /v1/models` and `POST /v1/completions` (the
 * legacy completions API: a prompt in, text out), so that existing clients — the `openai` npm
 * package, LangChain, curl scripts — talk to a BLT unchanged. A "token" here is a byte: the model
 * reads and writes UTF-8 bytes, so `max_tokens` and the usage block count bytes.
 *
 * Field names, defaults and the streamed format follow OpenAI's API reference for
 * `POST /v1/completions`: `data: {...}` chunks of `object: "text_completion"`, the last with
 * `finish_reason`, an optional usage chunk (`stream_options.include_usage`), then `data: [DONE]`.
 */
import { randomInt, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError, badRequest, toHttpError } from './http-error.js';
import type { ConcurrencyLimiter } from './limiter.js';
import type { GenerateParams, GenerateResult, ModelService } from './model-service.js';
import { Fields, readJsonBody } from './request.js';
import { openEventStream, sendJson } from './response.js';
import { DEFAULT_SAMPLING } from './sampling-defaults.js';

/** What the OpenAI routes need from the server. */
export interface OpenAiContext {
  readonly service: ModelService;
  readonly limiter: ConcurrencyLimiter;
  /** The id clients name the model by in `model` (listed by `GET /v1/models`). */
  readonly modelId: string;
  /** When the model was loaded, Unix seconds (`created` of the model object). */
  readonly created: number;
  readonly maxBodyBytes: number;
  readonly maxPromptBytes: number;
  readonly maxGenerateBytes: number;
}

type Handler = (req: IncomingMessage, res: ServerResponse, signal: AbortSignal) => Promise<void>;

/** OpenAI's `finish_reason`: the model's end of text and our stop strings are both "stop"; running out of context is "length". */
const FINISH_REASON: Record<GenerateResult['finishReason'], 'stop' | 'length'> = {
  length: 'length',
  stop: 'stop',
  eos: 'stop',
  context: 'length',
};

/** Fields of `POST /v1/completions` we read; anything else is refused, as OpenAI refuses unknown arguments. */
const COMPLETION_FIELDS = [
  'model',
  'prompt',
  'max_tokens',
  'temperature',
  'top_p',
  'stop',
  'seed',
  'stream',
  'stream_options',
  'n',
  'echo',
  'user',
] as const;

/** OpenAI's default `max_tokens` for completions. */
const DEFAULT_MAX_TOKENS = 16;

/**
 * The model id for a source description: the file or folder name without `.safetensors` and
 * without our parenthesised notes (`blt-demo (shipped)` → `blt-demo`, `/models/blt-1b/` → `blt-1b`).
 */
export function modelIdFor(source: string): string {
  const bare = source.replace(/\s*\(.*\)\s*$/, '').replace(/[\\/]+$/, '');
  const name = bare.split(/[\\/]/).pop() ?? bare;
  return name.replace(/\.safetensors$/i, '') || 'blt';
}

/** The routes, keyed by path and method, in the shape of the server's own. */
export function openAiRoutes(ctx: OpenAiContext): Record<string, Record<string, Handler>> {
  const model = { id: ctx.modelId, object: 'model', created: ctx.created, owned_by: 'bytelatent' };
  return {
    '/v1/models': {
      GET: async (_req, res) => sendJson(res, 200, { object: 'list', data: [model] }),
    },
    [`/v1/models/${ctx.modelId}`]: {
      GET: async (_req, res) => sendJson(res, 200, model),
    },
    '/v1/completions': {
      POST: async (req, res, signal) => {
        const request = readCompletionRequest(await readJsonBody(req, ctx.maxBodyBytes), ctx);
        const id = `cmpl-${randomUUID().replace(/-/g, '')}`;
        const created = Math.floor(Date.now() / 1000);
        const head = { id, object: 'text_completion', created, model: ctx.modelId } as const;
        const promptBytes = Buffer.byteLength(request.params.prompt, 'utf8');
        const usage = (completionBytes: number) => ({
          prompt_tokens: promptBytes,
          completion_tokens: completionBytes,
          total_tokens: promptBytes + completionBytes,
        });
        const echoed = request.echo ? request.params.prompt : '';
        if (!request.stream) {
          const r = await ctx.limiter.run(() => ctx.service.generate(request.params, signal), signal);
          sendJson(res, 200, {
            ...head,
            choices: [{ text: echoed + r.text, index: 0, logprobs: null, finish_reason: FINISH_REASON[r.finishReason] }],
            usage: usage(r.bytes),
          });
          return;
        }
        await ctx.limiter.run(async () => {
          const event = openEventStream(res);
          const send = (data: unknown) => event(JSON.stringify(data));
          const choice = (text: string, finishReason: string | null) => ({
            ...head,
            choices: [{ text, index: 0, logprobs: null, finish_reason: finishReason }],
          });
          try {
            if (echoed) send(choice(echoed, null));
            const r = await ctx.service.generate(request.params, signal, (chunk) => send(choice(chunk.text, null)));
            send(choice('', FINISH_REASON[r.finishReason]));
            if (request.includeUsage) send({ ...head, choices: [], usage: usage(r.bytes) });
            event('[DONE]');
          } catch (e) {
            // The client went away: nobody to tell. Otherwise an error event, as OpenAI sends one mid-stream.
            if (!signal.aborted || signal.reason instanceof HttpError) send(toHttpError(e, signal).toJSON());
          }
          res.end();
        }, signal);
      },
    },
  };
}

interface CompletionRequest {
  readonly params: GenerateParams;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly echo: boolean;
}

function readCompletionRequest(body: Record<string, unknown>, ctx: OpenAiContext): CompletionRequest {
  const f = new Fields(body).only(COMPLETION_FIELDS);
  const model = f.string('model', { required: true, maxBytes: 256 });
  if (model !== ctx.modelId)
    throw new HttpError(
      404,
      'MODEL_NOT_FOUND',
      `the model ${JSON.stringify(model)} does not exist; this server has ${JSON.stringify(ctx.modelId)} (GET /v1/models)`,
    );
  // OpenAI also takes a list of prompts and token-id arrays; one text prompt is what a byte model can answer.
  let prompt = body['prompt'];
  if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === 'string') prompt = prompt[0];
  if (prompt !== undefined && typeof prompt !== 'string') {
    throw badRequest(
      '"prompt" must be a string (or a list of one string): this model reads text as bytes, not token ids, and answers one prompt per request',
    );
  }
  const text = new Fields({ prompt: prompt ?? '' }).string('prompt', { required: true, maxBytes: ctx.maxPromptBytes, allowEmpty: true });
  const n = f.number('n', { min: 1, integer: true });
  if (n !== undefined && n !== 1) throw badRequest(`"n" must be 1 (one completion per request), got ${n}`);
  f.string('user', { maxBytes: 256, allowEmpty: true });
  const streamOptions = body['stream_options'];
  if (streamOptions !== undefined && streamOptions !== null && (typeof streamOptions !== 'object' || Array.isArray(streamOptions)))
    throw badRequest('"stream_options" must be an object');
  const includeUsage = streamOptions
    ? (new Fields(streamOptions as Record<string, unknown>).only(['include_usage']).boolean('include_usage') ?? false)
    : false;
  const stream = f.boolean('stream') ?? false;
  if (streamOptions && !stream) throw badRequest('"stream_options" is only allowed with "stream": true');
  const temperature = f.number('temperature', { min: 0, max: 2 }) ?? DEFAULT_SAMPLING.temperature;
  return {
    params: {
      prompt: text,
      maxBytes:
        f.number('max_tokens', { min: 1, max: ctx.maxGenerateBytes, integer: true }) ?? Math.min(DEFAULT_MAX_TOKENS, ctx.maxGenerateBytes),
      temperature,
      topK: 0,
      topP: f.number('top_p', { min: 0, max: 1, exclusiveMin: true }) ?? DEFAULT_SAMPLING.topP,
      // No seed: a fresh one, so that repeated sampled requests differ (as OpenAI's do).
      seed: f.number('seed', { integer: true, min: 0, max: 2 ** 32 - 1 }) ?? randomInt(2 ** 32 - 1),
      stop: f.stringList('stop', { maxItems: 4, maxBytes: 64 }) ?? [],
    },
    stream,
    includeUsage,
    echo: f.boolean('echo') ?? false,
  };
}
