import { describe, expect, it } from 'vitest';
import { gpt2BytesPerToken, gpt2TokenCount } from './gpt2.js';
import { UDHR_DEFAULT_CODES, loadUdhr, udhrHtmlToText } from './udhr.js';
import { expectCode } from './test-helpers.js';

describe('UDHR texts', () => {
  it('turns the HTML into lines of plain text', () => {
    expect(udhrHtmlToText('<html><body><h1>A &amp; B</h1>\n<p>x  <b>y</b>&#233;&#x4e2d;</p></body></html>')).toBe('A & B\nx yé中\n');
    const eng = loadUdhr('eng');
    expect(eng).toContain('All human beings are born free and equal in dignity and rights.');
    expect(eng).not.toMatch(/<|&amp;/);
  });

  it('has every default script', () => {
    for (const code of UDHR_DEFAULT_CODES) expect(new TextEncoder().encode(loadUdhr(code)).length).toBeGreaterThan(5000);
    expect(loadUdhr('rus')).toMatch(/[а-я]/);
    expect(loadUdhr('cmn_hans')).toMatch(/人/);
  });

  it('rejects unknown and malformed codes', async () => {
    await expectCode(() => loadUdhr('zzz_nope'), 'DATA_UNAVAILABLE');
    await expectCode(() => loadUdhr('../x'), 'INVALID_ARGUMENT');
  });
});

describe('GPT-2 bytes per token', () => {
  it('counts r50k tokens, long texts in chunks equal to one shot', async () => {
    expect(await gpt2TokenCount('Hello world')).toBe(2);
    const { encode } = await import('gpt-tokenizer/encoding/r50k_base');
    const text = loadUdhr('eng').repeat(3);
    expect(await gpt2TokenCount(text)).toBe(encode(text).length);
    const bpt = await gpt2BytesPerToken(text);
    expect(bpt).toBeGreaterThan(3.5);
    expect(bpt).toBeLessThan(6);
    await expectCode(() => gpt2BytesPerToken(''), 'EMPTY_INPUT');
  });
});
