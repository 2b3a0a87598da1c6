import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = resolve(here, '../dist/cli.js');
const VERSION = (JSON.parse(readFileSync(resolve(here, '../package.json'), 'utf8')) as { version: string }).version;

function run(...args: string[]): { code: number | null; stdout: string; stderr: string; json: Record<string, unknown> | undefined } {
  const r = spawnSync(process.execPath, [CLI, ...args, '--backend', 'wasm'], {
    encoding: 'utf8',
    env: { ...process.env, INIT_CWD: process.cwd() },
  });
  // With --json, stdout is exactly one JSON document.
  return {
    code: r.status,
    stdout: r.stdout,
    stderr: r.stderr,
    json: args.includes('--json') && r.status === 0 ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined,
  };
}

describe('bytelatent-eval', () => {
  it('bpb: a table; with --json, one JSON document on stdout and the table on stderr', () => {
    expect(run('bpb', '--udhr', 'eng', '--max-bytes', '600').stdout).toMatch(/udhr:eng\s+600\s+600/);
    const r = run('bpb', '--udhr', 'eng', '--max-bytes', '1200', '--json');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/udhr:eng\s+1200\s+1200/);
    const [result] = r.json!['results'] as Array<{ bytes: number; bitsPerByte: number; inferenceFlopsPerByte: number }>;
    expect(result!.bytes).toBe(1200);
    expect(result!.bitsPerByte).toBeGreaterThan(1);
    expect(result!.bitsPerByte).toBeLessThan(4);
    expect(result!.inferenceFlopsPerByte).toBeGreaterThan(0);
  });

  it('bpb --progress: progress lines on stderr (bytes/s, ETA), stdout still one JSON document; --stride slides the window', () => {
    const r = run('bpb', '--udhr', 'eng', '--max-bytes', '4000', '--stride', '128', '--progress', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^udhr:eng: 4\.0 KB of 4\.0 KB, \d+ bytes\/s, [\d.]+ s$/m);
    expect(r.json).toMatchObject({ command: 'bpb', stride: 128, context: 256 });
    // Without --progress and with stderr not a terminal (a pipe here): no progress line.
    expect(run('bpb', '--udhr', 'eng', '--max-bytes', '600', '--json').stderr).not.toMatch(/bytes\/s,/);
    expect(run('bpb', '--udhr', 'eng', '--max-bytes', '600', '--stride', '2000').stderr).toMatch(
      /--stride 2000 exceeds the context of 256/,
    );
    const windows = run('bpb', '--udhr', 'eng', '--max-bytes', '600', '--window-bytes', '200', '--json');
    expect(windows.code, windows.stderr).toBe(0);
    expect(windows.json).toMatchObject({ command: 'bpb', windowBytes: 200, results: [{ bytes: 600, targets: 600 }] });
    expect(run('bpb', '--udhr', 'eng', '--window-bytes', '200', '--stride', '100').stderr).toMatch(
      /--window-bytes excludes --context and --stride/,
    );
    // The other long commands too: candidates for cute, passes over the bytes for noise.
    expect(run('cute', '--per-task', '2', '--shots', '1', '--progress', '--json').stderr).toMatch(
      /^cute: (\d+) of \1 candidates, [\d.]+ candidates\/s, [\d.]+ s$/m,
    );
    expect(run('noise', '--udhr', 'eng', '--max-bytes', '500', '--progress', '--json').stderr).toMatch(
      /^udhr:eng: 3\.0 KB of 3\.0 KB, \d+ bytes\/s, [\d.]+ s$/m,
    );
  });

  it('bpe and cute run end to end', () => {
    const dir = mkdtempSync(join(tmpdir(), 'evals-cli-'));
    const train = join(dir, 'train.txt');
    writeFileSync(train, 'the rights of all human beings are equal and the same for all of them. '.repeat(50));
    const bpe = run('bpe', '--train', train, '--merges', '40', '--udhr', 'eng', '--json', '--out', join(dir, 'bpe.json'));
    expect(bpe.code).toBe(0);
    const [b] = bpe.json!['results'] as Array<{ bytesPerToken: number; gpt2BytesPerToken: number }>;
    expect(b!.bytesPerToken).toBeGreaterThan(1.2);
    expect(b!.gpt2BytesPerToken).toBeGreaterThan(b!.bytesPerToken);
    const cute = run('cute', '--per-task', '2', '--shots', '1', '--json');
    expect(cute.code).toBe(0);
    expect((cute.json!['tasks'] as unknown[]).length).toBe(7);
  });

  it('--json on patches and flops: stdout is exactly one JSON document, the table goes to stderr', () => {
    for (const args of [
      ['patches', '--udhr', 'eng', '--max-bytes', '600'],
      ['flops', '--udhr', 'eng'],
    ]) {
      const r = run(...args, '--json');
      expect(r.code, r.stderr).toBe(0);
      // run() parsed the whole of stdout as one JSON value; it is also one line.
      expect(r.json!['command']).toBe(args[0]);
      expect(r.stdout.trimEnd()).not.toContain('\n');
      expect(r.stderr).toMatch(/-{4,}/);
    }
  });

  it('--version prints the name and version and exits 0, on every command; --help exits 0', () => {
    for (const args of [['--version'], ['bpb', '--version']]) {
      const r = run(...args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toBe(`bytelatent-eval ${VERSION}\n`);
      expect(r.stderr).toBe('');
    }
    const help = run('-h');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('usage: bytelatent-eval <command>');
  });

  it('usage errors exit 2 with one line on stderr naming the problem and pointing to --help', () => {
    for (const [args, message] of [
      [['bpb', '--bogus'], /Unknown option '--bogus'/],
      [['bogus'], /INVALID_ARGUMENT: unknown command "bogus": one of bpb, /],
      [[], /INVALID_ARGUMENT: give a command: one of bpb, /],
      [['bpb'], /--file PATH or --udhr/],
      [['bpb', '--udhr', 'eng', '--max-bytes', 'lots'], /--max-bytes must be an integer >= 1, got "lots"/],
      [['bpb', '--udhr', 'eng', '--model', 'pretrained:x'], /--model pretrained:x: no shipped BLT named "x" \(pretrained:demo\)/],
      [['patches', '--udhr', 'eng', '--mode', 'nope'], /--mode must be one of entropy, .*got "nope"/],
    ] as const) {
      const r = run(...args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/^bytelatent-eval: [^\n]+ \(see bytelatent-eval --help\)\n$/);
      expect(r.stdout).toBe('');
    }
  });

  it('fails with a typed message and exit code', () => {
    const unknown = run('bogus');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/INVALID_ARGUMENT: unknown command/);
    expect(run('bpb').stderr).toMatch(/--file PATH or --udhr/);
    const missing = run('bpb', '--udhr', 'eng', '--model', 'no/such/model.safetensors');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/DATA_UNAVAILABLE/);
    expect(run('bpb', '--udhr', 'eng', '--max-bytes', 'lots').code).toBe(2);
  });
});
