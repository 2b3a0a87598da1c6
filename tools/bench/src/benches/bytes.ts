import { StreamingDecoder, decode, decodeToBytes, encode } from '@bytelatent/bytes';
import { medianSeconds, report, syntheticText } from '../measure.js';

// Tokenizer throughput against the platform's TextEncoder/TextDecoder measured in the same run.
const bytes = syntheticText(8 << 20);
const text = new TextDecoder().decode(bytes);
const ids = encode(bytes);

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();
const baselineEncode = medianSeconds(() => textEncoder.encode(text), 5);
const baselineDecode = medianSeconds(() => textDecoder.decode(bytes), 5);
const ours = medianSeconds(() => encode(text), 5);
const oursDecode = medianSeconds(() => decode(ids), 5);
const oursBytes = medianSeconds(() => decodeToBytes(ids), 5);
const streaming = medianSeconds(() => {
  const d = new StreamingDecoder();
  for (let i = 0; i < 1 << 18; i += 16) d.push(ids.subarray(i, i + 16));
  d.flush();
}, 3);

const mb = (n: number, s: number) => n / 1e6 / s;
report({
  bench: 'bytes',
  bytes: bytes.length,
  encode_mb_s: mb(bytes.length, ours),
  textencoder_mb_s: mb(bytes.length, baselineEncode),
  encode_vs_textencoder: baselineEncode / ours,
  decode_mb_s: mb(bytes.length, oursDecode),
  textdecoder_mb_s: mb(bytes.length, baselineDecode),
  decode_vs_textdecoder: baselineDecode / oursDecode,
  decode_to_bytes_mb_s: mb(bytes.length, oursBytes),
  streaming_16_id_chunks_mb_s: mb(1 << 18, streaming),
});
