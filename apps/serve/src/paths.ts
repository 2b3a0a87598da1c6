import { fileURLToPath } from 'node:url';

/** The web page's static files (shipped with the package). */
export const PUBLIC_DIR = fileURLToPath(new URL('../public', import.meta.url));
/** The models shipped with the package. */
export const MODELS_DIR = fileURLToPath(new URL('../models', import.meta.url));
