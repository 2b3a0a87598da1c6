import { fileURLToPath } from 'node:url';

/** The web page, bundled by `npm run build` (scripts/build-web.mjs) from `web/`. */
export const WEB_DIR = fileURLToPath(new URL('../dist/web', import.meta.url));
