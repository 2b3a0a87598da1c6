// The command-line contract shared by every bytelatent CLI: `--version` prints `<bin> <version>`,
// usage errors exit 2 with one line on stderr that points to --help, other failures exit 1, `--json`
// leaves exactly one JSON document on stdout. Plus this CLI's own: text piped to stdin is patched.
// Runs the built CLI (dist/cli.js) with the pretrained model shipped in this package.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = resolve(here, '../dist/cli.js');
const VERSION = (JSON.parse(readFileSync(resolve(here, '../package.json'), 'utf8')) as { version: string }).version;

/** Runs the CLI; `input` is piped to its stdin (closed at once, empty, when not given). */
function cli(args: string[], input?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    input: input ?? '',
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, NO_COLOR: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface JsonResult {
  patchLengths: number[];
  segments: Array<{ start: number; end: number; text: string }>;
}

/** stdout of a `--json` run: exactly one JSON document (JSON.parse rejects anything around it), on one line. */
function onlyJson(stdout: string): JsonResult {
  expect(stdout.endsWith('\n')).toBe(true);
  expect(stdout.trimEnd()).not.toContain('\n');
  return JSON.parse(stdout) as JsonResult;
}

describe('entropy-patcher CLI contract', () => {
  it('--version prints the name and version and exits 0; --help exits 0', () => {
    const version = cli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout).toBe(`entropy-patcher ${VERSION}\n`);
    expect(version.stderr).toBe('');
    const help = cli(['-h']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('usage: entropy-patcher');
    expect(help.stdout).toContain('--version');
  });

  it('--mode entropy-top-k: the floor(N / patch size) - 2 most uncertain positions start patches', () => {
    const text = 'The quick brown fox jumps over the lazy dog.';
    const r = cli(['--mode', 'entropy-top-k', '--patch-size', '4', '--json', text]);
    expect(r.code, r.stderr).toBe(0);
    // N = 45 tokens (BOS + 44 bytes): 11 - 2 = 9 chosen starts + 0 and 1 = 11 patches.
    expect(onlyJson(r.stdout).patchLengths).toHaveLength(11);
  });

  it('usage errors exit 2 with one line on stderr naming the problem and pointing to --help', () => {
    for (const [args, message] of [
      [['--bogus', 'x'], /Unknown option '--bogus'/],
      [['--threshold', 'abc', 'x'], /--threshold must be a number, got "abc"/],
      // parseArgs says this one over three lines: flattened into one.
      [['--threshold', '-1', 'x'], /Option '--threshold' argument is ambiguous\. Did you forget/],
      [['--mode', 'nope', 'x'], /--mode must be one of entropy, .*got "nope"/],
      [['--backend', 'tpu', 'x'], /--backend must be one of auto, .*got "tpu"/],
      [['--file', CLI, 'x'], /either text or --file, not both/],
      [[], /no text: give it as an argument, with --file PATH, or on stdin/],
      // Found by the patching rules once the model is loaded: still a flag's fault.
      [['--mode', 'static', 'x'], /patchSize/],
    ] as const) {
      const r = cli([...args]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/^entropy-patcher: [^\n]+ \(see entropy-patcher --help\)\n$/);
      expect(r.stdout).toBe('');
    }
  });

  it('a model file that cannot be read exits 1', () => {
    const r = cli(['--model', resolve(here, 'no-such-model.safetensors'), 'x']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^entropy-patcher: INVALID_CHECKPOINT: /);
    expect(r.stdout).toBe('');
  });

  it('--json prints exactly one JSON document on stdout', () => {
    const r = cli(['--json', 'Hello there, world.']);
    expect(r.code, r.stderr).toBe(0);
    const json = onlyJson(r.stdout);
    expect(json.segments.map((s) => s.text).join('')).toBe('Hello there, world.');
    expect(json.patchLengths.length).toBeGreaterThan(1);
  });

  it('reads the text from stdin when none is given: the same patches as the argument, bytes exactly as piped', () => {
    const fromArgument = onlyJson(cli(['--json', 'Hello there, world.']).stdout);
    const piped = cli(['--json'], 'Hello there, world.');
    expect(piped.code, piped.stderr).toBe(0);
    expect(onlyJson(piped.stdout)).toEqual(fromArgument);
    // `echo text | entropy-patcher`: the newline is one of the bytes read, as with --file.
    const echoed = onlyJson(cli(['--json'], 'Hello\n').stdout);
    expect(echoed.segments.map((s) => s.text).join('')).toBe('Hello\n');
    // And the picture, as for an argument.
    const picture = cli([], 'Hello world');
    expect(picture.code, picture.stderr).toBe(0);
    expect(picture.stdout).toMatch(/\d+ patches over 11 bytes/);
    // An argument wins over stdin.
    expect(onlyJson(cli(['--json', 'Hello there, world.'], 'ignored').stdout)).toEqual(fromArgument);
  });
});
