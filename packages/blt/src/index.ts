export { BltError, type BltErrorCode } from '@bytelatent/local-encoder';
export { resolveBltArgs, type BltArgs, type ResolvedBltArgs } from './blt-args.js';
export { BLT_ARGS_METADATA_KEY, ByteLatentTransformer, type BltActivationTap, type PreparedBatch } from './blt-model.js';
