import { describe, expect, it } from 'vitest';
import {
  TRANSFORMERS_HASH_TABLE,
  detectCheckpointLayout,
  ffnArgsForHiddenSizes,
  referenceAttentionProblem,
  referenceNameFromTransformers,
  transformersComponentSource,
  transformersTensorName,
} from './checkpoint-layouts.js';
import { NnError } from './errors.js';
import { ffnHiddenDim } from './layers/feed-forward.js';
import { modelFolderFromFiles, openModelFolder } from './model-folder.js';
import { parseSafetensors, serializeSafetensors } from './safetensors.js';
import { readFloat32 } from './tensor-source.js';

const text = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

describe('transformers names (the published converter)', () => {
  const cases: Array<[string, 'blt' | 'patcher', string]> = [
    ['local_encoder.layers.0.attention.wq.weight', 'blt', 'model.local_encoder.layers.0.self_attn.q_proj.weight'],
    ['local_encoder.layers.0.attention_norm.weight', 'blt', 'model.local_encoder.layers.0.input_layernorm.weight'],
    ['local_encoder.layers.0.ffn_norm.weight', 'blt', 'model.local_encoder.layers.0.post_attention_layernorm.weight'],
    ['local_encoder.layers.0.feed_forward.w1.weight', 'blt', 'model.local_encoder.layers.0.mlp.gate_proj.weight'],
    ['local_encoder.layers.0.feed_forward.w2.weight', 'blt', 'model.local_encoder.layers.0.mlp.down_proj.weight'],
    ['local_encoder.layers.0.feed_forward.w3.weight', 'blt', 'model.local_encoder.layers.0.mlp.up_proj.weight'],
    ['local_encoder.tok_embeddings.weight', 'blt', 'model.local_encoder.embed_tokens.weight'],
    ['local_encoder.cross_attn_layers.0.cross_attn_norm_q.weight', 'blt', 'model.local_encoder.cross_attn_layers.0.q_norm.weight'],
    ['local_decoder.cross_attn_layers.3.cross_attn_norm_kv.weight', 'blt', 'model.local_decoder.cross_attn_layers.3.k_norm.weight'],
    ['local_decoder.cross_attn_layers.3.wo.weight', 'blt', 'model.local_decoder.cross_attn_layers.3.o_proj.weight'],
    ['local_decoder.output.weight', 'blt', 'lm_head.weight'],
    ['local_decoder.norm.weight', 'blt', 'model.local_decoder.norm.weight'],
    ['global_transformer.token_embedding_projection.weight', 'blt', 'model.global_transformer.token_embedding_projection.weight'],
    ['tok_embeddings.weight', 'patcher', 'model.patcher.embed_tokens.weight'],
    ['output.weight', 'patcher', 'model.patcher.lm_head.weight'],
    ['layers.13.attention.wv.weight', 'patcher', 'model.patcher.layers.13.self_attn.v_proj.weight'],
  ];
  it('renames as the converter does, and back', () => {
    for (const [reference, component, hf] of cases) {
      expect(transformersTensorName(reference, component)).toBe(hf);
      expect(referenceNameFromTransformers(hf)).toEqual({ component, name: reference });
    }
  });
  it('leaves names the converter cannot have written unmapped', () => {
    expect(referenceNameFromTransformers('model.layers.0.self_attn.q_proj.weight')).toEqual({
      component: 'blt',
      name: 'layers.0.attention.wq.weight',
    });
    expect(referenceNameFromTransformers('transformer.h.0.attn.c_attn.weight')).toBeUndefined();
    // A name that only round-trips differently (already in reference form) is not the converter's.
    expect(referenceNameFromTransformers('model.local_encoder.layers.0.attention.wq.weight')).toBeUndefined();
  });
});

describe('transformersComponentSource', () => {
  const vocab = 5;
  const width = 3;
  const fused = Float32Array.from({ length: 2 * vocab * width }, (_, i) => i);
  const file = parseSafetensors(
    serializeSafetensors({
      [TRANSFORMERS_HASH_TABLE]: { dtype: 'F32', shape: [2 * vocab, width], data: fused },
      'model.local_encoder.embed_tokens.weight': { dtype: 'F32', shape: [2, width], data: new Float32Array(2 * width) },
      'model.patcher.embed_tokens.weight': { dtype: 'F32', shape: [2, width], data: new Float32Array(2 * width).fill(7) },
      'lm_head.weight': { dtype: 'F32', shape: [2, width], data: new Float32Array(2 * width) },
      'transformer.wte.weight': { dtype: 'F32', shape: [1], data: new Float32Array(1) },
    }),
  );
  it('splits the fused hash table into the reference tables, reading through', () => {
    const blt = transformersComponentSource(file, 'blt', { count: 2, vocab });
    expect(blt.names().sort()).toEqual(
      [
        'encoder_hash_tok_embedding.0.weight',
        'encoder_hash_tok_embedding.1.weight',
        'local_decoder.output.weight',
        'local_encoder.tok_embeddings.weight',
        'transformer.wte.weight',
      ].sort(),
    );
    expect(blt.info('encoder_hash_tok_embedding.1.weight').shape).toEqual([vocab, width]);
    expect(Array.from(readFloat32(blt, 'encoder_hash_tok_embedding.1.weight'))).toEqual(Array.from(fused.subarray(vocab * width)));
    expect(Array.from(readFloat32(blt, 'encoder_hash_tok_embedding.1.weight', 3, 6))).toEqual([18, 19, 20]);
    expect(() => blt.readBytes('encoder_hash_tok_embedding.0.weight', 0, vocab * width + 1)).toThrow(NnError);
  });
  it('shows each component only its own tensors', () => {
    const patcher = transformersComponentSource(file, 'patcher');
    expect(patcher.names().sort()).toEqual(['tok_embeddings.weight', 'transformer.wte.weight']);
    expect(readFloat32(patcher, 'tok_embeddings.weight')[0]).toBe(7);
  });
  it('refuses a hash table too small for the configuration', () => {
    expect(() => transformersComponentSource(file, 'blt', { count: 3, vocab })).toThrow(/too few rows/);
  });
});

describe('detectCheckpointLayout', () => {
  it('tells the three layouts apart and names the weights file', async () => {
    const weights = serializeSafetensors({ x: { dtype: 'F32', shape: [1], data: new Float32Array(1) } });
    const consolidated = modelFolderFromFiles(
      new Map([
        ['params.json', text({ model: {} })],
        ['consolidated.pth', new Uint8Array(1)],
      ]),
    );
    expect((await detectCheckpointLayout(consolidated)).layout).toBe('consolidated');
    const hub = modelFolderFromFiles(
      new Map([
        ['config.json', text({ args: { dim: 1 } })],
        ['model.safetensors', weights],
      ]),
    );
    expect(await detectCheckpointLayout(hub)).toMatchObject({ layout: 'hub', weightsFile: 'model.safetensors' });
    const sharded = modelFolderFromFiles(
      new Map([
        ['config.json', text({ model_type: 'blt' })],
        ['model.safetensors.index.json', text({ weight_map: {} })],
      ]),
    );
    expect(await detectCheckpointLayout(sharded)).toMatchObject({ layout: 'transformers', weightsFile: 'model.safetensors.index.json' });
  });
  it('names the file and what is wrong', async () => {
    const cases: Array<[Map<string, Uint8Array>, RegExp]> = [
      [new Map(), /m: no params\.json .* not a BLT checkpoint folder/],
      [new Map([['params.json', text({ model: {} })]]), /m\/consolidated\.pth is missing beside params\.json/],
      [new Map([['params.json', new TextEncoder().encode('{oops')]]), /m\/params\.json is not valid JSON/],
      [new Map([['config.json', text({ model_type: 'llama' })]]), /m\/config\.json has model_type "llama", not "blt"/],
      [new Map([['config.json', text({ model_type: 'blt' })]]), /neither model\.safetensors nor model\.safetensors\.index\.json/],
      [new Map([['config.json', text({ args: {} })]]), /m\/model\.safetensors is missing beside m\/config\.json/],
      [new Map([['config.json', text({ hidden_size: 3 })]]), /has neither "model_type": "blt" .* its keys: hidden_size/],
    ];
    for (const [files, message] of cases) {
      const e = await detectCheckpointLayout(modelFolderFromFiles(files, 'm')).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(NnError);
      expect((e as NnError).code).toBe('INVALID_CHECKPOINT');
      expect((e as Error).message).toMatch(message);
    }
  });
});

describe('modelFolderFromFiles', () => {
  it('reaches sub-folders and siblings, and reads shards checked against their index', async () => {
    const shard = (name: string) => serializeSafetensors({ [name]: { dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) } });
    const root = modelFolderFromFiles(
      new Map([
        ['blt/model.safetensors.index.json', text({ weight_map: { a: 'a.safetensors', b: 'b.safetensors' } })],
        ['blt/a.safetensors', shard('a')],
        ['blt/b.safetensors', shard('b')],
        ['entropy_model/params.json', text({ entropy_model: {} })],
      ]),
      'root',
    );
    const blt = root.folder('blt');
    expect(await blt.folder('../entropy_model').exists('params.json')).toBe(true);
    const source = await blt.openTensors('model.safetensors.index.json');
    expect(source.names()).toEqual(['a', 'b']);
    expect(Array.from(readFloat32(source, 'b'))).toEqual([1, 2]);
    const wrong = modelFolderFromFiles(
      new Map([
        ['i.index.json', text({ weight_map: { a: 'a.safetensors' } })],
        ['a.safetensors', shard('z')],
      ]),
      'w',
    );
    await expect(wrong.openTensors('i.index.json')).rejects.toThrow(/the index puts "a" in a\.safetensors, which does not hold it/);
  });
});

describe('openModelFolder over HTTP', () => {
  it('reads every file, in sub-folders and siblings too, through the fetch it is given', async () => {
    const files = new Map([
      ['https://models.test/blt/config.json', text({ args: { dim: 8 } })],
      ['https://models.test/entropy_model/params.json', text({ entropy_model: {} })],
    ]);
    const asked: string[] = [];
    const fakeFetch: typeof fetch = async (input, init) => {
      const url = String(input);
      asked.push(`${init?.method ?? 'GET'} ${url}`);
      const body = files.get(url);
      return body ? new Response(init?.method === 'HEAD' ? null : body) : new Response(null, { status: 404 });
    };
    const blt = await openModelFolder('https://models.test/blt/', { fetch: fakeFetch });
    expect(await blt.readJson('config.json')).toEqual({ args: { dim: 8 } });
    expect(await blt.folder('../entropy_model').exists('params.json')).toBe(true);
    await expect(blt.readText('missing.json')).rejects.toThrow(/https:\/\/models\.test\/blt\/missing\.json: HTTP 404/);
    expect(asked).toEqual([
      'GET https://models.test/blt/config.json',
      'HEAD https://models.test/entropy_model/params.json',
      'GET https://models.test/blt/missing.json',
    ]);
  });
});

describe('small helpers', () => {
  it('ffnArgsForHiddenSizes finds the one reference rounding that gives every explicit feed-forward size', () => {
    const one = (dim: number, intermediate: number) => ffnArgsForHiddenSizes([{ dim, intermediate, path: 'c' }], 'f');
    expect(one(1024, 2816)).toEqual({ multiple_of: 256, ffn_dim_multiplier: 1.0 });
    expect(one(768, 2048)).toEqual({ multiple_of: 256, ffn_dim_multiplier: 1.0 });
    // A tiny model's 48 (dim 16) and 96 (dim 32): one rounding for both (48 gives both), not 48 and 96 apiece.
    const shared = ffnArgsForHiddenSizes(
      [
        { dim: 16, intermediate: 48, path: 'e' },
        { dim: 32, intermediate: 96, path: 'g' },
      ],
      'f',
    );
    expect(shared).toEqual({ multiple_of: 48, ffn_dim_multiplier: 1.0 });
    expect([ffnHiddenDim(16, shared.multiple_of, 1), ffnHiddenDim(32, shared.multiple_of, 1)]).toEqual([48, 96]);
    expect(() => one(64, 100)).toThrow(/no single multiple_of gives every intermediate_size/);
    expect(() => one(64, 170.5)).toThrow(/c\.intermediate_size must be an integer >= 1, got 170\.5/);
    expect(() =>
      ffnArgsForHiddenSizes(
        [
          { dim: 16, intermediate: 48, path: 'e' },
          { dim: 16, intermediate: 64, path: 'd' },
        ],
        'f',
      ),
    ).toThrow(/e: hidden_size 16, intermediate_size 48; d: hidden_size 16/);
  });
  it('referenceAttentionProblem follows the reference create_causal_mask', () => {
    expect(referenceAttentionProblem('xformers', 'local_block_causal')).toBeUndefined();
    expect(referenceAttentionProblem(undefined, 'block_causal')).toBeUndefined();
    expect(referenceAttentionProblem('sdpa', 'causal')).toBeUndefined();
    expect(referenceAttentionProblem('sdpa', 'block_causal')).toMatch(/cannot build the block_causal mask/);
    expect(referenceAttentionProblem('flash', 'causal')).toMatch(/not an attention implementation the reference knows/);
  });
});
