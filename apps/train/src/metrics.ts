// The records a run writes to `metrics.jsonl`: written by the trainer, read by the plots and the study.

/** One line of `metrics.jsonl`. */
export type MetricsRecord =
  | {
      type: 'train';
      step: number;
      loss: number;
      bpb: number;
      lr: number;
      gradNorm: number;
      clipped: boolean;
      bytes: number;
      bytesPerSec: number;
      elapsedSec: number;
    }
  | { type: 'eval'; step: number; bpb: number; bytes: number; elapsedSec: number };
