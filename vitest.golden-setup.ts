// Tests that compare with the reference's golden vectors skip when the vectors are absent (a
// package checked out alone). In CI they must never skip silently: with CI=true, a missing golden
// folder fails the run before any test.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export default function requireGoldenInCi(): void {
  if (process.env['CI'] !== 'true') return;
  const folder = process.env['BYTELATENT_GOLDEN_DIR'] ?? fileURLToPath(new URL('../shared/golden/tiny/', import.meta.url));
  if (!existsSync(join(folder, 'index.json'))) {
    throw new Error(
      `CI=true but the golden vectors are missing at ${folder} (no index.json): the tests that need them would skip; provide ../shared/golden or set BYTELATENT_GOLDEN_DIR`,
    );
  }
}
