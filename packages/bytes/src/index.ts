export { BOE_ID, BOS_ID, BPE_ID, BYTE_OFFSET, BYTE_UNITS, EOS_ID, PAD_ID, VOCAB_SIZE } from './constants.js';
export { BytesError, CodedError, type BytesErrorCode } from './errors.js';
export { packDocuments, type PackOptions, type PackedRow } from './packing.js';
export { StreamingDecoder, type StreamingDecoderOptions } from './streaming-decoder.js';
export { decode, decodeToBytes, encode, type DecodeBytesOptions, type DecodeOptions, type EncodeOptions } from './tokenizer.js';
export { decodeUtf8, encodeUtf8, scanUtf8, type InvalidUtf8Policy, type LoneSurrogatePolicy, type Utf8Scan } from './utf8.js';
export { SentencePieceBpe, encodeWithBpeDelimiters, type BpeDelimiterOptions } from './sentencepiece.js';
