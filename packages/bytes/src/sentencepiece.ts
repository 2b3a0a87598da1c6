/**
 * A SentencePiece BPE tokenizer read from its `.model` file (a `ModelProto` protobuf), for the
 * reference's BPE-delimiter tokenizer: `BltTokenizer(bpe_delim=True)` segments text with a
 * SentencePiece BPE model (Llama 2's `tokenizer.model` in the reference's defaults) and puts a
 * delimiter before every piece's bytes (bytelatent/tokenizers/blt_tokenizer.py,
 * `text2bytes_bpe_delims`), which the `'bpe'` patching rule cuts at.
 *
 * Encoding follows SentencePiece's BPE model (src/bpe_model.cc, `Model::SampleEncode` without
 * dropout): the normalized text is split into characters, then the adjacent pair whose concatenation
 * is a piece of highest score is merged, the leftmost first among equal scores, until no pair is a
 * piece; pieces missing from the vocabulary become their UTF-8 bytes (`<0xXX>` pieces) with byte
 * fallback, else one unknown id per run. Normalization: the identity rule (Llama's) with the
 * model's `add_dummy_prefix`, `remove_extra_whitespaces` and `escape_whitespaces` (src/normalizer.cc,
 * `Normalizer::Normalize`); a model with another normalization rule, user-defined symbols or another
 * model type is refused rather than encoded differently.
 */
import { BPE_ID, BYTE_OFFSET, BOS_ID, EOS_ID } from './constants.js';
import { BytesError } from './errors.js';
import { encodeUtf8 } from './utf8.js';

/** The kinds of a SentencePiece piece (`ModelProto.SentencePiece.Type`). */
const PieceType = { Normal: 1, Unknown: 2, Control: 3, UserDefined: 4, Unused: 5, Byte: 6 } as const;
type PieceType = (typeof PieceType)[keyof typeof PieceType];

const SPACE_SYMBOL = '\u2581';

function invalid(message: string): BytesError {
  return new BytesError('INVALID_ARGUMENT', `SentencePiece model: ${message}`);
}

/** A minimal protobuf reader: varints, 32-bit floats and length-delimited fields. */
class ProtoReader {
  private at = 0;
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get done(): boolean {
    return this.at >= this.bytes.length;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.bytes.length) throw invalid('truncated varint');
      const b = this.bytes[this.at++]!;
      value += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return value;
      scale *= 128;
    }
    throw invalid('varint longer than 10 bytes');
  }

  float(): number {
    if (this.at + 4 > this.bytes.length) throw invalid('truncated float');
    const v = this.view.getFloat32(this.at, true);
    this.at += 4;
    return v;
  }

  bytesField(): Uint8Array {
    const n = this.varint();
    if (this.at + n > this.bytes.length) throw invalid('truncated field');
    const out = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }

  /** Skips a field of wire type `wire`. */
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.at += 8;
    else if (wire === 2) this.bytesField();
    else if (wire === 5) this.at += 4;
    else throw invalid(`unsupported wire type ${wire}`);
    if (this.at > this.bytes.length) throw invalid('truncated field');
  }

  /** Calls `onField(field, wire)` for every field; the callback reads the value or returns false to skip it. */
  fields(onField: (field: number, wire: number) => boolean): void {
    while (!this.done) {
      const key = this.varint();
      const field = Math.floor(key / 8);
      const wire = key & 7;
      if (!onField(field, wire)) this.skip(wire);
    }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

interface Piece {
  readonly piece: string;
  readonly score: number;
  readonly type: PieceType;
}

interface Settings {
  modelType: number;
  byteFallback: boolean;
  unkId: number;
  normalizer: string;
  charsmap: number;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
  suffixWhitespace: boolean;
}

/** A pair of adjacent symbols whose concatenation is a piece: merge candidates, best first. */
interface Pair {
  readonly left: number;
  readonly right: number;
  readonly score: number;
  readonly length: number;
}

/** Higher score first; on equal scores the leftmost pair (bpe_model.cc's SymbolPairComparator). */
function before(a: Pair, b: Pair): boolean {
  return a.score > b.score || (a.score === b.score && a.left < b.left);
}

/** A binary heap of pairs ordered by {@link before}. */
class PairHeap {
  private readonly items: Pair[] = [];

  get size(): number {
    return this.items.length;
  }

  push(p: Pair): void {
    const a = this.items;
    a.push(p);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(a[i]!, a[parent]!)) break;
      [a[i], a[parent]] = [a[parent]!, a[i]!];
      i = parent;
    }
  }

  pop(): Pair {
    const a = this.items;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < a.length && before(a[l]!, a[best]!)) best = l;
        if (r < a.length && before(a[r]!, a[best]!)) best = r;
        if (best === i) break;
        [a[i], a[best]] = [a[best]!, a[i]!];
        i = best;
      }
    }
    return top;
  }
}

/** A SentencePiece BPE model: text to piece ids, and ids to pieces. */
export class SentencePieceBpe {
  private readonly ids = new Map<string, number>();
  private readonly byteIds = new Int32Array(256).fill(-1);

  private constructor(
    private readonly entries: readonly Piece[],
    private readonly settings: Settings,
  ) {
    entries.forEach((p, id) => {
      // Only normal pieces are merge targets; control, unknown and byte pieces are looked up
      // separately (model_interface.cc, InitializePieces).
      if (p.type === PieceType.Normal && !this.ids.has(p.piece)) this.ids.set(p.piece, id);
      const m = p.type === PieceType.Byte ? /^<0x([0-9A-Fa-f]{2})>$/.exec(p.piece) : null;
      if (m) this.byteIds[parseInt(m[1]!, 16)] = id;
    });
    if (settings.byteFallback && this.byteIds.some((id) => id < 0))
      throw invalid('byte_fallback is set but some <0xXX> byte pieces are missing');
  }

  /**
   * Reads a SentencePiece `.model` file (e.g. Llama 2's `tokenizer.model`).
   *
   * @param bytes - the serialized `ModelProto`
   * @throws {BytesError} `INVALID_ARGUMENT` for a malformed file, a model that is not BPE, a
   *   normalization rule other than identity, user-defined symbols, or whitespace as a suffix
   */
  static fromModelProto(bytes: Uint8Array): SentencePieceBpe {
    if (!(bytes instanceof Uint8Array)) throw invalid('expected the bytes of a .model file');
    const entries: Piece[] = [];
    // Defaults of sentencepiece_model.proto.
    const s: Settings = {
      modelType: 1,
      byteFallback: false,
      unkId: 0,
      normalizer: '',
      charsmap: 0,
      addDummyPrefix: true,
      removeExtraWhitespaces: true,
      escapeWhitespaces: true,
      suffixWhitespace: false,
    };
    const top = new ProtoReader(bytes);
    top.fields((field, wire) => {
      if (wire !== 2) return false;
      const body = new ProtoReader(top.bytesField());
      if (field === 1) {
        let piece = '';
        let score = 0;
        let type: PieceType = PieceType.Normal;
        body.fields((f, w) => {
          if (f === 1 && w === 2) piece = utf8.decode(body.bytesField());
          else if (f === 2 && w === 5) score = body.float();
          else if (f === 3 && w === 0) type = body.varint() as PieceType;
          else return false;
          return true;
        });
        if (piece === '') throw invalid(`piece ${entries.length} is empty`);
        entries.push({ piece, score, type });
      } else if (field === 2) {
        body.fields((f, w) => {
          if (w !== 0) return false;
          const v = body.varint();
          if (f === 3) s.modelType = v;
          else if (f === 35) s.byteFallback = v !== 0;
          else if (f === 40) s.unkId = v;
          else if (f === 24) s.suffixWhitespace = v !== 0;
          return true;
        });
      } else if (field === 3) {
        body.fields((f, w) => {
          if (f === 1 && w === 2) s.normalizer = utf8.decode(body.bytesField());
          else if (f === 2 && w === 2) s.charsmap = body.bytesField().length;
          else if (f === 3 && w === 0) s.addDummyPrefix = body.varint() !== 0;
          else if (f === 4 && w === 0) s.removeExtraWhitespaces = body.varint() !== 0;
          else if (f === 5 && w === 0) s.escapeWhitespaces = body.varint() !== 0;
          else return false;
          return true;
        });
      } else return false;
      return true;
    });
    if (entries.length === 0) throw invalid('no pieces');
    if (s.modelType !== 2) throw invalid(`model_type ${s.modelType} is not BPE (2)`);
    if (s.charsmap > 0 || (s.normalizer !== '' && s.normalizer !== 'identity'))
      throw invalid(`normalization "${s.normalizer}" is not supported (only identity, as Llama's tokenizer)`);
    if (s.suffixWhitespace) throw invalid('treat_whitespace_as_suffix is not supported');
    if (entries.some((p) => p.type === PieceType.UserDefined)) throw invalid('user-defined symbols are not supported');
    // SentencePiece merges into unused pieces and then splits them again (bpe_model.cc, resegment).
    if (entries.some((p) => p.type === PieceType.Unused)) throw invalid('unused pieces are not supported');
    if (s.unkId < 0 || s.unkId >= entries.length || entries[s.unkId]!.type !== PieceType.Unknown)
      throw invalid(`unk_id ${s.unkId} is not an unknown piece`);
    return new SentencePieceBpe(entries, s);
  }

  /** Number of pieces (ids 0 .. vocabSize − 1). */
  get vocabSize(): number {
    return this.entries.length;
  }

  /**
   * The piece of an id, as SentencePiece's `id_to_piece`.
   *
   * @throws {BytesError} `INVALID_TOKEN_ID` outside the vocabulary
   */
  idToPiece(id: number): string {
    const p = Number.isInteger(id) ? this.entries[id] : undefined;
    if (!p) throw new BytesError('INVALID_TOKEN_ID', `piece id ${String(id)} is outside 0..${this.entries.length - 1}`);
    return p.piece;
  }

  /** The text as SentencePiece's normalizer writes it (identity rule). */
  private normalize(text: string): string {
    const { addDummyPrefix, removeExtraWhitespaces, escapeWhitespaces } = this.settings;
    let input = text;
    if (removeExtraWhitespaces) input = input.replace(/^ +/, '');
    if (input === '') return '';
    const space = escapeWhitespaces ? SPACE_SYMBOL : ' ';
    if (removeExtraWhitespaces) input = input.replace(/ {2,}/g, ' ').replace(/ +$/, '');
    const body = escapeWhitespaces ? input.replaceAll(' ', SPACE_SYMBOL) : input;
    return (addDummyPrefix ? space : '') + body;
  }

  /**
   * Piece ids of a text, as SentencePiece's `encode` (no BOS or EOS).
   *
   * @param text - any string (lone surrogates are encoded as U+FFFD, as UTF-8 requires)
   */
  encode(text: string): Int32Array {
    if (typeof text !== 'string') throw new BytesError('INVALID_TEXT', `text must be a string, got ${typeof text}`);
    // Lone surrogates have no UTF-8 form: U+FFFD, as TextEncoder writes them.
    const normalized = this.normalize(text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD'));
    const symbols = Array.from(normalized);
    const prev = symbols.map((_, i) => i - 1);
    const next = symbols.map((_, i) => (i + 1 < symbols.length ? i + 1 : -1));
    const heap = new PairHeap();
    const consider = (left: number, right: number) => {
      if (left < 0 || right < 0) return;
      const merged = symbols[left]! + symbols[right]!;
      const id = this.ids.get(merged);
      if (id !== undefined) heap.push({ left, right, score: this.entries[id]!.score, length: merged.length });
    };
    for (let i = 1; i < symbols.length; i++) consider(i - 1, i);
    while (heap.size > 0) {
      const top = heap.pop();
      const [l, r] = [symbols[top.left]!, symbols[top.right]!];
      // A pair whose symbols changed since it was queued is stale.
      if (l === '' || r === '' || l.length + r.length !== top.length) continue;
      symbols[top.left] = l + r;
      symbols[top.right] = '';
      next[top.left] = next[top.right]!;
      if (next[top.right]! >= 0) prev[next[top.right]!] = top.left;
      consider(prev[top.left]!, top.left);
      consider(top.left, next[top.left]!);
    }
    const out: number[] = [];
    let previousUnknown = false;
    for (const piece of symbols) {
      if (piece === '') continue;
      const id = this.ids.get(piece);
      if (id !== undefined) {
        out.push(id);
        previousUnknown = false;
      } else if (this.settings.byteFallback) {
        for (const b of encodeUtf8(piece)) out.push(this.byteIds[b]!);
        previousUnknown = false;
      } else {
        // A run of unknown pieces is one unknown id (sentencepiece_processor.cc).
        if (!previousUnknown) out.push(this.settings.unkId);
        previousUnknown = true;
      }
    }
    return Int32Array.from(out);
  }
}

/** Options of {@link encodeWithBpeDelimiters}. */
export interface BpeDelimiterOptions {
  /** Prepend BOS (default true, as the reference tokenizer). */
  readonly bos?: boolean;
  /** Append EOS (default true, as the reference tokenizer). */
  readonly eos?: boolean;
}

/** A piece's bytes: `<0xXX>` pieces are that byte, others their UTF-8 (blt_tokenizer.py, `convert_to_bytes`). */
function pieceBytes(piece: string): Uint8Array {
  // The reference tests the pattern at the start only, then reads everything between "<0x" and the
  // last character as hex.
  if (/^<0x[0-9a-fA-F]+>/.test(piece)) {
    const hex = piece.slice(3, -1);
    if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new BytesError('INVALID_TEXT', `piece "${piece}" is not hex bytes`);
    return Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
  }
  return encodeUtf8(piece);
}

/**
 * Token ids of a text in the reference's BPE-delimiter form (`BltTokenizer(bpe_delim=True).encode`):
 * the text is segmented by a SentencePiece BPE model and every piece's bytes (id = byte + 4) are
 * preceded by the delimiter {@link BPE_ID}; the `'bpe'` patching rule then ends a patch at each
 * delimiter. Reproduced from `text2bytes_bpe_delims` on purpose: leading all-space pieces are
 * joined into one piece holding the text's leading spaces; the first piece after them loses every
 * `▁`; other pieces turn `▁` into a space; empty pieces are dropped.
 *
 * @param text - the text
 * @param tokenizer - the SentencePiece BPE model (`SentencePieceBpe.fromModelProto`)
 * @param options - BOS and EOS (both by default)
 */
export function encodeWithBpeDelimiters(text: string, tokenizer: SentencePieceBpe, options: BpeDelimiterOptions = {}): Int32Array {
  const { bos = true, eos = true } = options;
  const pieces = Array.from(tokenizer.encode(text), (id) => tokenizer.idToPiece(id));
  const allSpaceSymbols = (s: string) => [...s].every((c) => c === SPACE_SYMBOL);
  let leading = 0;
  while (leading < pieces.length && allSpaceSymbols(pieces[leading]!)) leading++;
  const merged = [pieces.slice(0, leading).join(''), ...pieces.slice(leading)];
  const strings: string[] = [];
  merged.forEach((piece, i) => {
    let s: string;
    if (strings.length <= 1 && strings.every((x) => /^ *$/.test(x)) && !allSpaceSymbols(piece)) s = piece.replaceAll(SPACE_SYMBOL, '');
    else if (i === 0 && allSpaceSymbols(piece)) s = ' '.repeat(text.length - text.replace(/^ +/, '').length);
    else s = piece.replaceAll(SPACE_SYMBOL, ' ');
    if (s.length > 0) strings.push(s);
  });
  const out: number[] = bos ? [BOS_ID] : [];
  for (const s of strings) {
    out.push(BPE_ID);
    for (const b of pieceBytes(s)) out.push(b + BYTE_OFFSET);
  }
  if (eos) out.push(EOS_ID);
  return Int32Array.from(out);
}
