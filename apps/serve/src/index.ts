export { createApiServer, type ServerOptions } from './server.js';
export {
  ModelService,
  type GenerateChunk,
  type GenerateParams,
  type GenerateResult,
  type Generator,
  type PatchResponse,
  type ScoreResponse,
} from './model-service.js';
export { createGenerator } from './generator.js';
export { loadServeModels, DEFAULT_BLT_FOLDER, type LoadedModels, type ServeModelOptions } from './load-models.js';
export { HttpError, type ApiErrorCode } from './http-error.js';
export { ConcurrencyLimiter } from './limiter.js';
