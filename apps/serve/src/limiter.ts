/** Bounded concurrency with a bounded queue: work beyond both is refused (HTTP 503), never piled up. */
import { HttpError } from './http-error.js';

export class ConcurrencyLimiter {
  private active = 0;
  private readonly waiting: Array<{ start: () => void; reject: (e: Error) => void; signal?: AbortSignal; onAbort?: () => void }> = [];

  constructor(
    readonly maxConcurrent: number,
    readonly maxQueue: number,
  ) {}

  get stats(): { active: number; queued: number; maxConcurrent: number; maxQueue: number } {
    return { active: this.active, queued: this.waiting.length, maxConcurrent: this.maxConcurrent, maxQueue: this.maxQueue };
  }

  /**
   * Runs `task` when a slot is free.
   *
   * @throws {HttpError} 503 `OVERLOADED` at once when the queue is full; the signal's reason when
   *   aborted while queued
   */
  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.active >= this.maxConcurrent) {
      if (this.waiting.length >= this.maxQueue) {
        throw new HttpError(503, 'OVERLOADED', `the server is busy (${this.active} running, ${this.waiting.length} queued); retry later`);
      }
      await new Promise<void>((start, reject) => {
        const entry: (typeof this.waiting)[number] = { start, reject, ...(signal ? { signal } : {}) };
        if (signal) {
          entry.onAbort = () => {
            const i = this.waiting.indexOf(entry);
            if (i >= 0) this.waiting.splice(i, 1);
            reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
          };
          signal.addEventListener('abort', entry.onAbort, { once: true });
        }
        this.waiting.push(entry);
      });
    }
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      const next = this.waiting.shift();
      if (next) {
        if (next.signal && next.onAbort) next.signal.removeEventListener('abort', next.onAbort);
        next.start();
      }
    }
  }
}
