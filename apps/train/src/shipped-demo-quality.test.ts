// The demo BLT shipped in @bytelatent/blt must model English it never saw better than the
// general-purpose compressors: on the corpus's held-out Alice, fewer bits per byte than `bzip2 -9`
// and `xz -9e` spend on the same file (the figures of packages/blt/README.md, "The demo BLT").
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pretrainedBltUrl } from '@bytelatent/blt';
import { evaluateBitsPerByte, loadPretrainedModel } from '@bytelatent/evals';
import { initBackend } from '@bytelatent/nn';
import { describe, expect, it } from 'vitest';
import { prepareCorpus } from './corpus.js';

/** Bits per byte of a compressor's output for the file, or undefined when it is not installed (CI installs both). */
function compressedBitsPerByte(command: string, args: string[], file: string): number | undefined {
  try {
    return (execFileSync(command, [...args, file], { maxBuffer: 1 << 26 }).length * 8) / readFileSync(file).length;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !process.env['CI']) return undefined;
    throw e;
  }
}

describe('the shipped demo BLT', () => {
  it('scores held-out English prose below bzip2 -9 and xz -9e', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'demo-quality-'));
    await prepareCorpus({ outDir: dir, sources: ['gutenberg'] });
    const alice = join(dir, 'heldout', 'books', 'carroll-alice.txt');
    await initBackend({ backend: 'wasm' });
    const loaded = await loadPretrainedModel(fileURLToPath(pretrainedBltUrl('demo')).replace(/\/$/, ''));
    let model: number;
    try {
      model = (await evaluateBitsPerByte(loaded.model, readFileSync(alice))).bitsPerByte;
    } finally {
      loaded.dispose();
    }
    const bzip2 = compressedBitsPerByte('bzip2', ['-9', '-c'], alice);
    const xz = compressedBitsPerByte('xz', ['-9e', '-c'], alice);
    console.log(`held-out Alice, bits per byte: demo BLT ${model.toFixed(3)}, bzip2 -9 ${bzip2?.toFixed(3)}, xz -9e ${xz?.toFixed(3)}`);
    expect(model).toBeLessThan(2.3);
    if (bzip2 !== undefined) expect(model).toBeLessThan(bzip2);
    if (xz !== undefined) expect(model).toBeLessThan(xz);
  }, 600_000);
});
