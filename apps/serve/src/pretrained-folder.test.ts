// The server on a model folder of a published layout (`--model DIR`): loaded with loadPretrained, its
// patching settings honoured, /health naming the layout, and the folder handed to the page under
// /models/ so that the page's loader (the same createModelServiceFromPretrained) reads it by URL.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ByteLatentTransformer, generate, loadPretrained, savePretrained } from '@bytelatent/blt';
import { EntropyModel, EntropyPatcher, PATCHER_METADATA_KEY, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import { initBackend } from '@bytelatent/nn';
import { loadServeModels, type LoadedModels } from './load-models.js';
import { createApiServer } from './server.js';
import { createModelServiceFromPretrained } from './service-from-bytes.js';
import { TINY_FOLDER_BLT_ARGS } from './test-fixtures.js';

const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/cli.js');
/** Written by Meta's reference in the consolidated layout: blt/ (params.json + consolidated.pth) and entropy_model/ beside it. */
const CONSOLIDATED = resolve(dirname(fileURLToPath(import.meta.url)), '../../../tools/golden/fixtures/layout-consolidated/pretrained');

const ARGS = TINY_FOLDER_BLT_ARGS;
const ENTROPY_ARGS: EntropyModelArgs = {
  dim: 16,
  n_layers: 1,
  n_heads: 2,
  max_seqlen: 64,
  vocab_size: 260,
  attn_bias_type: 'local_block_causal',
  sliding_window: 64,
  multiple_of: 16,
};
/** The folder's patching settings: a threshold the random entropy model passes now and then, and a cap. */
const SETTINGS = { mode: 'entropy' as const, threshold: 5.1, maxPatchLength: 3 };
const PROMPT = 'The folder says ';

let dir: string;
const folders: Record<'hub' | 'transformers', string> = { hub: '', transformers: '' };
let entropyFile: string;

async function listen(models: LoadedModels): Promise<{ base: string; server: Server }> {
  const { server } = createApiServer({
    service: models.service,
    ...(models.files ? { modelFiles: models.files } : {}),
    ...(models.folders ? { modelFolders: models.folders } : {}),
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

const closeServer = (server: Server) => new Promise((r) => server.close(r));

/** What the library generates from the folder, greedily. */
async function inProcess(folder: string, maxBytes: number): Promise<string> {
  const loaded = await loadPretrained(folder);
  try {
    return (await generate(loaded.model, PROMPT, { patcher: loaded.patcher!, maxBytes })).text;
  } finally {
    loaded.dispose();
  }
}

beforeAll(async () => {
  tf.env().set('PROD', true);
  await initBackend({ backend: 'cpu' });
  dir = mkdtempSync(join(tmpdir(), 'serve-pretrained-'));
  const blt = new ByteLatentTransformer(ARGS, 5);
  const patcher = EntropyPatcher.fromModel(new EntropyModel(ENTROPY_ARGS, 6), SETTINGS);
  for (const layout of ['hub', 'transformers'] as const) {
    folders[layout] = join(dir, layout);
    await savePretrained(blt, patcher, folders[layout], { layout });
  }
  // A single-file entropy model whose own defaults differ from the folder's settings.
  entropyFile = join(dir, 'entropy.safetensors');
  writeFileSync(
    entropyFile,
    await patcher.model.toSafetensors({ [PATCHER_METADATA_KEY]: JSON.stringify({ mode: 'entropy', threshold: 1 }) }),
  );
  blt.dispose();
  patcher.dispose();
});

describe('serve --model DIR', () => {
  it('a hub folder: /health names the layout and the settings, /v1/generate answers as the library does, /v1/score and /v1/patch run', async () => {
    const models = await loadServeModels({ model: folders.hub, backend: 'cpu' });
    const { base, server } = await listen(models);
    try {
      const health = (await (await fetch(`${base}/health`)).json()) as {
        models: { blt: { layout: string; source: string }; patcher: { layout: string; defaults: unknown } };
      };
      expect(health.models.blt.layout).toBe('hub');
      expect(health.models.blt.source).toBe(folders.hub);
      expect(health.models.patcher.layout).toBe('hub');
      expect(health.models.patcher.defaults).toMatchObject(SETTINGS);
      const res = await fetch(`${base}/v1/generate`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ prompt: PROMPT, maxBytes: 12, temperature: 0 }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { text: string; finishReason: string };
      expect(body.text).toBe(await inProcess(folders.hub, 12));
      const patch = (await (
        await fetch(`${base}/v1/patch`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ text: 'abcdefghijklmnop' }),
        })
      ).json()) as {
        patches: Array<{ start: number; end: number }>;
        threshold: number;
      };
      expect(patch.threshold).toBe(SETTINGS.threshold);
      // The folder's max_patch_length: no patch longer than 3 bytes.
      expect(Math.max(...patch.patches.map((p) => p.end - p.start))).toBeLessThanOrEqual(3);
      const score = await fetch(`${base}/v1/score`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ text: 'a folder model' }),
      });
      expect(score.status).toBe(200);
    } finally {
      await closeServer(server);
      models.service.blt?.dispose();
      models.service.patcher.dispose();
    }
  });

  it('hands the folder to the page: /models/index.json, the files under /models/blt/, and the page loader reads them by URL', async () => {
    const models = await loadServeModels({ model: folders.hub, backend: 'cpu' });
    const { base, server } = await listen(models);
    try {
      expect(await (await fetch(`${base}/models/index.json`)).json()).toEqual({
        format: 'pretrained',
        layout: 'hub',
        blt: 'blt/',
        patcher: null,
      });
      const config = await fetch(`${base}/models/blt/config.json`);
      expect(config.status).toBe(200);
      expect(config.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
      expect(((await config.json()) as { args: unknown }).args).toBeDefined();
      const head = await fetch(`${base}/models/blt/entropy_model/model.safetensors`, { method: 'HEAD' });
      expect(head.status).toBe(200);
      expect(Number(head.headers.get('content-length'))).toBeGreaterThan(1000);
      // Revalidated by size and modification time: 304 without a body while the file is unchanged.
      const etag = head.headers.get('etag')!;
      expect(etag).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
      const cached = await fetch(`${base}/models/blt/entropy_model/model.safetensors`, { headers: { 'If-None-Match': etag } });
      expect([cached.status, (await cached.arrayBuffer()).byteLength]).toEqual([304, 0]);
      expect((await fetch(`${base}/models/blt/nothing.json`)).status).toBe(404);
      expect((await fetch(`${base}/models/blt/%2e%2e/transformers/config.json`)).status).toBe(404);
      expect((await fetch(`${base}/models/blt/`)).status).toBe(404);
      expect((await fetch(`${base}/models/blt/config.json`, { method: 'POST' })).status).toBe(405);
      expect((await fetch(`${base}/models/blt.safetensors`)).status).toBe(404);
      // What the page does in the browser, here in Node: the same loader on the served URL.
      const { service, layout } = await createModelServiceFromPretrained({ blt: `${base}/models/blt/`, backend: 'cpu' });
      expect(layout).toBe('hub');
      expect(service.patcher.defaults).toMatchObject(SETTINGS);
      const never = new AbortController().signal;
      const params = { prompt: PROMPT, maxBytes: 12, temperature: 0, topK: 0, topP: 1, seed: 0, stop: [] };
      expect((await service.generate(params, never)).text).toBe((await models.service.generate(params, never)).text);
      service.blt?.dispose();
      service.patcher.dispose();
    } finally {
      await closeServer(server);
      models.service.blt?.dispose();
      models.service.patcher.dispose();
    }
  });

  it("a transformers folder with --patcher FILE: the file entropy model patches with the folder's settings, handed to the page as patcher.safetensors", async () => {
    const models = await loadServeModels({ model: folders.transformers, patcher: entropyFile, backend: 'cpu' });
    const { base, server } = await listen(models);
    try {
      const health = (await (await fetch(`${base}/health`)).json()) as {
        models: { blt: { layout: string }; patcher: { layout: string; source: string; defaults: unknown } };
      };
      expect(health.models.blt.layout).toBe('transformers');
      expect(health.models.patcher).toMatchObject({ layout: 'safetensors', source: entropyFile });
      expect(health.models.patcher.defaults).toMatchObject(SETTINGS);
      expect(await (await fetch(`${base}/models/index.json`)).json()).toEqual({
        format: 'pretrained',
        layout: 'transformers',
        blt: 'blt/',
        patcher: 'patcher.safetensors',
      });
      expect((await fetch(`${base}/models/patcher.safetensors`)).status).toBe(200);
    } finally {
      await closeServer(server);
      models.service.blt?.dispose();
      models.service.patcher.dispose();
    }
  });

  it('a consolidated checkpoint written by the reference: the entropy_model/ beside it is served where the loader looks from /models/blt/', async () => {
    const models = await loadServeModels({ model: join(CONSOLIDATED, 'blt'), backend: 'cpu' });
    expect(models.folders).toEqual({
      blt: join(CONSOLIDATED, 'blt'),
      layout: 'consolidated',
      sibling: join(CONSOLIDATED, 'entropy_model'),
    });
    const { base, server } = await listen(models);
    try {
      const health = (await (await fetch(`${base}/health`)).json()) as {
        models: { blt: { layout: string }; patcher: { layout: string; defaults: unknown } };
      };
      expect(health.models.blt.layout).toBe('consolidated');
      expect(health.models.patcher.layout).toBe('consolidated');
      // params.json data.patcher_args: entropy with threshold_add 0.01 and max_patch_length 3.
      expect(health.models.patcher.defaults).toEqual({ mode: 'combined', threshold: 5.08, thresholdAdd: 0.01, maxPatchLength: 3 });
      expect(await (await fetch(`${base}/models/index.json`)).json()).toEqual({
        format: 'pretrained',
        layout: 'consolidated',
        blt: 'blt/',
        patcher: null,
      });
      // new URL('../entropy_model/', '/models/blt/') is /models/entropy_model/.
      expect(new URL('../entropy_model/params.json', `${base}/models/blt/`).pathname).toBe('/models/entropy_model/params.json');
      expect((await fetch(`${base}/models/entropy_model/consolidated.pth`, { method: 'HEAD' })).status).toBe(200);
      expect((await fetch(`${base}/models/blt/..%2f..%2fconfig.json`)).status).toBe(404);
      expect((await fetch(`${base}/models/entropy_model/..%2f..%2findex.json`)).status).toBe(404);
      // The page's loader on the URL finds the sibling entropy model as the server did on the path.
      const { service, layout } = await createModelServiceFromPretrained({ blt: `${base}/models/blt/`, backend: 'cpu' });
      expect(layout).toBe('consolidated');
      expect(service.patcher.defaults).toEqual(models.service.patcher.defaults);
      const never = new AbortController().signal;
      const params = { prompt: PROMPT, maxBytes: 10, temperature: 0, topK: 0, topP: 1, seed: 0, stop: [] };
      const fromUrl = await service.generate(params, never);
      const fromPath = await models.service.generate(params, never);
      expect(fromUrl.text).toBe(fromPath.text);
      expect(fromUrl.bytes).toBeGreaterThan(0);
      service.blt?.dispose();
      service.patcher.dispose();
    } finally {
      await closeServer(server);
      models.service.blt?.dispose();
      models.service.patcher.dispose();
    }
  });

  it('refuses mixed or wrong model options with messages naming them', async () => {
    await expect(loadServeModels({ model: folders.hub, blt: 'x.safetensors', backend: 'cpu' })).rejects.toThrow(
      /--model DIR .* or --blt FILE .*not both/,
    );
    await expect(loadServeModels({ model: join(folders.hub, 'config.json'), backend: 'cpu' })).rejects.toThrow(/is not a folder/);
    await expect(loadServeModels({ blt: 'x.safetensors', patcher: folders.hub, backend: 'cpu' })).rejects.toThrow(
      /a folder entropy model goes with a folder BLT/,
    );
    await expect(loadServeModels({ model: dir, backend: 'cpu' })).rejects.toThrow(/not a BLT checkpoint folder/);
  });

  it('the CLI: bytelatent-serve --model DIR prints the layout and answers /health', async () => {
    const child = spawn(process.execPath, [CLI, '--model', folders.transformers, '--port', '0', '--backend', 'cpu'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const line = await new Promise<string>((resolveLine, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolveLine(out.split('\n')[0]!);
        });
        child.on('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
      });
      expect(line).toMatch(/^bytelatent serve: http:\/\/127\.0\.0\.1:\d+\/ \(backend cpu; .*BLT .*transformers \(transformers layout\)\)$/);
      const url = /http:\/\/[^/]+\//.exec(line)![0];
      const health = (await (await fetch(`${url}health`)).json()) as { models: { blt: { layout: string } } };
      expect(health.models.blt.layout).toBe('transformers');
    } finally {
      child.kill('SIGTERM');
    }
  });
});
