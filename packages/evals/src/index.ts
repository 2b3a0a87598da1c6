export { EvalError, type EvalErrorCode } from './errors.js';
export {
  encodeFor,
  scoreRows,
  uniformByteModel,
  type ByteScoringModel,
  type ScoringModel,
  type ScoringRow,
  type TokenScoringModel,
  type Tokenizer,
} from './scoring-model.js';
export { bitsPerByte, evaluateBitsPerByte, type BitsPerByteOptions, type BitsPerByteResult, type ByteSource } from './bits-per-byte.js';
export { bltScorer, entropyModelScorer, measurePatching, type BltScoringModel } from './adapters.js';
// The BLT's patching object lives with the model (one implementation for every scorer); re-exported here.
export { bltPatchingFromSettings, usesEntropyModel, type BltPatching } from '@bytelatent/blt';
export {
  attentionFlops,
  bltFlopsPerByte,
  bltFlopsShape,
  crossAttentionFlops,
  deEmbeddingFlops,
  feedForwardFlops,
  qkvoFlops,
  tokenModelFlopsPerByte,
  trainingFlops,
  transformerFlops,
  transformerShape,
  type BltFlopsBreakdown,
  type BltFlopsShape,
  type TransformerArgsLike,
  type TransformerShape,
} from './flops.js';
export { PatchStatistics, patchStatistics, scriptOf, type PatchStatisticsResult, type PatchSummary } from './patch-stats.js';
export { loadWords, splitWords, type LoadWordsOptions } from './words.js';
export {
  CHARACTER_TASKS,
  evaluateCharacterTasks,
  generateCharacterTasks,
  type CharacterTask,
  type CharacterTaskOptions,
  type CharacterTaskResult,
  type TaskItem,
  type TaskScore,
} from './character-tasks.js';
export {
  NOISE_KINDS,
  applyNoise,
  evaluateNoiseRobustness,
  type NoiseKind,
  type NoiseOptions,
  type NoiseRobustnessResult,
} from './noise.js';
export { BytePairTokenizer, byteTokenizer, pieceStarts, type BpeJson, type BpeTrainOptions } from './bpe.js';
export {
  TOKEN_MODEL_ARGS_KEY,
  TOKEN_MODEL_TOKENIZER_KEY,
  TokenTransformer,
  tokenTransformerScorer,
  type TokenTransformerArgs,
} from './token-transformer.js';
export { gpt2BytesPerToken, gpt2TokenCount } from './gpt2.js';
export { UDHR_DEFAULT_CODES, loadUdhr, udhrHtmlToText } from './udhr.js';
export {
  loadModel,
  loadModelFile,
  loadPretrainedEntropyModel,
  loadPretrainedModel,
  pretrainedFolderKind,
  type LoadModelOptions,
  type LoadedModel,
} from './load-model.js';
export { seededRandom } from './random.js';
