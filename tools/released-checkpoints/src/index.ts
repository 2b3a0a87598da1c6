// Random-weight checkpoints with the exact files, tensor names, shapes and dtypes of Meta's released
// BLT models, for load-time and memory benchmarks of the loaders. See README.md.
export { ensureFreeSpace, writeReleasedCheckpoint, type WriteOptions, type WriteSummary, type WrittenFile } from './generate.js';
export {
  LAYOUTS,
  planCheckpoint,
  splitIntoShards,
  transformersConfig,
  transformersTensors,
  type CheckpointPlan,
  type Layout,
  type PlanOptions,
  type PlannedFile,
} from './layouts.js';
export {
  PRESETS,
  RELEASED_MODELS,
  bltModelArgs,
  bltTensors,
  bltTrainArgs,
  entropyModelArgs,
  entropyTensors,
  entropyTrainArgs,
  ffnHidden,
  numel,
  type Preset,
  type ReferenceTensor,
  type ReleasedModelName,
  type TensorInit,
} from './models.js';
export type { ProgressInfo } from './progress.js';
export { planPth, statePickle, type PthFlavor, type PthPlan } from './pth-writer.js';
export { pydanticFloat, pydanticJson, pythonFloatRepr, pythonJson, toPlainJson, PyFloat, type PyValue } from './pyjson.js';
export { safetensorsHeader } from './safetensors-writer.js';
export type { OutputTensor } from './tensors.js';
export { BLOCK_ELEMENTS, DTYPES, dtypeBytes, tensorBytes, toBfloat16Bits, toFloat16Bits, type Dtype } from './values.js';
