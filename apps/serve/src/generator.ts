/** Generation for the API: the composed model's cached generator, streamed as decoded text chunks. */
import { streamGenerate, type BltPatching, type ByteLatentTransformer, type GenerateResult as BltGenerateResult } from '@bytelatent/blt';
import type { EntropyPatcher } from '@bytelatent/entropy-patcher';
import type { Generator } from './model-service.js';
import { yieldToEventLoop } from './yield.js';

/**
 * A {@link Generator} over `blt`, patching as the model was trained: its own patching (the object
 * `/v1/score` uses, read once from its files) or an entropy patcher with its defaults. Chunks are
 * whole characters (never half a UTF-8 sequence, never a piece of a stop string).
 */
export function createGenerator(blt: ByteLatentTransformer, patcher: EntropyPatcher | BltPatching): Generator {
  return async (params, signal, onChunk) => {
    let result: BltGenerateResult | undefined;
    const events = streamGenerate(blt, params.prompt, {
      patcher,
      maxBytes: params.maxBytes,
      temperature: params.temperature,
      ...(params.topK > 0 ? { topK: params.topK } : {}),
      topP: params.topP,
      seed: params.seed,
      stop: [...params.stop],
      signal,
    });
    for await (const ev of events) {
      if (ev.type === 'byte') {
        if (ev.text) onChunk?.({ text: ev.text, patchStart: ev.patchStart });
      } else {
        if (ev.text) onChunk?.({ text: ev.text, patchStart: false });
        result = ev.result;
      }
      // Let the event loop deliver writes and notice disconnects between bytes.
      await yieldToEventLoop();
    }
    const r = result!;
    return {
      text: r.text,
      bytes: r.bytes.length,
      patches: r.stats.patches,
      finishReason: r.finishReason,
      elapsedMs: Math.round(r.stats.elapsedMs),
      bytesPerSecond: Math.round(r.stats.bytesPerSecond * 10) / 10,
    };
  };
}
