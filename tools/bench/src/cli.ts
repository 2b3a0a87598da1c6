#!/usr/bin/env node
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// Each bench runs in its own process (no JIT or GC state shared) and prints one JSON line.
const benchDir = join(dirname(fileURLToPath(import.meta.url)), 'benches');
const available = readdirSync(benchDir)
  .filter((f) => f.endsWith('.js'))
  .map((f) => f.slice(0, -3))
  .sort();
const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !available.includes(w));
if (unknown.length > 0) {
  console.error(`bench: unknown bench(es) ${unknown.join(', ')}; available: ${available.join(', ')}`);
  process.exit(2);
}
const results: Array<Record<string, unknown>> = [];
let failures = 0;
for (const name of wanted.length > 0 ? wanted : available) {
  try {
    const out = execFileSync(process.execPath, [join(benchDir, `${name}.js`)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const line = out.trim().split('\n').pop() ?? '';
    console.log(line);
    results.push(JSON.parse(line) as Record<string, unknown>);
  } catch (e) {
    failures++;
    console.error(`bench ${name} failed: ${(e as Error).message}`);
  }
}
console.log('\nsummary');
for (const r of results) {
  const figures = Object.entries(r)
    .filter(([k, v]) => k !== 'bench' && typeof v === 'number')
    .map(([k, v]) => `${k}=${String(v)}`)
    .join('  ');
  console.log(`  ${String(r['bench']).padEnd(12)} ${figures}`);
}
process.exitCode = failures > 0 ? 1 : 0;
