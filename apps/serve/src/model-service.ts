/** What the API computes, independent of HTTP: patching, scoring and generation with the loaded models. */
import { BOS_ID, encode } from '@bytelatent/bytes';
import { type BltPatching, type ByteLatentTransformer, bltPatchingFromSettings, rowLogProbs } from '@bytelatent/blt';
import type { EntropyPatcher, PatcherDefaults, PatchingMode } from '@bytelatent/entropy-patcher';
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
  /** The combined rule's rise threshold (null for the other rules). */
  readonly thresholdAdd: number | null;
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
  /**
   * @param patcher - the entropy patcher (`/v1/patch`)
   * @param blt - the BLT (`/v1/score`, generation), if any
   * @param generator - generation over the BLT
   * @param info - what `/health` reports
   * @param patching - how the BLT patches what it scores (default: the patcher's defaults; a loaded
   *   model's own, `bltPatchingFromSettings`, is what the loaders pass)
   */
  constructor(
    readonly patcher: EntropyPatcher,
    readonly blt: ByteLatentTransformer | undefined,
    private readonly generator: Generator | undefined,
    readonly info: ModelServiceInfo,
    readonly patching: BltPatching = bltPatchingFromSettings(patcher.defaults, patcher),
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
          // What /v1/patch, /v1/score and /v1/generate apply: the BLT's own settings over those defaults.
          patching: this.patchingSettings(),
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

  /** The settings of {@link patching} (without its patcher): what `/v1/patch` applies by default. */
  patchingSettings(): PatcherDefaults {
    const { patcher: _patcher, ...settings } = this.patching;
    return settings;
  }

  /** Bytes the BLT reads at once (its local encoder's context), BOS included. */
  bltContext(): number {
    return this.blt!.args.encoder.maxSeqLen;
  }

  async patch(
    text: string,
    options: {
      threshold?: number | undefined;
      thresholdAdd?: number | undefined;
      mode?: PatchingMode | undefined;
      maxPatchLength?: number | undefined;
      patchSize?: number | undefined;
    },
  ): Promise<PatchResponse> {
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    // A request that names no rule patches as the BLT does (its files' settings), its other fields
    // (a threshold) over those; one that names a rule gets that rule with the patcher's defaults.
    const call = given['mode'] === undefined ? { ...this.patchingSettings(), ...given } : given;
    const r = await this.patcher.patch(text, call);
    const segments = r.segments();
    const n = r.tokens.length - 1;
    // entropies[t] is the uncertainty about token t+1, i.e. about byte t (BOS is token 0).
    const entropies = Array.from(r.entropies.subarray(0, n), (h) => round(h));
    return {
      bytes: n,
      threshold: r.options.threshold ?? null,
      thresholdAdd: r.options.mode === 'combined' ? (r.options.thresholdAdd ?? null) : null,
      mode: r.options.mode,
      patches: segments,
      entropies,
      meanPatchSize: segments.length ? round(n / segments.length, 3) : 0,
    };
  }

  /**
   * Bits per byte of `text` under the BLT, each byte scored as `@bytelatent/evals` scores it with
   * `windowBytes` equal to {@link scoreWindow}: the text is cut into windows of that many bytes,
   * each read from BOS and patched by the BLT's own patching (rule and settings from its files,
   * `rowLogProbs` of `@bytelatent/blt`, the one BLT scorer).
   */
  async score(text: string, signal: AbortSignal): Promise<ScoreResponse> {
    if (!this.blt) throw new HttpError(503, 'INTERNAL', 'no BLT is loaded');
    const bytes = encode(text, { bos: false, eos: false });
    if (bytes.length === 0) throw new HttpError(400, 'INVALID_REQUEST', '"text" must not be empty');
    const window = this.scoreWindow();
    const bits: number[] = [];
    let total = 0;
    let patches = 0;
    for (let start = 0; start < bytes.length; start += window) {
      if (signal.aborted) throw signal.reason;
      const chunk = bytes.subarray(start, start + window);
      const ids = Int32Array.from([BOS_ID, ...chunk]);
      const scored = await rowLogProbs(this.blt, this.patching, [{ tokens: ids.subarray(0, chunk.length), targets: ids.subarray(1) }]);
      patches += scored.patchLengths[0]!.length;
      for (const lp of scored.logProbs[0]!) {
        total -= lp;
        bits.push(round(-lp / Math.LN2));
      }
      await yieldToEventLoop(); // let other requests and disconnects through
    }
    return { bytes: bytes.length, bitsPerByte: round(total / Math.LN2 / bytes.length), bits, patches };
  }

  /** Bytes per scored window: the BLT's byte context (its local encoder's), BOS taking the first position. */
  scoreWindow(): number {
    return this.bltContext();
  }

  async generate(params: GenerateParams, signal: AbortSignal, onChunk?: (chunk: GenerateChunk) => void): Promise<GenerateResult> {
    if (!this.generator) throw new HttpError(503, 'INTERNAL', 'no BLT is loaded');
    return this.generator(params, signal, onChunk);
  }
}
