/** Messages between the page's training tab and its Web Worker (train-worker.ts). */
import type { TextTrainerOptions, TrainedModelFile, TrainingRecord } from '@bytelatent/blt';
import type { BrowserBackendChoice } from './engines.js';

/** Page → worker. */
export type TrainRequest =
  | {
      readonly type: 'start';
      readonly options: TextTrainerOptions;
      readonly backend: BrowserBackendChoice;
      /** Absolute URL of tfjs's wasm binaries (the page's `wasm/`). */
      readonly wasmPaths: string;
    }
  | { readonly type: 'pause' }
  | { readonly type: 'resume' }
  /** Saves the model as it is after the step in flight; `purpose` comes back with it. */
  | { readonly type: 'save'; readonly purpose: SavePurpose };

/** What a save is for: stored in this browser's IndexedDB, or downloaded. */
export type SavePurpose = 'browser' | 'download';

/** Worker → page. */
export type TrainEvent =
  | {
      readonly type: 'started';
      /** Where training runs, in words ("WebGPU (adapter …)", "wasm"). */
      readonly backend: string;
      readonly parameters: number;
      readonly trainBytes: number;
      readonly heldoutBytes: number;
      readonly steps: number;
    }
  | { readonly type: 'step'; readonly record: TrainingRecord; readonly heldoutBefore: number }
  | { readonly type: 'paused'; readonly step: number }
  | { readonly type: 'finished'; readonly step: number }
  | { readonly type: 'saved'; readonly model: TrainedModelFile; readonly purpose: SavePurpose }
  | { readonly type: 'error'; readonly message: string };
