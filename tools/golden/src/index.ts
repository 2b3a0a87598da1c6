export { GOLDEN_CHECKS, type GoldenCheck, type GoldenCheckOutcome, type GoldenCheckResult, type GoldenSkip } from './checks/index.js';
export { FLOAT_TOLERANCE, compareArrays, mergeComparisons, type Comparison } from './compare.js';
export {
  GoldenFolderError,
  openGoldenFolder,
  type GoldenCase,
  type GoldenCaseRef,
  type GoldenConfig,
  type GoldenFolder,
} from './golden-folder.js';
export { runGoldenCheck, type GoldenReport, type GoldenRunOptions } from './run-golden.js';
export { useBackend, type GoldenBackend } from './backend.js';
