/**
 * Bytes per token of GPT-2's vocabulary (r50k_base, 50,257 tokens), from the vocabulary shipped in
 * the npm package `gpt-tokenizer`: the reference point for our small BPE.
 */
import { EvalError } from './errors.js';

/** Only the r50k encoding is imported (lazily): the full package would load every vocabulary. */
let encoder: Promise<(text: string) => number[]> | undefined;

async function r50k(): Promise<(text: string) => number[]> {
  encoder ??= import('gpt-tokenizer/encoding/r50k_base').then(
    (m) => m.encode as (text: string) => number[],
    (e: Error) => {
      encoder = undefined;
      throw new EvalError('DATA_UNAVAILABLE', `gpt-tokenizer is not installed: ${e.message}`);
    },
  );
  return encoder;
}

/**
 * GPT-2 tokens in a text. Long texts are cut before a letter that follows a newline, where GPT-2's
 * pre-tokenizer always cuts anyway, so the count equals the one-shot count.
 *
 * @param text - any text
 * @returns the number of tokens
 */
export async function gpt2TokenCount(text: string): Promise<number> {
  const encode = await r50k();
  let count = 0;
  let start = 0;
  const CHUNK = 16_384;
  while (start < text.length) {
    let end = text.length;
    if (end - start > CHUNK) {
      const re = /\n[A-Za-z]/g;
      re.lastIndex = start + CHUNK;
      const m = re.exec(text);
      end = m ? m.index + 1 : text.length;
    }
    count += encode(text.slice(start, end)).length;
    start = end;
  }
  return count;
}

/**
 * Mean UTF-8 bytes per GPT-2 token of a text.
 *
 * @param text - a non-empty text
 * @returns bytes / tokens
 * @throws {EvalError} `EMPTY_INPUT` for an empty text
 */
export async function gpt2BytesPerToken(text: string): Promise<number> {
  if (text.length === 0) throw new EvalError('EMPTY_INPUT', 'no text to tokenize');
  return new TextEncoder().encode(text).length / (await gpt2TokenCount(text));
}
