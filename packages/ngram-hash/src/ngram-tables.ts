import { NgramHashError } from './errors.js';
import { byteGroupHashIdsMulti } from './hash.js';
import { HASH_PRIMES, checkInteger } from './primes.js';

/** Which hash n-gram tables a model has (the reference's `encoder_hash_byte_group_*` arguments). */
export interface HashNgramConfig {
  /** Window lengths n, in table order. Released models: `[3, 4, 5, 6, 7, 8]`. */
  readonly groupSizes: readonly number[];
  /** Number of hash functions; each gets its own prime and its own tables. Released models: 1. */
  readonly numFunctions: number;
  /** Rows per table. Released models: 500002. */
  readonly vocabSize: number;
}

/** The indices into one hash embedding table. */
export interface HashNgramTable {
  /** Position of the table in `encoder_hash_tok_embedding`: `hashFunction * groupSizes.length + index(n)`. */
  readonly tableIndex: number;
  readonly hashFunction: number;
  readonly groupSize: number;
  /** One table index per token position. */
  readonly ids: Int32Array;
}

/** The configuration of the released BLT-1B and BLT-7B models (architecture §2.1). */
export const RELEASED_HASH_CONFIG: HashNgramConfig = Object.freeze({
  groupSizes: Object.freeze([3, 4, 5, 6, 7, 8]),
  numFunctions: 1,
  vocabSize: 500002,
});

/**
 * Checks a {@link HashNgramConfig}.
 *
 * @param config - the configuration
 * @throws {NgramHashError} `INVALID_ARGUMENT` naming the bad field
 */
export function validateHashNgramConfig(config: HashNgramConfig): void {
  if (!Array.isArray(config.groupSizes) || config.groupSizes.length === 0) {
    throw new NgramHashError('INVALID_ARGUMENT', 'groupSizes must be a non-empty array of integers >= 1');
  }
  config.groupSizes.forEach((n, i) => checkInteger(`groupSizes[${i}]`, n, 1));
  checkInteger('numFunctions', config.numFunctions, 1);
  if (config.numFunctions > HASH_PRIMES.length) {
    throw new NgramHashError(
      'INVALID_ARGUMENT',
      `numFunctions must be <= ${HASH_PRIMES.length} (one prime each), got ${config.numFunctions}`,
    );
  }
  checkInteger('vocabSize', config.vocabSize, 1);
}

/**
 * Reads the hash configuration from reference model arguments (a BLT `config.json`/`params.json`
 * `args` object), using the reference's names.
 *
 * @param args - object with `encoder_hash_byte_group_size`, `encoder_hash_byte_group_nb_functions`,
 *   `encoder_hash_byte_group_vocab`
 * @returns the configuration
 * @throws {NgramHashError} when a field is missing or invalid
 */
export function hashNgramConfigFromArgs(args: Readonly<Record<string, unknown>>): HashNgramConfig {
  const config = {
    groupSizes: args['encoder_hash_byte_group_size'] as number[],
    numFunctions: args['encoder_hash_byte_group_nb_functions'] as number,
    vocabSize: args['encoder_hash_byte_group_vocab'] as number,
  };
  validateHashNgramConfig(config);
  return config;
}

/**
 * Every hash table's indices for a sequence, in the order of the reference's
 * `encoder_hash_tok_embedding` list (outer loop over hash functions, inner over group sizes).
 *
 * @param tokens - token ids
 * @param config - group sizes, number of functions, table size
 * @param rowLength - if set, `tokens` is a batch of rows of this length
 * @returns one entry per table
 * @throws {NgramHashError} on a bad token or configuration
 */
export function hashNgramTables(tokens: ArrayLike<number>, config: HashNgramConfig, rowLength?: number): HashNgramTable[] {
  validateHashNgramConfig(config);
  const tables: HashNgramTable[] = [];
  for (let f = 0; f < config.numFunctions; f++) {
    const perSize = byteGroupHashIdsMulti(tokens, config.groupSizes, { vocabSize: config.vocabSize, hashFunction: f, rowLength });
    config.groupSizes.forEach((groupSize, i) => {
      tables.push({ tableIndex: f * config.groupSizes.length + i, hashFunction: f, groupSize, ids: perSize[i]! });
    });
  }
  return tables;
}
