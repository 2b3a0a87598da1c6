export { NgramHashError, type NgramHashErrorCode } from './errors.js';
export { byteGroupHashIds, byteGroupHashIdsMulti, rollingPolynomialHash, type HashIdsOptions } from './hash.js';
export {
  RELEASED_HASH_CONFIG,
  hashNgramConfigFromArgs,
  hashNgramTables,
  validateHashNgramConfig,
  type HashNgramConfig,
  type HashNgramTable,
} from './ngram-tables.js';
export { HASH_PRIMES } from './primes.js';
export { byteGroupHashIdsReference, rollingPolynomialHashReference } from './reference-hash.js';
