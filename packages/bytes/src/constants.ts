/**
 * Special token ids of the reference BLT tokenizer (architecture §1.1). Byte `b` has id `b + BYTE_OFFSET`.
 */

/** Beginning of entity/patch; also the padding id of packed rows and the left padding of hash windows. */
export const BOE_ID = 0;
/** Beginning of sequence. */
export const BOS_ID = 1;
/** End of sequence; documents are split after it by the block-causal masks. */
export const EOS_ID = 2;
/** BPE delimiter, used only by the optional BPE-delimited variant of the reference tokenizer. */
export const BPE_ID = 3;
/** Fill value of the reference generation buffer; never embedded and dropped by `decode`. */
export const PAD_ID = -1;
/** Offset added to every byte value: id = byte + 4. */
export const BYTE_OFFSET = 4;
/** Number of distinct byte values. */
export const BYTE_UNITS = 256;
/** Vocabulary size of every BLT model and entropy model: 256 bytes + 4 special ids. */
export const VOCAB_SIZE = BYTE_UNITS + BYTE_OFFSET;
