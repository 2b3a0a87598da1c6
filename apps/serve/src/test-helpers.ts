// Shared by the browser tests (not part of the build: tsconfig.json excludes this file).
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** Debian's Chromium, or `CHROMIUM_PATH`; playwright never downloads a browser here. */
export const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

// Flags that work on Debian's Chromium here (shared/environment.md, gotcha 7).
const CHROMIUM_FLAGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
];

/**
 * Whether the browser tests can run. CI installs Chromium and builds the page: there, a missing
 * browser (or page) is a failure, not a skip.
 */
export function browserAvailable(...requiredFiles: string[]): boolean {
  const missing = [CHROMIUM, ...requiredFiles].filter((f) => !existsSync(f));
  if (missing.length > 0 && process.env['CI']) throw new Error(`the browser tests need ${missing.join(', ')}`);
  return missing.length === 0;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS, headless: true });
}
