/** Machine-readable reason of a {@link PatcherError}. */
export type PatcherErrorCode =
  | 'INVALID_ARGUMENT'
  | 'EMPTY_INPUT'
  | 'INVALID_ENTROPIES'
  | 'INPUT_TOO_LONG'
  | 'INVALID_CHECKPOINT'
  | 'CONFIG_MISMATCH';

/** Every error thrown by `@bytelatent/entropy-patcher`; `code` says what went wrong. */
export class PatcherError extends Error {
  readonly code: PatcherErrorCode;

  constructor(code: PatcherErrorCode, message: string) {
    super(message);
    this.name = 'PatcherError';
    this.code = code;
  }
}
