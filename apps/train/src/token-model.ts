/**
 * The token-level baselines of the study as {@link TrainableModel}s: a `TokenTransformer` from
 * `@bytelatent/evals` over a tokenizer's ids (a BPE, or the byte vocabulary for the plain byte-level
 * transformer). The trainer hands every model the same byte rows; this adapter re-tokenizes each
 * row's targets, so all models learn from exactly the same bytes and every loss is summed over the
 * same bytes — the trainer's per-byte normalisation then gives bits per *byte* for tokens too.
 */
import * as tf from '@tensorflow/tfjs-core';
import { BOE_ID, BYTE_OFFSET } from '@bytelatent/bytes';
import { TOKEN_MODEL_TOKENIZER_KEY, TokenTransformer, type BytePairTokenizer, type TokenTransformerArgs } from '@bytelatent/evals';
import type { ParameterRegistry } from '@bytelatent/nn';
import type { TrainingRow } from './dataset.js';
import type { PreparedRows, TrainableModel } from './models.js';
import { TrainError } from './errors.js';

/**
 * The token row that predicts the same bytes as a byte row: a context id, then the row's targets
 * with their byte runs encoded by the tokenizer and the specials (BOS, EOS) kept as they are.
 * The context id is the byte row's first id when it is a special (a document start) and BOE
 * ("continues from before") otherwise, since a mid-document row has no token boundary to start from.
 *
 * @param row - a byte row (ids = byte + 4, specials < 4)
 * @param tokenizer - the tokenizer
 * @returns the token row (at most `row.targets.length + 1` ids long)
 */
export function tokenRow(row: TrainingRow, tokenizer: BytePairTokenizer): { tokens: Int32Array; targets: Int32Array } {
  const ids: number[] = [row.tokens[0]! < BYTE_OFFSET ? row.tokens[0]! : BOE_ID];
  let run: number[] = [];
  const flush = () => {
    if (run.length > 0) for (const id of tokenizer.encode(Uint8Array.from(run))) ids.push(id);
    run = [];
  };
  for (const t of row.targets) {
    if (t >= BYTE_OFFSET) run.push(t - BYTE_OFFSET);
    else {
      flush();
      ids.push(t);
    }
  }
  flush();
  const seq = Int32Array.from(ids);
  return { tokens: seq.subarray(0, seq.length - 1), targets: seq.subarray(1) };
}

/** A token transformer with its tokenizer. */
export class TokenTrainable implements TrainableModel {
  readonly kind = 'token' as const;
  readonly model: TokenTransformer;

  /**
   * @param args - the transformer's sizes (`vocab_size` must be the tokenizer's)
   * @param seed - initialisation seed
   * @param tokenizer - turns each row's bytes into ids
   * @throws {TrainError} `CONFIG_INVALID` when the vocabularies differ
   */
  constructor(
    args: TokenTransformerArgs,
    seed: number,
    readonly tokenizer: BytePairTokenizer,
  ) {
    if (args.vocab_size !== tokenizer.vocabSize) {
      throw new TrainError(
        'CONFIG_INVALID',
        `token model vocab_size ${args.vocab_size} differs from the tokenizer's ${tokenizer.vocabSize} ids`,
      );
    }
    this.model = new TokenTransformer(args, seed);
  }

  get registry(): ParameterRegistry {
    return this.model.registry;
  }

  get args(): Readonly<Record<string, unknown>> {
    return this.model.args as unknown as Record<string, unknown>;
  }

  async prepare(rows: readonly TrainingRow[]): Promise<PreparedRows> {
    const converted = rows.map((r) => tokenRow(r, this.tokenizer));
    const longest = Math.max(...converted.map((c) => c.tokens.length));
    if (longest > this.model.maxSeqLen) {
      throw new TrainError(
        'CONFIG_INVALID',
        `a row holds ${longest} tokens, more than the token model's max_seqlen ${this.model.maxSeqLen} (use max_seqlen >= seqLen + 1)`,
      );
    }
    return { tokens: converted.map((c) => c.tokens), targets: converted.map((c) => c.targets) };
  }

  sumLoss(batch: PreparedRows): tf.Scalar {
    return this.model.sumLoss(batch.tokens.map((t, i) => ({ tokens: t, targets: batch.targets[i]! })));
  }

  toSafetensors(metadata: Readonly<Record<string, string>> = {}): Promise<Uint8Array> {
    return this.model.toSafetensors({ ...metadata, [TOKEN_MODEL_TOKENIZER_KEY]: JSON.stringify(this.tokenizer.toJSON()) });
  }

  dispose(): void {
    this.model.dispose();
  }
}
