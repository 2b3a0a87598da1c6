import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { EntropyModel, EntropyPatcher, type EntropyModelArgs } from '@bytelatent/entropy-patcher';
import { BltError } from '@bytelatent/nn';
import { bfloat16BitsToFloat32, ffnHiddenDim, float32ToBfloat16Bits, modelFolderFromFiles, parsePth } from '@bytelatent/nn';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveBltArgs } from './blt-args.js';
import { ByteLatentTransformer } from './blt-model.js';
import { exportPretrained, savePretrained, transformersLayoutProblems, type PretrainedFiles } from './export-pretrained.js';
import { bltArgsFromTransformersConfig, loadPretrained } from './pretrained.js';
import { SMALL_ARGS } from './test-fixtures.js';

// A window of 7: not what the reference's load_entropy_model forces (512), so a hub export keeps
// this entropy model in the blt-entropy layout (config.json + model.safetensors).
const ENTROPY_ARGS: EntropyModelArgs = {
  dim: 16,
  n_layers: 2,
  n_heads: 2,
  max_seqlen: 64,
  vocab_size: 260,
  ffn_dim_multiplier: 1.0,
  attn_bias_type: 'local_block_causal',
  sliding_window: 7,
  attn_impl: 'xformers',
};
/** The same with the released window: load_entropy_model rebuilds it exactly, so it goes out consolidated. */
const RELEASED_SHAPE_ENTROPY_ARGS: EntropyModelArgs = { ...ENTROPY_ARGS, sliding_window: 512 };

const TOKENS = [[1, 76, 105, 32, 108, 104, 2, 1, 81, 109, 113, 106, 44, 36]];
const LENGTHS = [[1, 3, 2, 4, 3, 2]];

let blt: ByteLatentTransformer;
let patcher: EntropyPatcher;

beforeAll(async () => {
  await tf.setBackend('cpu');
  blt = new ByteLatentTransformer(SMALL_ARGS, 3);
  patcher = EntropyPatcher.fromModel(new EntropyModel(ENTROPY_ARGS, 4), { mode: 'entropy', threshold: 4.9, maxPatchLength: 6 });
});

afterAll(() => {
  blt.dispose();
  patcher.dispose();
});

async function logitsOf(model: ByteLatentTransformer): Promise<Float32Array> {
  const t = model.forward(TOKENS, LENGTHS);
  const data = (await t.data()) as Float32Array;
  t.dispose();
  return data;
}

async function entropiesOf(p: EntropyPatcher): Promise<Float32Array> {
  return (await p.model.entropies([Int32Array.from(TOKENS[0]!)]))[0]!;
}

function mutate(files: PretrainedFiles, name: string, edit: (json: Record<string, unknown>) => void): PretrainedFiles {
  const copy = new Map(files);
  const value = JSON.parse(new TextDecoder().decode(copy.get(name)!)) as Record<string, unknown>;
  edit(value);
  copy.set(name, new TextEncoder().encode(JSON.stringify(value)));
  return copy;
}

async function loadError(files: PretrainedFiles, options = {}): Promise<BltError> {
  const e = await loadPretrained(modelFolderFromFiles(files, 'm'), options).then(
    (r) => {
      r.dispose();
      throw new Error('expected an error');
    },
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(BltError);
  return e as BltError;
}

describe('exportPretrained -> loadPretrained', () => {
  for (const layout of ['hub', 'transformers'] as const) {
    it(`${layout}: import ∘ export is exact (logits, entropies, arguments, patching settings)`, async () => {
      const files = await exportPretrained(blt, patcher, { layout });
      const loaded = await loadPretrained(modelFolderFromFiles(files, 'm'));
      try {
        expect(loaded.layout).toBe(layout);
        expect(await logitsOf(loaded.model)).toEqual(await logitsOf(blt));
        expect(await entropiesOf(loaded.patcher!)).toEqual(await entropiesOf(patcher));
        expect(loaded.model.args).toEqual(blt.args);
        expect(loaded.patcher!.model.args).toEqual(patcher.model.args);
        expect(loaded.patching).toEqual({ mode: 'entropy', threshold: 4.9, maxPatchLength: 6 });
        expect(loaded.patcher!.defaults).toEqual(loaded.patching);
        expect(loaded.patcher!.layout).toBe(layout);
      } finally {
        loaded.dispose();
      }
    });
  }

  it('carries the monotonic and combined rules through both layouts', async () => {
    for (const layout of ['hub', 'transformers'] as const) {
      for (const patching of [
        { mode: 'monotonic' as const, threshold: 0.3 },
        { mode: 'combined' as const, threshold: 4.8, thresholdAdd: 0.1 },
      ]) {
        const loaded = await loadPretrained(modelFolderFromFiles(await exportPretrained(blt, patcher, { layout, patching })));
        expect(loaded.patching).toEqual(patching);
        loaded.dispose();
      }
    }
  });

  it('BF16 weights load as the bf16-rounded values of the originals', async () => {
    const files = await exportPretrained(blt, patcher, { layout: 'transformers', dtype: 'BF16' });
    const loaded = await loadPretrained(modelFolderFromFiles(files));
    try {
      const name = 'global_transformer.layers.1.feed_forward.w2.weight';
      const original = blt.registry.list().find((p) => p.name === name)!;
      const back = loaded.model.registry.list().find((p) => p.name === name)!;
      const a = (await original.variable.data()) as Float32Array;
      const b = (await back.variable.data()) as Float32Array;
      for (let i = 0; i < a.length; i++) expect(b[i]).toBe(bfloat16BitsToFloat32(float32ToBfloat16Bits(a[i]!)));
    } finally {
      loaded.dispose();
    }
  });

  it('an explicit patcher folder and explicit patching settings win', async () => {
    const files = await exportPretrained(blt, patcher, { layout: 'hub' });
    const other = EntropyPatcher.fromModel(new EntropyModel(ENTROPY_ARGS, 9));
    const otherFiles = await exportPretrained(blt, other, { layout: 'hub' });
    const entropyOnly = new Map(
      [...otherFiles].filter(([k]) => k.startsWith('entropy_model/')).map(([k, v]) => [k.slice('entropy_model/'.length), v]),
    );
    const loaded = await loadPretrained(modelFolderFromFiles(files), {
      patcher: modelFolderFromFiles(entropyOnly, 'other'),
      patching: { threshold: 5 },
    });
    try {
      expect(await entropiesOf(loaded.patcher!)).toEqual(await entropiesOf(other));
      expect(loaded.patching.threshold).toBe(5);
      expect(loaded.patcher!.defaults.threshold).toBe(5);
    } finally {
      loaded.dispose();
      other.dispose();
    }
    const none = await loadPretrained(modelFolderFromFiles(files), { patcher: false });
    expect(none.patcher).toBeUndefined();
    none.dispose();
  });

  it('the BLT folder gives its entropy model to EntropyPatcher.fromPretrained (hub and transformers)', async () => {
    for (const layout of ['hub', 'transformers'] as const) {
      const p = await EntropyPatcher.fromPretrained(modelFolderFromFiles(await exportPretrained(blt, patcher, { layout })));
      expect(await entropiesOf(p)).toEqual(await entropiesOf(patcher));
      expect(p.defaults).toEqual({ mode: 'entropy', threshold: 4.9, maxPatchLength: 6 });
      p.dispose();
    }
  });

  it('saves to disk atomically and loads from a path and over HTTP', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'blt-pretrained-'));
    const server = createServer(async (req, res) => {
      try {
        const body = await readFile(join(dir, decodeURIComponent(new URL(req.url!, 'http://x').pathname)));
        res.writeHead(200, { 'content-length': body.byteLength });
        res.end(req.method === 'HEAD' ? undefined : body);
      } catch {
        res.writeHead(404).end();
      }
    });
    try {
      const written = await savePretrained(blt, patcher, dir, { layout: 'transformers', dtype: 'F32' });
      expect(written.map((p) => p.slice(dir.length + 1)).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer_config.json']);
      const fromDisk = await loadPretrained(dir);
      expect(await logitsOf(fromDisk.model)).toEqual(await logitsOf(blt));
      fromDisk.dispose();
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const { port } = server.address() as AddressInfo;
      const overHttp = await loadPretrained(`http://127.0.0.1:${port}/`);
      expect(await logitsOf(overHttp.model)).toEqual(await logitsOf(blt));
      expect(overHttp.layout).toBe('transformers');
      overHttp.dispose();
    } finally {
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('hub: an entropy model load_entropy_model can rebuild goes out as the published entropy_model/ (params.json + consolidated.pth)', async () => {
    const released = EntropyPatcher.fromModel(new EntropyModel(RELEASED_SHAPE_ENTROPY_ARGS, 4), {
      mode: 'entropy',
      threshold: 4.9,
      maxPatchLength: 6,
    });
    try {
      for (const dtype of ['F32', 'BF16'] as const) {
        const files = await exportPretrained(blt, released, { layout: 'hub', dtype });
        expect([...files.keys()].sort()).toEqual([
          'config.json',
          'entropy_model/consolidated.pth',
          'entropy_model/params.json',
          'model.safetensors',
          'train_args.json',
        ]);
        const params = JSON.parse(new TextDecoder().decode(files.get('entropy_model/params.json'))) as Record<
          string,
          Record<string, unknown>
        >;
        expect(params['model']).toBeNull();
        expect(params['train_entropy_model']).toBe(true);
        // Every key load_entropy_model reads is there.
        expect(params['entropy_model']).toMatchObject({
          dim: 16,
          n_layers: 2,
          n_heads: 2,
          max_seqlen: 64,
          ffn_dim_multiplier: 1,
          vocab_size: 260,
          attn_impl: 'xformers',
          sliding_window: 512,
        });
        expect(params['data']).toEqual({
          patcher_args: expect.objectContaining({
            patching_mode: 'entropy',
            threshold: 4.9,
            max_patch_length: 6,
            realtime_patching: false,
          }),
          tokenizer_args: { name: 'blt' },
        });
        expect(params['distributed']).toEqual({ model_dtype: dtype === 'F32' ? 'fp32' : 'bf16' });
        const pth = parsePth(files.get('entropy_model/consolidated.pth')!);
        expect(pth.folder).toBe('consolidated');
        expect(pth.stateDict().path).toEqual(['model']);
        expect(pth.names()).toEqual(released.model.registry.list().map((p) => p.name));
        expect(pth.info('tok_embeddings.weight')).toMatchObject({ dtype, shape: [260, 16] });
        const loaded = await loadPretrained(modelFolderFromFiles(files, 'm'));
        try {
          expect(loaded.patcher!.model.args).toEqual(released.model.args);
          if (dtype === 'F32') {
            expect(await entropiesOf(loaded.patcher!)).toEqual(await entropiesOf(released));
            expect(await logitsOf(loaded.model)).toEqual(await logitsOf(blt));
          }
          expect(loaded.patching).toEqual({ mode: 'entropy', threshold: 4.9, maxPatchLength: 6 });
        } finally {
          loaded.dispose();
        }
      }
    } finally {
      released.dispose();
    }
  });

  it('hub: any argument load_entropy_model would not carry keeps the entropy model in the blt-entropy layout', async () => {
    for (const changed of [
      { sliding_window: 7 },
      { rope_theta: 500000 },
      { norm_eps: 1e-6 },
      { n_kv_heads: 1 },
      { multiple_of: 64 },
      { attn_bias_type: 'block_causal' },
    ]) {
      const p = EntropyPatcher.fromModel(new EntropyModel({ ...RELEASED_SHAPE_ENTROPY_ARGS, ...changed }, 4));
      try {
        const files = await exportPretrained(blt, p, { layout: 'hub' });
        expect([...files.keys()].filter((k) => k.startsWith('entropy_model/')).sort(), JSON.stringify(changed)).toEqual([
          'entropy_model/config.json',
          'entropy_model/model.safetensors',
        ]);
        const loaded = await loadPretrained(modelFolderFromFiles(files, 'm'));
        expect(loaded.patcher!.model.args).toEqual(p.model.args);
        loaded.dispose();
      } finally {
        p.dispose();
      }
    }
  });

  it('hub: train_args.json asks for no realtime patching (hf.py load_transformers builds its PatcherArgs as they are)', async () => {
    const files = await exportPretrained(blt, patcher, { layout: 'hub' });
    const trainArgs = JSON.parse(new TextDecoder().decode(files.get('train_args.json'))) as {
      data: { patcher_args: Record<string, unknown> };
    };
    expect(trainArgs.data.patcher_args['realtime_patching']).toBe(false);
    expect('entropy_model_checkpoint_dir' in trainArgs.data.patcher_args).toBe(false);
  });

  it('leaks no tensors across repeated loads', async () => {
    const files = await exportPretrained(blt, patcher, { layout: 'transformers' });
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) (await loadPretrained(modelFolderFromFiles(files))).dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('loadPretrained errors name the file and the field', () => {
  let hub: PretrainedFiles;
  let transformers: PretrainedFiles;
  beforeAll(async () => {
    hub = await exportPretrained(blt, patcher, { layout: 'hub' });
    transformers = await exportPretrained(blt, patcher, { layout: 'transformers' });
  });

  it('an empty or foreign folder', async () => {
    let e = await loadError(new Map());
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toContain('not a BLT checkpoint folder');
    e = await loadError(new Map([['config.json', new TextEncoder().encode(JSON.stringify({ model_type: 'llama', hidden_size: 4096 }))]]));
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toMatch(/m\/config\.json has model_type "llama", not "blt"/);
    e = await loadError(new Map([['config.json', new TextEncoder().encode(JSON.stringify({ architectures: ['LlamaForCausalLM'] }))]]));
    expect(e.message).toContain('neither "model_type": "blt"');
  });

  it('a missing weights file, a missing entropy model, a missing shard', async () => {
    let e = await loadError(new Map([...hub].filter(([k]) => k !== 'model.safetensors')));
    expect(e.message).toContain('model.safetensors is missing');
    e = await loadError(new Map([...hub].filter(([k]) => !k.startsWith('entropy_model/'))));
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toMatch(/no entropy model was found in m\/entropy_model/);
    const index = {
      metadata: {},
      weight_map: {
        'model.local_encoder.tok_embeddings.weight': 'model-00001-of-00002.safetensors',
        'lm_head.weight': 'model-00002-of-00002.safetensors',
      },
    };
    const sharded = new Map([...transformers].filter(([k]) => k !== 'model.safetensors'));
    sharded.set('model.safetensors.index.json', new TextEncoder().encode(JSON.stringify(index)));
    sharded.set('model-00001-of-00002.safetensors', transformers.get('model.safetensors')!);
    e = await loadError(sharded);
    expect(e.message).toContain('1 of 2 shard file(s) missing:\n  m/model-00002-of-00002.safetensors (index lists 1 tensor in it)');
  });

  it('mismatched shapes and unknown arguments', async () => {
    let e = await loadError(mutate(hub, 'config.json', (c) => ((c['args'] as Record<string, unknown>)['n_layers_global'] = 3)));
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toContain('missing "global_transformer.layers.2.attention.wq.weight"');
    e = await loadError(
      mutate(transformers, 'config.json', (c) => {
        (c['encoder_config'] as Record<string, unknown>)['hidden_size'] = 32;
        (c['decoder_config'] as Record<string, unknown>)['hidden_size'] = 32;
      }),
    );
    expect(e.code).toBe('INVALID_CHECKPOINT');
    expect(e.message).toMatch(/^m\/model\.safetensors: checkpoint does not fit the model/);
    expect(e.message).toMatch(/has shape \[\d+, 16\], expected \[\d+, 32\]/);
    e = await loadError(mutate(transformers, 'config.json', (c) => ((c['decoder_config'] as Record<string, unknown>)['hidden_size'] = 32)));
    expect(e.code).toBe('CONFIG_MISMATCH');
    expect(e.message).toMatch(/^m\/config\.json: BLT args: dim_local_decoder \(32\) must equal dim_local_encoder \(16\)/);
    e = await loadError(mutate(hub, 'config.json', (c) => ((c['args'] as Record<string, unknown>)['attn_impl'] = 'fmha2')));
    expect(e.code).toBe('CONFIG_MISMATCH');
    expect(e.message).toContain('attn_impl "fmha2" is not an attention implementation the reference knows');
    e = await loadError(mutate(hub, 'config.json', (c) => ((c['args'] as Record<string, unknown>)['attn_impl'] = 'sdpa')));
    expect(e.message).toContain('"sdpa" cannot build the local_block_causal mask');
    e = await loadError(
      mutate(
        hub,
        'train_args.json',
        (c) => (((c['data'] as Record<string, unknown>)['patcher_args'] as Record<string, unknown>)['patching_mode'] = 'wordpiece'),
      ),
    );
    expect(e.code).toBe('CONFIG_MISMATCH');
    expect(e.message).toMatch(/m\/train_args\.json data\.patcher_args: patching_mode "wordpiece" is not supported/);
    e = await loadError(
      mutate(transformers, 'config.json', (c) => ((c['global_config'] as Record<string, unknown>)['rope_scaling'] = { rope_type: 'yarn' })),
    );
    expect(e.message).toContain('rope type "yarn" is not supported');
    e = await loadError(mutate(transformers, 'config.json', (c) => ((c['decoder_config'] as Record<string, unknown>)['norm_eps'] = 1e-6)));
    expect(e.message).toContain('decoder_config.norm_eps is 0.000001 but encoder_config.norm_eps is 0.00001');
  });

  it('an entropy model folder given as the BLT, and a BLT given as the patcher', async () => {
    const entropyOnly = new Map(
      [...hub].filter(([k]) => k.startsWith('entropy_model/')).map(([k, v]) => [k.slice('entropy_model/'.length), v]),
    );
    const e = await loadError(entropyOnly);
    expect(e.code).toBe('CONFIG_MISMATCH');
    expect(e.message).toContain('describes an entropy model');
  });
});

describe('bltArgsFromTransformersConfig', () => {
  it('reads the keys of the published converter and of transformers 5 alike, and fills in the released defaults', () => {
    const sub = (extra: Record<string, unknown>) => ({
      hidden_size: 1024,
      num_attention_heads: 16,
      num_hidden_layers: 1,
      max_position_embeddings: 24576,
      intermediate_size: 2816,
      ...extra,
    });
    const converter = {
      model_type: 'blt',
      vocab_size: 260,
      cross_attn_k: 2,
      encoder_hash_byte_group_size: [3, 4, 5, 6, 7, 8],
      encoder_hash_byte_group_vocab: 500002,
      encoder_hash_byte_group_nb_functions: 1,
      encoder_config: sub({ norm_eps: 1e-5, rope_theta: 500000, cross_attn_all_layers: false }),
      decoder_config: sub({ norm_eps: 1e-5, rope_theta: 500000, num_hidden_layers: 9, cross_attn_all_layers: true }),
      global_config: {
        hidden_size: 2048,
        num_attention_heads: 16,
        num_hidden_layers: 25,
        max_position_embeddings: 4096,
        intermediate_size: 5632,
        norm_eps: 1e-5,
        rope_theta: 500000,
      },
    };
    const v5 = JSON.parse(
      JSON.stringify(converter)
        .replace(/"norm_eps"/g, '"rms_norm_eps"')
        .replace(/"rope_theta":500000/g, '"rope_parameters":{"rope_type":"default","rope_theta":500000}'),
    ) as Record<string, unknown>;
    const a = bltArgsFromTransformersConfig(converter, 'config.json');
    expect(bltArgsFromTransformersConfig(v5, 'config.json')).toEqual(a);
    expect(a).toMatchObject({
      dim_global: 2048,
      n_layers_local_decoder: 9,
      local_attention_window_len: 512,
      attn_bias_type: 'block_causal',
      cross_attn_nheads: 16,
      rope_theta: 500000,
      multiple_of: 256,
    });
    expect(a.cross_attn_all_layers_encoder).toBe(false);
    // The released shapes resolve (global FFN 5632, decoder cross-attention before every layer).
    const resolved = resolveBltArgs(a);
    expect(ffnHiddenDim(resolved.global.dim, resolved.global.multipleOf, resolved.global.ffnDimMultiplier ?? null)).toBe(5632);
    expect(resolved.decoder.crossAttnAllLayers).toBe(true);
  });
});

describe('transformersLayoutProblems', () => {
  it('names every setting the transformers port cannot carry, and none for the released settings', () => {
    const problems = transformersLayoutProblems(blt, patcher);
    expect(problems.join('\n')).toMatch(/local attention window 5/);
    expect(problems.join('\n')).toMatch(/encoder cross-attention after every layer/);
    expect(problems.join('\n')).toMatch(/entropy model attention window 7/);
    const released = new ByteLatentTransformer(
      {
        ...SMALL_ARGS,
        local_attention_window_len: 512,
        cross_attn_all_layers_encoder: false,
        cross_attn_nheads: 2,
        n_heads_local_encoder: 2,
        n_heads_local_decoder: 2,
      },
      1,
    );
    const releasedPatcher = EntropyPatcher.fromModel(new EntropyModel({ ...ENTROPY_ARGS, sliding_window: 512 }, 2));
    try {
      expect(transformersLayoutProblems(released, releasedPatcher)).toEqual([]);
    } finally {
      released.dispose();
      releasedPatcher.dispose();
    }
  });
});

describe('exportPretrained arguments', () => {
  it('refuses a layout or dtype it cannot write', async () => {
    await expect(exportPretrained(blt, patcher, { layout: 'consolidated' as never })).rejects.toThrow(
      /layout must be "hub" or "transformers", got "consolidated"/,
    );
    await expect(exportPretrained(blt, patcher, { layout: 'hub', dtype: 'I8' as never })).rejects.toThrow(
      /dtype must be F32, BF16 or F16, got "I8"/,
    );
  });
});
