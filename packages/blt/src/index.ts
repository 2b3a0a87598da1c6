export { BltError, type BltErrorCode } from '@bytelatent/nn';
export { bltArgsOfSize, resolveBltArgs, type BltArgs, type BltSizes, type ResolvedBltArgs } from './blt-args.js';
export {
  BLT_ARGS_METADATA_KEY,
  ByteLatentTransformer,
  type BltActivationTap,
  type BltBuildOptions,
  type FromSafetensorsOptions,
  type PreparedBatch,
} from './blt-model.js';
export {
  BLT_CHECKPOINT_FORMAT,
  BLT_CHECKPOINT_VERSION,
  BLT_MODEL_JSON,
  BLT_WEIGHTS_BIN,
  fromBltArtifacts,
  loadBlt,
  saveBlt,
  toBltArtifacts,
  type BltCheckpointTopology,
} from './checkpoint.js';
export {
  generate,
  streamGenerate,
  type FinishReason,
  type GenerateByteEvent,
  type GenerateEvent,
  type GenerateFinishEvent,
  type GenerateOptions,
  type GenerateResult,
  type GenerateStats,
  type LoadedGenerateOptions,
  type GenerationPatching,
} from './generate.js';
export { bitsPerByte, rowLogProbs, scoreBytes, type ByteScore } from './metrics.js';
export {
  bltPatchingFromSettings,
  bltPatchingOfModel,
  patchingOfMetadata,
  patchOptionsOf,
  patchRows,
  usesEntropyModel,
  type BltPatching,
  type StoredPatching,
} from './patching.js';
export { StopMatcher, sampleToken, type SamplingOptions } from './sampling.js';
export {
  MIN_TRAINING_BYTES,
  TextTrainer,
  type TextTrainerOptions,
  type TrainedKind,
  type TrainedModelFile,
  type TrainingRecord,
} from './text-trainer.js';
export {
  PRETRAINED_BLTS,
  RELEASED_BLT_DEFAULTS,
  bltArgsFromTransformersConfig,
  loadPretrained,
  pretrainedBltUrl,
  type LoadPretrainedOptions,
  type PretrainedBlt,
  type PretrainedBltName,
} from './pretrained.js';
export {
  exportPretrained,
  savePretrained,
  transformersLayoutProblems,
  type ExportPretrainedOptions,
  type PretrainedFiles,
} from './export-pretrained.js';
