export { TrainError, type TrainErrorCode } from './errors.js';
export {
  HELD_OUT_BOOKS,
  KJV_CAP_BYTES,
  normaliseText,
  prepareCorpus,
  type CorpusFileEntry,
  type CorpusManifest,
  type PrepareCorpusOptions,
} from './corpus.js';
export {
  ByteDataset,
  evaluationRows,
  mulberry32,
  resolveDataFiles,
  seededPermutation,
  type ByteDatasetOptions,
  type TrainingRow,
} from './dataset.js';
// The optimizer lives in @bytelatent/nn (the browser trains with it too); re-exported here.
export { AdamW, learningRate, type AdamWOptions, type ScheduleOptions, type UpdateStats } from '@bytelatent/nn';
export { BltTrainable, EntropyTrainable, type PreparedRows, type TrainableModel } from './models.js';
export { RowPatcher, type RowPatchingOptions } from './row-patcher.js';
export { CHECKPOINT_FORMAT, readCheckpoint, restoreCheckpoint, saveCheckpoint, type CheckpointState } from './checkpoint.js';
export {
  CHECKPOINT_FILE,
  CURVE_FILE,
  METRICS_FILE,
  Trainer,
  type TrainSummary,
  type TrainerEvents,
  type TrainerOptions,
  type TrainingHyperparameters,
} from './trainer.js';
export type { MetricsRecord } from './metrics.js';
export { renderCurveSvg, type CurveOptions } from './plot.js';
export { PRESETS, type RunConfig } from './presets.js';
export {
  buildTrainable,
  entropyModelBitsPerByte,
  exportBlt,
  exportBltPretrained,
  exportPatcher,
  loadPretrainedStart,
  loadRowEntropyModel,
  patchStatistics,
  rowPatchingFromSettings,
  type ExportBltPretrainedOptions,
  type ExportPatcherOptions,
  type PretrainedStart,
} from './run.js';
export { TokenTrainable, tokenRow } from './token-model.js';
export { runStudy } from './study.js';
export {
  DEFAULT_STUDY,
  QUICK_STUDY,
  STUDY_ARMS,
  type ArmResult,
  type StudyArmId,
  type StudyOptions,
  type StudySettings,
} from './study-plan.js';
export { renderStudyMarkdown, type CompressionRow } from './study-report.js';
export { renderStudySvg, type StudySeries } from './study-plot.js';
