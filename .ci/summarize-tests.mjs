// Sums the vitest JSON reports of every workspace with a test script into one plain closing line
// for CI: "tests: N passed, N failed, N skipped". Exits non-zero on a failure, a missing report,
// or no test at all.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'));
const workspaceDirs = readJson(join(root, 'package.json')).workspaces.flatMap((pattern) => {
  const base = join(root, pattern.replace(/\/\*$/, ''));
  return readdirSync(base).map((name) => join(base, name));
});

let passed = 0;
let failed = 0;
let skipped = 0;
let missing = 0;
for (const dir of workspaceDirs) {
  const pkg = join(dir, 'package.json');
  if (!existsSync(pkg) || !readJson(pkg).scripts?.test) continue;
  const reportPath = join(dir, '.vitest-report.json');
  if (!existsSync(reportPath)) {
    console.error(`no test report in ${dir}`);
    missing++;
    continue;
  }
  const report = readJson(reportPath);
  passed += report.numPassedTests;
  failed += report.numFailedTests;
  skipped += report.numPendingTests + (report.numTodoTests ?? 0);
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exitCode = failed > 0 || missing > 0 || passed === 0 ? 1 : 0;
