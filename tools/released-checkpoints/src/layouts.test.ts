import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSafetensors } from '@bytelatent/nn';
import { openPthFile } from '@bytelatent/nn/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureFreeSpace, writeReleasedCheckpoint, type WriteOptions } from './generate.js';
import { bltModelArgs, bltTensors, entropyModelArgs, entropyTensors, numel, type ReferenceTensor } from './models.js';
import { toPlainJson } from './pyjson.js';
import { crcOk, entryData, readZip } from './test-zip.js';
import { tensorBytes } from './values.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'released-checkpoints-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let n = 0;
async function write(o: Omit<WriteOptions, 'out' | 'preset'> & { preset?: 'tiny' | 'full' }) {
  const out = join(root, `${o.model}-${o.layout}-${n++}`);
  const summary = await writeReleasedCheckpoint({ preset: 'tiny', fsync: false, ...o, out });
  return { out, summary };
}

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...(await listFiles(join(dir, e.name), `${prefix}${e.name}/`)));
    else out.push(`${prefix}${e.name}`);
  }
  return out.sort();
}

const bltTiny = () => bltTensors(toPlainJson(bltModelArgs('blt-1b', 'tiny')) as Record<string, unknown>);
const entropyTiny = () => entropyTensors(toPlainJson(entropyModelArgs('tiny')) as Record<string, unknown>);
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Checks a generated .pth: zip structure, CRCs, alignment, records, and every tensor through nn's reader. */
async function checkPth(path: string, expected: readonly ReferenceTensor[], seed: number) {
  const file = new Uint8Array(await readFile(path));
  const entries = readZip(file);
  const names = entries.map((e) => e.name);
  expect(names[0]).toBe('consolidated/data.pkl');
  expect(names.slice(1, 2)).toEqual(['consolidated/byteorder']);
  expect(names.slice(-2)).toEqual(['consolidated/version', 'consolidated/.data/serialization_id']);
  expect(names.filter((x) => x.startsWith('consolidated/data/')).length).toBe(expected.length);
  for (const e of entries) {
    expect(e.method).toBe(0);
    expect(e.dataOffset % 64).toBe(0);
    expect(crcOk(file, e)).toBe(true);
  }
  const byName = new Map(entries.map((e) => [e.name, e]));
  expect(new TextDecoder().decode(entryData(file, byName.get('consolidated/version')!))).toBe('3\n');
  expect(new TextDecoder().decode(entryData(file, byName.get('consolidated/byteorder')!))).toBe('little');
  expect(entryData(file, byName.get('consolidated/data.pkl')!).subarray(0, 2)).toEqual(new Uint8Array([0x80, 2]));
  expected.forEach((t, k) => {
    const data = entryData(file, byName.get(`consolidated/data/${k}`)!);
    expect(data.byteLength).toBe(numel(t.shape) * 2);
    expect(sha(data)).toBe(sha(tensorBytes(t, seed, 'bf16')));
  });
  // The project's own .pth reader (packages/nn) sees the reference state dict.
  const pth = openPthFile(path);
  try {
    expect(pth.folder).toBe('consolidated');
    expect(pth.names()).toEqual(expected.map((t) => t.name));
    for (const t of expected) {
      expect(pth.info(t.name).dtype).toBe('BF16');
      expect(pth.info(t.name).shape).toEqual(t.shape);
    }
    const last = expected.at(-1)!;
    expect(sha(pth.readBytes(last.name))).toBe(sha(tensorBytes(last, seed, 'bf16')));
  } finally {
    pth.close?.();
  }
}

describe('consolidated layout (facebook/blt hf-weights)', () => {
  it('writes blt_1b/ and entropy_model/ with params.json and a torch.save zip', async () => {
    const { out, summary } = await write({ model: 'blt-1b', layout: 'consolidated', seed: 5 });
    expect(await listFiles(out)).toEqual([
      'blt_1b/consolidated.pth',
      'blt_1b/params.json',
      'entropy_model/consolidated.pth',
      'entropy_model/params.json',
    ]);
    expect(summary.files.map((f) => f.path)).toEqual([
      'blt_1b/params.json',
      'blt_1b/consolidated.pth',
      'entropy_model/params.json',
      'entropy_model/consolidated.pth',
    ]);
    const text = await readFile(join(out, 'blt_1b/params.json'), 'utf8');
    expect(text).toContain('"norm_eps":0.00001');
    expect(text).not.toContain(' ');
    const params = JSON.parse(text);
    expect(params.model).toMatchObject({
      dim_global: 64,
      dim_local_encoder: 32,
      n_layers_local_decoder: 2,
      cross_attn_k: 2,
      encoder_hash_byte_group_size: [3, 4, 5, 6, 7, 8],
      encoder_hash_byte_group_nb_functions: 1,
      attn_impl: 'xformers',
      attn_bias_type: 'block_causal',
      local_attention_window_len: 512,
      rope_theta: 500000,
      max_encoder_seq_length: 24576,
      cross_attn_nheads: 2,
      cross_attn_all_layers_decoder: true,
      cross_attn_init_by_pooling: true,
      downsampling_by_pooling: 'max',
      patch_size: 4,
      patching_mode: 'entropy',
      vocab_size: 260,
    });
    expect(params.data.patcher_args).toMatchObject({
      patching_mode: 'entropy',
      threshold: 1.335442066192627,
      monotonicity: false,
      max_patch_length: null,
      patch_size: 4,
    });
    expect(params.data.tokenizer_args).toEqual({ name: 'blt', init_kwargs: null });
    expect(params.distributed.model_dtype).toBe('bf16');
    const entropyParams = JSON.parse(await readFile(join(out, 'entropy_model/params.json'), 'utf8'));
    expect(entropyParams.entropy_model).toMatchObject({
      dim: 32,
      n_layers: 2,
      n_heads: 2,
      max_seqlen: 8192,
      ffn_dim_multiplier: 1,
      vocab_size: 260,
      sliding_window: 512,
      attn_bias_type: 'local_block_causal',
      attn_impl: 'xformers',
    });
    expect(entropyParams.data.patcher_args.patching_mode).toBe('byte');
    await checkPth(join(out, 'blt_1b/consolidated.pth'), bltTiny(), 5);
    await checkPth(join(out, 'entropy_model/consolidated.pth'), entropyTiny(), 5);
    expect(summary.tensors).toBe(bltTiny().length + entropyTiny().length);
    expect(summary.bytes).toBe(summary.files.reduce((a, f) => a + f.bytes, 0));
  });

  it('writes blt-entropy alone, and can leave the entropy model out of a BLT', async () => {
    const { out } = await write({ model: 'blt-entropy', layout: 'consolidated' });
    expect(await listFiles(out)).toEqual(['entropy_model/consolidated.pth', 'entropy_model/params.json']);
    const { out: out2 } = await write({ model: 'blt-7b', layout: 'consolidated', withEntropy: false });
    expect(await listFiles(out2)).toEqual(['blt_7b/consolidated.pth', 'blt_7b/params.json']);
    const pth = openPthFile(join(out2, 'blt_7b/consolidated.pth'));
    expect(pth.info('global_transformer.token_embedding_projection.weight').shape).toEqual([128, 160]);
    pth.close?.();
  });
});

describe('hub layout (facebook/blt-1b, facebook/blt-entropy)', () => {
  it('writes config.json {"args"}, model.safetensors with reference names, train_args.json and entropy_model/', async () => {
    const { out } = await write({ model: 'blt-1b', layout: 'hub', seed: 5 });
    expect(await listFiles(out)).toEqual([
      'config.json',
      'entropy_model/consolidated.pth',
      'entropy_model/params.json',
      'model.safetensors',
      'train_args.json',
    ]);
    const configText = await readFile(join(out, 'config.json'), 'utf8');
    const config = JSON.parse(configText);
    expect(Object.keys(config)).toEqual(['args']);
    expect(Object.keys(config.args)).toEqual(Object.keys(config.args).sort());
    expect(configText).toContain('"norm_eps": 1e-05');
    expect(config.args).toEqual(toPlainJson(bltModelArgs('blt-1b', 'tiny')));
    const trainArgs = JSON.parse(await readFile(join(out, 'train_args.json'), 'utf8'));
    expect(trainArgs.model).toEqual(config.args);

    const st = parseSafetensors(new Uint8Array(await readFile(join(out, 'model.safetensors'))));
    expect(st.metadata).toEqual({ format: 'pt' });
    const expected = bltTiny();
    expect(st.names()).toEqual(expected.map((t) => t.name).sort());
    for (const t of expected) {
      const info = st.info(t.name);
      expect(info.dtype).toBe('BF16');
      expect(info.shape).toEqual(t.shape);
    }
    // Same values as the consolidated .pth of the same seed (values depend on the name only).
    for (const t of [expected[0]!, expected.at(-1)!, expected.find((x) => x.init.kind === 'ones')!]) {
      expect(sha(st.get(t.name).data as Uint8Array)).toBe(sha(tensorBytes(t, 5, 'bf16')));
    }
    await checkPth(join(out, 'entropy_model/consolidated.pth'), entropyTiny(), 5);
  });

  it('writes blt-entropy as config.json {"args": LMTransformerArgs} + model.safetensors', async () => {
    const { out } = await write({ model: 'blt-entropy', layout: 'hub', seed: 5 });
    expect(await listFiles(out)).toEqual(['config.json', 'model.safetensors']);
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    expect(config.args).toMatchObject({
      dim: 32,
      n_layers: 2,
      n_heads: 2,
      vocab_size: 260,
      sliding_window: 512,
      rope_theta: 10000,
      attn_impl: 'xformers',
    });
    const st = parseSafetensors(new Uint8Array(await readFile(join(out, 'model.safetensors'))));
    expect(st.names()).toEqual(
      entropyTiny()
        .map((t) => t.name)
        .sort(),
    );
    const emb = entropyTiny().find((t) => t.name === 'tok_embeddings.weight')!;
    expect(sha(st.get(emb.name).data as Uint8Array)).toBe(sha(tensorBytes(emb, 5, 'bf16')));
  });

  it('writes f32 and f16 when asked', async () => {
    for (const [dtype, st, storage] of [
      ['f32', 'F32', 'FloatStorage'],
      ['f16', 'F16', 'HalfStorage'],
    ] as const) {
      const { out } = await write({ model: 'blt-1b', layout: 'hub', dtype });
      const file = parseSafetensors(new Uint8Array(await readFile(join(out, 'model.safetensors'))));
      expect(new Set(file.names().map((x) => file.info(x).dtype))).toEqual(new Set([st]));
      const pth = await readFile(join(out, 'entropy_model/consolidated.pth'));
      expect(pth.includes(Buffer.from(`torch\n${storage}\n`))).toBe(true);
    }
  });
});

/** The converter's renaming, written out here independently. */
function hfName(name: string): string {
  return name
    .replace('.attention.', '.self_attn.')
    .replace('.feed_forward.', '.mlp.')
    .replace('.attention_norm.', '.input_layernorm.')
    .replace('.ffn_norm.', '.post_attention_layernorm.')
    .replace('.tok_embeddings.', '.embed_tokens.')
    .replace('.cross_attn_norm_q.', '.q_norm.')
    .replace('.cross_attn_norm_kv.', '.k_norm.')
    .replace(/\.w1\./, '.gate_proj.')
    .replace(/\.w2\./, '.down_proj.')
    .replace(/\.w3\./, '.up_proj.')
    .replace(/\.wq\./, '.q_proj.')
    .replace(/\.wk\./, '.k_proj.')
    .replace(/\.wv\./, '.v_proj.')
    .replace(/\.wo\./, '.o_proj.')
    .replace('.output.', '.lm_head.');
}

function expectedTransformers(): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const t of bltTiny()) {
    if (t.name.startsWith('encoder_hash_tok_embedding.')) continue;
    if (t.name === 'local_decoder.output.weight') m.set('lm_head.weight', [...t.shape]);
    else m.set(`model.${hfName(t.name)}`, [...t.shape]);
  }
  m.set('model.encoder_hash_tok_embedding.weight', [6 * 1002, 32]);
  for (const t of entropyTiny()) m.set(`model.${hfName(`patcher.${t.name}`)}`, [...t.shape]);
  return m;
}

describe('transformers layout (model_type "blt")', () => {
  it('writes the converter config, renamed weights, the fused hash table, one file under the shard size', async () => {
    const { out } = await write({ model: 'blt-1b', layout: 'transformers', seed: 9 });
    expect(await listFiles(out)).toEqual(['config.json', 'model.safetensors', 'tokenizer_config.json']);
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      model_type: 'blt',
      vocab_size: 260,
      max_position_embeddings: 4096,
      patch_in_forward: true,
      patching_mode: 'entropy',
      patch_size: 4,
      patching_threshold: 1.335442066192627,
      cross_attn_k: 2,
      encoder_hash_byte_group_vocab: 1002,
      encoder_hash_byte_group_nb_functions: 1,
      tie_word_embeddings: false,
    });
    expect(config.patcher_config).toMatchObject({
      hidden_size: 32,
      num_hidden_layers: 2,
      intermediate_size: 256,
      rope_theta: 10000,
      max_position_embeddings: 8192,
    });
    expect(config.encoder_config).toMatchObject({
      hidden_size: 32,
      intermediate_size: 96,
      max_position_embeddings: 24576,
      rope_theta: 500000,
      cross_attn_all_layers: false,
    });
    expect(config.decoder_config).toMatchObject({ hidden_size: 32, num_hidden_layers: 2, cross_attn_all_layers: true });
    expect(config.global_config).toMatchObject({
      hidden_size: 64,
      num_hidden_layers: 2,
      intermediate_size: 192,
      max_position_embeddings: 4096,
    });
    expect(JSON.parse(await readFile(join(out, 'tokenizer_config.json'), 'utf8')).tokenizer_class).toBe('BltTokenizer');

    const st = parseSafetensors(new Uint8Array(await readFile(join(out, 'model.safetensors'))));
    const expected = expectedTransformers();
    expect(new Map(st.names().map((x) => [x, [...st.info(x).shape]]))).toEqual(expected);
    // Fused table = the six reference tables stacked in index order.
    const tables = bltTiny().filter((t) => t.name.startsWith('encoder_hash_tok_embedding.'));
    const fusedData = st.get('model.encoder_hash_tok_embedding.weight').data;
    const fused = new Uint8Array(fusedData.buffer, fusedData.byteOffset, fusedData.byteLength);
    let at = 0;
    for (const t of tables) {
      const bytes = tensorBytes(t, 9, 'bf16');
      expect(sha(fused.subarray(at, at + bytes.byteLength))).toBe(sha(bytes));
      at += bytes.byteLength;
    }
    const head = bltTiny().find((t) => t.name === 'local_decoder.output.weight')!;
    expect(sha(st.get('lm_head.weight').data as Uint8Array)).toBe(sha(tensorBytes(head, 9, 'bf16')));
  });

  it('shards like save_pretrained with an index.json consistent with the shards', async () => {
    const shardBytes = 150_000;
    const { out, summary } = await write({ model: 'blt-1b', layout: 'transformers', shardBytes });
    const files = await listFiles(out);
    const shards = files.filter((f) => f.endsWith('.safetensors'));
    expect(shards.length).toBeGreaterThan(2);
    shards.forEach((f, i) =>
      expect(f).toBe(`model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`),
    );
    const indexText = await readFile(join(out, 'model.safetensors.index.json'), 'utf8');
    expect(indexText.endsWith('}\n')).toBe(true);
    const index = JSON.parse(indexText);
    const seen = new Map<string, string>();
    let total = 0;
    for (const f of shards) {
      const st = parseSafetensors(new Uint8Array(await readFile(join(out, f))));
      let bytes = 0;
      for (const name of st.names()) {
        expect(seen.has(name)).toBe(false);
        seen.set(name, f);
        const b = numel(st.info(name).shape) * 2;
        bytes += b;
      }
      expect(bytes <= shardBytes || st.names().length === 1).toBe(true);
      total += bytes;
    }
    expect(new Map(Object.entries(index.weight_map))).toEqual(seen);
    expect(Object.keys(index.weight_map)).toEqual([...seen.keys()].sort());
    expect(index.metadata.total_size).toBe(total);
    expect(index.metadata.total_parameters).toBe(total / 2);
    expect(new Set(seen.keys())).toEqual(new Set(expectedTransformers().keys()));
    expect(summary.files.map((f) => f.path).sort()).toEqual(files);
  });

  it('has no transformers layout for the entropy model alone', async () => {
    await expect(write({ model: 'blt-entropy', layout: 'transformers' })).rejects.toThrow(/no transformers layout/);
  });
});

describe('determinism and atomic writes', () => {
  it('gives the same bytes for the same seed and other values for another seed; leaves no temporary files', async () => {
    const hashes = async (out: string) => {
      const out2: Record<string, string> = {};
      for (const f of await listFiles(out)) out2[f] = sha(new Uint8Array(await readFile(join(out, f))));
      return out2;
    };
    const a = await write({ model: 'blt-1b', layout: 'hub', seed: 11 });
    const b = await write({ model: 'blt-1b', layout: 'hub', seed: 11 });
    const c = await write({ model: 'blt-1b', layout: 'hub', seed: 12 });
    const ha = await hashes(a.out);
    expect(await hashes(b.out)).toEqual(ha);
    const hc = await hashes(c.out);
    expect(hc['model.safetensors']).not.toBe(ha['model.safetensors']);
    expect(hc['config.json']).toBe(ha['config.json']);
    expect(Object.keys(ha).some((f) => f.split('/').some((p) => p.startsWith('.')))).toBe(false);
    // Rewriting into the same folder replaces the files.
    const again = await writeReleasedCheckpoint({ model: 'blt-1b', layout: 'hub', preset: 'tiny', seed: 12, out: a.out, fsync: false });
    expect(await hashes(again.out)).toEqual(hc);
  });

  it('refuses a checkpoint larger than the free space', async () => {
    const out = join(root, 'not-yet', 'created');
    await expect(ensureFreeSpace(out, 2 ** 60)).rejects.toThrow(/GB free, the checkpoint needs/);
    await expect(ensureFreeSpace(out, 1000)).resolves.toBeUndefined();
    await expect(readdir(out)).rejects.toThrow();
  });
});
