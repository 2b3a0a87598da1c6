import * as tf from '@tensorflow/tfjs-core';
import { type BltArgs, ByteLatentTransformer } from '@bytelatent/blt';
import { type Comparison, FLOAT_TOLERANCE, compareArrays, mergeComparisons } from '../compare.js';
import type { GoldenCase } from '../golden-folder.js';
import type { GoldenCheck } from './check.js';

/** Golden outputs computed by the composed model, with the tap that yields each (if named differently). */
const NAMED: Readonly<Record<string, string>> = {
  'encoder.byte_embeds': 'local_encoder.tok_embeddings',
  'encoder.input_embeds': 'encoder.input_embeds',
  'encoder.h': 'encoder.h',
  'encoder.pooled_patch_embeds': 'local_encoder.patch_embedding_projection:input',
  'encoder.patch_embeds': 'encoder.patch_embeds',
  'global.tokens': 'global.tokens',
  // `h_cross.view(B, P, k·d)`: the same values in the same order as encoder.patch_embeds.
  'global.input': 'global.input',
  'global.output': 'global.output',
  // `patch_embedding_projection(global.output).reshape(B, P·k, d)`: same values, same order (the
  // global output itself when the decoder has no projection, see the check).
  'decoder.patch_embeds': 'local_decoder.patch_embedding_projection',
  logits: 'logits',
};

/** Tuple outputs of the reference modules (`act.blt.<module>[i]`) and the tap that holds them. */
const TUPLE_OUTPUTS: Readonly<Record<string, string>> = {
  'local_encoder[0][0]': 'encoder.h',
  'local_encoder[0][1]': 'encoder.patch_embeds',
  'global_transformer[0]': 'global.output',
  'local_decoder[0]': 'logits',
};

const BLOCK = String.raw`layers\.\d+(\.(attention_norm|attention(\.(wq|wk|wv|wo))?|ffn_norm|feed_forward(\.(w1|w2|w3))?))?`;
const CROSS = String.raw`cross_attn_layers\.\d+(\.(cross_attn_norm_q|cross_attn_norm_kv|wq|wk|wv|wo))?`;
/** Module paths the model reports through its tap (see `ByteLatentTransformer.forward`). */
const TAPPED = new RegExp(
  [
    String.raw`local_encoder\.tok_embeddings`,
    String.raw`encoder_hash_tok_embedding\.\d+`,
    String.raw`(local_encoder|global_transformer|local_decoder)\.${BLOCK}`,
    String.raw`(local_encoder|local_decoder)\.${CROSS}`,
    String.raw`(local_encoder|local_decoder)\.patch_embedding_projection(:input)?`,
    String.raw`global_transformer\.token_embedding_projection`,
    String.raw`local_decoder\.(norm|output)(:input)?`,
  ]
    .map((r) => `(${r})`)
    .join('|'),
);

function tapOf(name: string): string | undefined {
  if (name in NAMED) return NAMED[name];
  if (!name.startsWith('act.blt.')) return undefined;
  const path = name.slice('act.blt.'.length);
  if (path in TUPLE_OUTPUTS) return TUPLE_OUTPUTS[path];
  return new RegExp(`^(${TAPPED.source})$`).test(path) ? path : undefined;
}

/** Loads the BLT of a folder once per folder (`blt_model.safetensors` + `blt_args`, or the `pretrained` layout). */
const models = new WeakMap<object, ByteLatentTransformer>();
function goldenBltModel(c: GoldenCase): ByteLatentTransformer | string {
  if (c.pretrained !== undefined) return typeof c.pretrained === 'string' ? c.pretrained : c.pretrained.model;
  const cached = models.get(c.config);
  if (cached) return cached;
  const weights = c.weights('blt_model.safetensors');
  if (typeof weights === 'string') return weights;
  const model = ByteLatentTransformer.fromSafetensors(weights, c.config.blt_args as BltArgs);
  models.set(c.config, model);
  return model;
}

function groupOf(name: string): string {
  if (!name.startsWith('act.blt.')) return name;
  const m = /^act\.blt\.([a-z_]+)/.exec(name);
  return `act.blt.${m?.[1] ?? ''}`;
}

/**
 * The composed BLT forward pass from the case's `tokens` and `patch_lengths`: encoder, global and
 * decoder intermediates, `logits`, `token_losses` and `loss` (against `targets`), and every
 * `act.blt.*` module output the model reports (layers and their sub-modules, norms, projections,
 * cross-attention). Floats to 1e-4, `global.tokens` exactly.
 */
export const bltCheck: GoldenCheck = {
  name: 'blt-model',
  claims: (name) => name === 'token_losses' || name === 'loss' || tapOf(name) !== undefined,
  async run(c) {
    for (const needed of ['tokens', 'patch_lengths']) if (!c.tensors.has(needed)) return `case has no "${needed}" tensor`;
    const model = goldenBltModel(c);
    if (typeof model === 'string') return model;
    const tokens = c.tensors.toInt32('tokens');
    const lengths = c.tensors.toInt32('patch_lengths');
    const kept = new Map<string, tf.Tensor>();
    tf.tidy(() => {
      model.forward([tokens], [lengths], (path, value) => {
        if (!kept.has(path)) kept.set(path, tf.keep(tf.clone(value)));
      });
    });
    if (c.tensors.has('targets')) {
      const targets = c.tensors.toInt32('targets');
      kept.set('token_losses', model.tokenLosses([tokens], [lengths], [targets]));
      kept.set('loss', model.loss([tokens], [lengths], [targets]));
    }
    // Read back asynchronously: WebGPU in Node cannot read synchronously.
    const captured = new Map<string, Float32Array | Int32Array>();
    for (const [name, t] of kept) captured.set(name, (await t.data()) as Float32Array | Int32Array);
    tf.dispose([...kept.values()]);
    const byGroup = new Map<string, Comparison[]>();
    for (const name of c.tensors.names()) {
      if (!bltCheck.claims(name)) continue;
      let tap = name === 'token_losses' || name === 'loss' ? name : tapOf(name)!;
      // Without a decoder patch projection (d_G = d_D and k = 1) the decoder reads the global output as it is.
      if (name === 'decoder.patch_embeds' && model.localDecoder.patchEmbeddingProjection === null) tap = 'global.output';
      const ours = captured.get(tap);
      const group = groupOf(name);
      const integer = name === 'global.tokens';
      const expected = integer ? c.tensors.toInt32(name) : c.tensors.toFloat32(name);
      const cmp: Comparison = ours
        ? compareArrays(group, name, expected, ours, integer ? 0 : FLOAT_TOLERANCE)
        : {
            group,
            items: [name],
            values: expected.length,
            maxAbsDiff: Number.POSITIVE_INFINITY,
            tolerance: integer ? 0 : FLOAT_TOLERANCE,
            ok: false,
            firstMismatch: `${name}: not produced by the model (tap "${tap}" missing)`,
          };
      byGroup.set(group, [...(byGroup.get(group) ?? []), cmp]);
    }
    return [...byGroup].map(([group, parts]) => (parts.length === 1 ? parts[0]! : mergeComparisons(group, parts)));
  },
};
