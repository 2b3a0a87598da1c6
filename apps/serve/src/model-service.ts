/** What the API computes, independent of HTTP: patching, scoring and generation with the loaded models. */
import * as tf from '@tensorflow/tfjs-core';
import { BOS_ID, EOS_ID, encode } from '@bytelatent/bytes';
import type { ByteLatentTransformer } from '@bytelatent/blt';
import type { EntropyPatcher, PatchingMode } from '@bytelatent/entropy-patcher';
import { HttpError } from './http-error.js';
import { yieldToEventLoop } from './yield.js';

export interface GenerateParams {
  readonly prompt: string;
  readonly maxBytes: number;
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly seed: number;
  readonly stop: readonly string[];
}

/** One streamed piece of generated text (whole characters only). */
export interface GenerateChunk {
  readonly text: string;
  /** True when the chunk's byte starts a new patch (the latent transformer ran before it). */
  readonly patchStart: boolean;
}

export interface GenerateResult {
  readonly text: string;
  readonly bytes: number;
  /** Patches of the whole row (prompt and generated). */
  readonly patches: number;
  readonly finishReason: 'length' | 'stop' | 'eos' | 'context';
  readonly elapsedMs: number;
  readonly bytesPerSecond: number;
}

/** Runs a generation; `onChunk` receives text as it is decoded. Provided by the composed model. */
export type Generator = (params: GenerateParams, signal: AbortSignal, onChunk?: (chunk: GenerateChunk) => void) => Promise<GenerateResult>;

export interface PatchResponse {
  readonly bytes: number;
  readonly threshold: number | null;
  readonly mode: string;
  readonly patches: ReadonlyArray<{ start: number; end: number; text: string }>;
  /** Per input byte: the entropy (nats) of the model's prediction of that byte. */
  readonly entropies: number[];
  readonly meanPatchSize: number;
}

export interface ScoreResponse {
  readonly bytes: number;
  readonly bitsPerByte: number;
  /** Per input byte: −log2 p(byte | previous bytes). */
  readonly bits: number[];
  readonly patches: number;
}

const round = (x: number, digits = 4) => Number(x.toFixed(digits));

/** Where the models came from, for `/health` and the page. */
export interface ModelServiceInfo {
  readonly backend: string;
  readonly patcherModel: string;
  readonly bltModel: string | null;
  /**
   * The layout the BLT was read in: `consolidated`, `hub` or `transformers` (a folder, through
   * `loadPretrained`), or `safetensors` (one file with `blt_args` metadata). Default `safetensors`.
   */
  readonly bltLayout?: string;
}

export class ModelService {
  constructor(
    readonly patcher: EntropyPatcher,
    readonly blt: ByteLatentTransformer | undefined,
    private readonly generator: Generator | undefined,
    readonly info: ModelServiceInfo,
  ) {}

  describe(): Record<string, unknown> {
    return {
      backend: this.info.backend,
      models: {
        patcher: {
          source: this.info.patcherModel,
          layout: this.patcher.layout ?? 'safetensors',
          parameters: this.patcher.model.registry.count(),
          defaults: this.patcher.defaults,
          context: this.patcher.model.maxSeqLen,
        },
        blt: this.blt
          ? {
              source: this.info.bltModel,
              layout: this.info.bltLayout ?? 'safetensors',
              parameters: this.blt.parameterCount(),
              context: this.bltContext(),
            }
          : null,
      },
    };
  }

  /** Bytes the BLT reads at once (its local encoder's context), BOS included. */
  bltContext(): number {
    return this.blt!.args.encoder.maxSeqLen;
  }

  async patch(
    text: string,
    options: {
      threshold?: number | undefined;
      mode?: PatchingMode | undefined;
      maxPatchLength?: number | undefined;
      patchSize?: number | undefined;
    },
  ): Promise<PatchResponse> {
    const call = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    const r = await this.patcher.patch(text, call);
    const segments = r.segments();
    const n = r.tokens.length - 1;
    // entropies[t] is the uncertainty about token t+1, i.e. about byte t (BOS is token 0).
    const entropies = Array.from(r.entropies.subarray(0, n), (h) => round(h));
    return {
      bytes: n,
      threshold: r.options.threshold ?? null,
      mode: r.options.mode,
      patches: segments,
      entropies,
      meanPatchSize: segments.length ? round(n / segments.length, 3) : 0,
    };
  }

  /**
   * Bits per byte of `text` under the BLT, patched by the entropy patcher. Text longer than the
   * model's context is scored in consecutive windows, each read from BOS.
   */
  async score(text: string, signal: AbortSignal): Promise<ScoreResponse> {
    if (!this.blt) throw new HttpError(503, 'INTERNAL', 'no BLT is loaded');
    const bytes = encode(text, { bos: false, eos: false });
    if (bytes.length === 0) throw new HttpError(400, 'INVALID_REQUEST', '"text" must not be empty');
    const window = this.bltContext() - 1;
    const bits: number[] = [];
    let patches = 0;
    for (let start = 0; start < bytes.length; start += window) {
      if (signal.aborted) throw signal.reason;
      const chunk = bytes.subarray(start, start + window);
      const tokens = Int32Array.from([BOS_ID, ...chunk]);
      const targets = Int32Array.from([...chunk, EOS_ID]);
      const patched = await this.patcher.patch(
        Uint8Array.from(chunk, (t) => t - 4),
        { bos: true, includeNextToken: true },
      );
      patches += patched.patchLengths.length;
      const losses = this.blt.tokenLosses([tokens], [patched.patchLengths], [targets]);
      const values = (await losses.data()) as Float32Array;
      tf.dispose(losses);
      for (let i = 0; i < chunk.length; i++) bits.push(round(values[i]! / Math.LN2));
      await yieldToEventLoop(); // let other requests and disconnects through
    }
    const total = bits.reduce((s, b) => s + b, 0);
    return { bytes: bytes.length, bitsPerByte: round(total / bytes.length), bits, patches };
  }

  async generate(params: GenerateParams, signal: AbortSignal, onChunk?: (chunk: GenerateChunk) => void): Promise<GenerateResult> {
    if (!this.generator) throw new HttpError(503, 'INTERNAL', 'no BLT is loaded');
    return this.generator(params, signal, onChunk);
  }
}
