import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HELD_OUT_BOOKS, KJV_CAP_BYTES, normaliseText, prepareCorpus } from './corpus.js';

describe('normaliseText', () => {
  it('keeps valid UTF-8, reads anything else as Latin-1, makes line ends LF, drops a BOM', () => {
    expect(normaliseText(new TextEncoder().encode('\ufeffcafé\r\nnext\rlast'))).toBe('café\nnext\nlast');
    expect(normaliseText(new Uint8Array([0x63, 0x61, 0x66, 0xe9]))).toBe('café');
  });
});

describe('prepareCorpus', () => {
  it('writes the books normalised, holds out whole books, caps the KJV, and is idempotent', async () => {
    const out = mkdtempSync(join(tmpdir(), 'bytelatent-corpus-'));
    const m = await prepareCorpus({ outDir: out, sources: ['gutenberg'] });
    expect(m.files).toHaveLength(18);
    for (const book of HELD_OUT_BOOKS) {
      expect(m.files.find((f) => f.path.endsWith(`${book}.txt`))!.split).toBe('heldout');
      expect(existsSync(join(out, 'heldout', 'books', `${book}.txt`))).toBe(true);
    }
    const kjv = m.files.find((f) => f.path.endsWith('bible-kjv.txt'))!;
    expect(kjv.bytes).toBeLessThanOrEqual(KJV_CAP_BYTES);
    expect(kjv.bytes).toBeGreaterThan(KJV_CAP_BYTES * 0.99);
    for (const f of m.files) {
      const text = readFileSync(join(out, f.path));
      expect(text.includes(13)).toBe(false); // no CR
      expect(() => new TextDecoder('utf-8', { fatal: true }).decode(text)).not.toThrow();
    }
    // The Latin-1 book (Julius Caesar) is now UTF-8: no replacement characters.
    expect(readFileSync(join(out, 'train', 'books', 'shakespeare-caesar.txt'), 'utf8')).not.toContain('\ufffd');
    const again = await prepareCorpus({ outDir: out, sources: ['gutenberg'] });
    expect(again).toEqual(m);
  });
});
