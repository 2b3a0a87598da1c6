import { fileURLToPath } from 'node:url';

/** The web page, bundled by `npm run build` (scripts/build-web.mjs) from `web/`. */
export const WEB_DIR = fileURLToPath(new URL('../dist/web', import.meta.url));
/** The models shipped with the package. */
export const MODELS_DIR = fileURLToPath(new URL('../models', import.meta.url));
