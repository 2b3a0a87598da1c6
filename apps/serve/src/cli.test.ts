// The command-line contract shared by every bytelatent CLI: `--version` prints `<bin> <version>`,
// usage errors exit 2 with one line on stderr that points to --help (checked before any model loads),
// other failures exit 1. Runs the built CLI (dist/cli.js); serving itself is tested in
// pretrained-folder.test.ts and server.test.ts.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = resolve(here, '../dist/cli.js');
const VERSION = (JSON.parse(readFileSync(resolve(here, '../package.json'), 'utf8')) as { version: string }).version;

function cli(args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  // No $PORT from the caller's environment: the tests say which port, if any.
  const { PORT: _port, ...rest } = process.env;
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...rest, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('bytelatent-serve CLI contract', () => {
  it('--version prints the name and version and exits 0; --help exits 0', () => {
    const version = cli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout).toBe(`bytelatent-serve ${VERSION}\n`);
    expect(version.stderr).toBe('');
    const help = cli(['-h']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('usage: bytelatent-serve [options]');
    expect(help.stdout).toContain('--version');
  });

  it('usage errors exit 2 with one line on stderr naming the problem and pointing to --help', () => {
    for (const [args, message, env] of [
      [['--bogus'], /Unknown option '--bogus'/, {}],
      [['extra'], /Unexpected argument 'extra'/, {}],
      [['--port', 'abc'], /--port must be an integer >= 0, got "abc"/, {}],
      [[], /--port \(from \$PORT\) must be an integer >= 0, got "x"/, { PORT: 'x' }],
      [['--max-queue=-1'], /--max-queue must be an integer >= 0, got "-1"/, {}],
      // parseArgs says this one over three lines: flattened into one.
      [['--max-queue', '-1'], /Option '--max-queue' argument is ambiguous\. Did you forget/, {}],
      [['--timeout-ms', ''], /--timeout-ms must be an integer >= 1, got ""/, {}],
      [['--backend', 'tpu'], /--backend must be one of auto, wasm, cpu, webgpu, got "tpu"/, {}],
      [['--model-id', 'my model'], /--model-id must be 1 to 128 letters, digits, "_", "-", "\." or ":", got "my model"/, {}],
    ] as const) {
      const r = cli([...args], env);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/^bytelatent-serve: [^\n]+ \(see bytelatent-serve --help\)\n$/);
      expect(r.stdout).toBe('');
    }
  });

  it('a model file that cannot be read exits 1', () => {
    const r = cli(['--blt', resolve(here, 'no-such-blt.safetensors'), '--port', '0', '--backend', 'cpu']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^bytelatent-serve: .*no-such-blt\.safetensors/m);
    expect(r.stdout).toBe('');
  });
});
