// The OpenAI-compatible endpoints, driven by the real `openai` npm client against the server on
// loopback: what an existing client sends and reads must work unchanged.
import type { AddressInfo } from 'node:net';
import * as tf from '@tensorflow/tfjs-core';
import OpenAI, { APIError, NotFoundError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ByteLatentTransformer, generate } from '@bytelatent/blt';
import { EntropyPatcher } from '@bytelatent/entropy-patcher';
import { createApiServer } from './server.js';
import { ModelService } from './model-service.js';
import { createGenerator } from './generator.js';
import { modelIdFor } from './openai.js';
import { TINY_BLT_ARGS } from './test-fixtures.js';

const MODEL = 'blt-test';
let base = '';
let client: OpenAI;
let close: () => Promise<void>;
let patcher: EntropyPatcher;
let blt: ByteLatentTransformer;

beforeAll(async () => {
  patcher = await EntropyPatcher.pretrained({ threads: 1 });
  blt = new ByteLatentTransformer(TINY_BLT_ARGS, 3);
  const service = new ModelService(patcher, blt, createGenerator(blt, patcher), {
    backend: tf.getBackend(),
    patcherModel: 'pretrained',
    bltModel: `/models/${MODEL}.safetensors`,
  });
  const { server } = createApiServer({ service, maxPromptBytes: 256, maxGenerateBytes: 48 });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
  close = () => new Promise((r) => server.close(() => r()));
});
afterAll(async () => {
  await close();
  patcher.dispose();
  blt.dispose();
});

describe('OpenAI-compatible API (the openai npm client)', () => {
  it('lists the model, named after its file', async () => {
    const models = [];
    for await (const m of client.models.list()) models.push(m);
    expect(models.map((m) => [m.id, m.object, m.owned_by])).toEqual([[MODEL, 'model', 'bytelatent']]);
    expect((await client.models.retrieve(MODEL)).id).toBe(MODEL);
    expect(modelIdFor('blt-demo (shipped)')).toBe('blt-demo');
    expect(modelIdFor('/tmp/blt-1b/')).toBe('blt-1b');
  });

  it('completes a prompt: greedy text equals the library, max_tokens counts bytes, usage counts bytes', async () => {
    const prompt = 'Alice was';
    const r = await client.completions.create({ model: MODEL, prompt, max_tokens: 20, temperature: 0 });
    const expected = await generate(blt, prompt, { patcher, maxBytes: 20 });
    expect(r.object).toBe('text_completion');
    expect(r.model).toBe(MODEL);
    expect(r.choices[0]!.text).toBe(expected.text);
    expect(r.choices[0]!.finish_reason).toBe('length');
    expect(r.usage).toEqual({ prompt_tokens: 9, completion_tokens: expected.bytes.length, total_tokens: 9 + expected.bytes.length });
    expect(expected.bytes.length).toBe(20);
  });

  it('streams as server-sent events ending in [DONE]; the streamed text equals the plain one at temperature 0', async () => {
    const request = { model: MODEL, prompt: 'The ', max_tokens: 24, temperature: 0 } as const;
    const plain = await client.completions.create(request);
    const stream = await client.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
    let text = '';
    const finishes: Array<string | null> = [];
    let usage: unknown;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      for (const c of chunk.choices) {
        text += c.text;
        finishes.push(c.finish_reason);
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(plain.choices[0]!.text);
    expect(chunks).toBeGreaterThan(2);
    expect(finishes.at(-1)).toBe('length');
    expect(usage).toEqual(plain.usage);
    // The wire format itself: data lines, then the terminator.
    const res = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ ...request, stream: true }),
    });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const body = await res.text();
    expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(
      body
        .split('\n\n')
        .filter(Boolean)
        .every((event) => event.startsWith('data: ')),
    ).toBe(true);
  });

  it('samples with a seed reproducibly, stops at a stop string, echoes the prompt', async () => {
    const sampled = { model: MODEL, prompt: 'x', max_tokens: 16, temperature: 1, top_p: 0.9, seed: 11 };
    const a = await client.completions.create(sampled);
    const b = await client.completions.create(sampled);
    expect(a.choices[0]!.text).toBe(b.choices[0]!.text);
    const greedy = (await client.completions.create({ model: MODEL, prompt: 'ab', max_tokens: 30, temperature: 0 })).choices[0]!.text;
    // Stop at a printable ASCII character the greedy text contains after its start (an untrained
    // model also writes bytes that are not UTF-8, which decode to U+FFFD).
    const stop = [...greedy].find((ch, i) => i > 0 && /[!-~]/.test(ch));
    expect(stop).toBeDefined();
    const stopped = await client.completions.create({ model: MODEL, prompt: 'ab', max_tokens: 30, temperature: 0, stop: [stop!] });
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
    expect(stopped.choices[0]!.text).toBe(greedy.slice(0, greedy.indexOf(stop!)));
    const echoed = await client.completions.create({ model: MODEL, prompt: 'ab', max_tokens: 30, temperature: 0, echo: true });
    expect(echoed.choices[0]!.text).toBe('ab' + greedy);
  });

  it('refuses what it cannot do with OpenAI-shaped errors the client raises', async () => {
    await expect(client.completions.create({ model: 'gpt-4', prompt: 'x' })).rejects.toBeInstanceOf(NotFoundError);
    const refusals: Array<[Record<string, unknown>, RegExp]> = [
      [{ prompt: [1, 2, 3] }, /token ids/],
      [{ prompt: 'x', n: 2 }, /"n" must be 1/],
      [{ prompt: 'x', max_tokens: 49 }, /max_tokens/],
      [{ prompt: 'x', temperature: 3 }, /temperature/],
      [{ prompt: 'x', logit_bias: {} }, /unknown field/],
      [{ prompt: 'x'.repeat(300) }, /prompt/],
    ];
    for (const [fields, message] of refusals) {
      const error = await client.completions.create({ model: MODEL, ...fields } as never).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, JSON.stringify(fields)).toBeInstanceOf(APIError);
      expect((error as APIError).message).toMatch(message);
      expect([(error as APIError).status, (error as APIError).type]).toEqual([
        fields['prompt'] === 'x'.repeat(300) ? 413 : 400,
        'invalid_request_error',
      ]);
    }
  });

  it('leaks no tensors over repeated completions', async () => {
    await client.completions.create({ model: MODEL, prompt: 'warm', max_tokens: 4 });
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await client.completions.create({ model: MODEL, prompt: 'leak', max_tokens: 8 });
    for await (const chunk of await client.completions.create({ model: MODEL, prompt: 'leak', max_tokens: 8, stream: true }))
      expect(chunk.object).toBe('text_completion');
    expect(tf.memory().numTensors).toBe(before);
  });
});
