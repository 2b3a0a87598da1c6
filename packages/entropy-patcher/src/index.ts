export { EntropyModel, entropyFromLogits, type ActivationTap, type EntropyModelArgs } from './entropy-model.js';
export { PatcherError, type PatcherErrorCode } from './errors.js';
export {
  ARGS_METADATA_KEY,
  EntropyPatcher,
  PATCHER_METADATA_KEY,
  PRETRAINED_MODEL_FILE,
  PRETRAINED_MODELS,
  pretrainedModelNamed,
  type PretrainedModelName,
  type EntropyPatcherOptions,
  type PatcherLoadOptions,
  type PatchCallOptions,
  type PatchResult,
  type PatchSegment,
  type PatcherDefaults,
  type StreamedPatchBatch,
} from './patcher.js';
export {
  calibrateThreshold,
  decoderPatchIdsFromLengths,
  findPatchBoundaries,
  patchIdsFromLengths,
  patchingSignal,
  splitLongPatches,
  StreamingPatcher,
  type StreamedPatches,
  type Calibration,
  type CalibrationOptions,
  type CalibrationRow,
  type PatchBoundaries,
  type PatchOptions,
  type PatchingMode,
} from './patching.js';
export {
  RELEASED_ENTROPY_WINDOW,
  argsFromConsolidatedParams,
  defaultsFromTransformersConfig,
  entropyModelOfBlt,
  patcherDefaultsFromReference,
  readPretrainedEntropyModel,
  transformersEntropySource,
  type PretrainedEntropySource,
} from './pretrained.js';
