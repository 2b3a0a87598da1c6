import { checkInt } from '../errors.js';
import type { InitStdFactor } from './init.js';
import type { ParameterScope } from './parameters.js';
import { RotaryEmbedding } from './rotary.js';
import { TransformerBlock, type TransformerBlockConfig } from './transformer-block.js';

/**
 * Arguments of a stack of pre-norm {@link TransformerBlock}s with rotary position embeddings, as
 * the reference's `BaseTransformerArgs` (`dim`, `n_layers`, `n_heads`, `n_kv_heads`, `head_dim`,
 * `multiple_of`, `ffn_dim_multiplier`, `norm_eps`, `rope_theta`, `max_seqlen`, `init_std_factor`).
 * The BLT components (local encoder, global transformer, local decoder) extend it with their own
 * fields; each documents which reference argument fills `dim`, `nLayers`, `nHeads` and `maxSeqLen`.
 */
export interface TransformerStackConfig extends TransformerBlockConfig {
  /** Number of blocks (`n_layers`), >= 1. */
  readonly nLayers: number;
  /** `rope_theta`: the RoPE base. */
  readonly ropeTheta: number;
  /** RoPE table length: the most positions a row may have. */
  readonly maxSeqLen: number;
  /** `init_std_factor`: depth scaling of the initial weights (random initialisation only; default `disabled`). */
  readonly initStdFactor?: InitStdFactor;
}

/** What {@link createTransformerStack} returns. */
export interface TransformerStack {
  /** The blocks, `layers.0` .. `layers.{nLayers − 1}` of the scope. */
  readonly layers: TransformerBlock[];
  /** RoPE tables for `headDim` (default `dim / nHeads`), `ropeTheta` and `maxSeqLen`. */
  readonly rope: RotaryEmbedding;
}

/**
 * The blocks and RoPE of a {@link TransformerStackConfig}, as the reference builds them: block i is
 * `layers.{i}` of `scope`, initialised with `init_std_factor` at depth i of `nLayers` (architecture §11),
 * the blocks in order (each draws its weights from `random` in turn, so the caller's weights created
 * before and after keep the reference's order).
 *
 * @param scope - the module's scope (e.g. `local_encoder`)
 * @param config - sizes
 * @param random - uniform generator in [0, 1) for the initial weights
 * @returns the blocks and the rotary embedding (which draws nothing from `random`)
 * @throws {NnError} `INVALID_ARGUMENT` for invalid sizes; `TOO_LARGE` past the registry's `maxParameters`
 */
export function createTransformerStack(scope: ParameterScope, config: TransformerStackConfig, random: () => number): TransformerStack {
  checkInt('nLayers', config.nLayers, 1);
  const factor = config.initStdFactor ?? 'disabled';
  const layers = Array.from(
    { length: config.nLayers },
    (_, i) => new TransformerBlock(scope.child(`layers.${i}`), config, { random, layerIndex: i, nLayers: config.nLayers, factor }),
  );
  const rope = new RotaryEmbedding(config.headDim ?? config.dim / config.nHeads, config.ropeTheta, config.maxSeqLen);
  return { layers, rope };
}
