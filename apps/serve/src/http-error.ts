import { CodedError } from '@bytelatent/bytes';
/**
 * Machine-readable code of an API error, sent as `{"error":{"code","message","type","param"}}`:
 * OpenAI's error shape, so that its clients read our errors too.
 */
export type ApiErrorCode =
  | 'NOT_FOUND'
  | 'MODEL_NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'MALFORMED_JSON'
  | 'INVALID_REQUEST'
  | 'BODY_TOO_LARGE'
  | 'INPUT_TOO_LARGE'
  | 'OVERLOADED'
  | 'TIMEOUT'
  | 'INTERNAL';

/** An error with its HTTP status; everything the API rejects is one of these. */
export class HttpError extends CodedError<ApiErrorCode> {
  override readonly name = 'HttpError';

  constructor(
    readonly status: number,
    code: ApiErrorCode,
    message: string,
  ) {
    super(code, message);
  }

  toJSON(): { error: { code: ApiErrorCode; message: string; type: 'invalid_request_error' | 'server_error'; param: null } } {
    return {
      error: { code: this.code, message: this.message, type: this.status >= 500 ? 'server_error' : 'invalid_request_error', param: null },
    };
  }
}

export const badRequest = (message: string) => new HttpError(400, 'INVALID_REQUEST', message);

/**
 * The error a failed request answers with: ours as they are; a typed input error of our packages
 * (too long, empty, bad option) is the client's; anything else is an internal error, whose details stay
 * in the server's log.
 */
export function toHttpError(e: unknown, signal: AbortSignal): HttpError {
  if (e instanceof HttpError) return e;
  if (signal.aborted && signal.reason instanceof HttpError) return signal.reason;
  // Only bytelatent's own errors (bad input the models refused) become 4xx answers, by their code;
  // anything else — a Node error that happens to carry a similar code included — is internal.
  if (e instanceof CodedError) {
    if (e.code === 'INPUT_TOO_LONG') return new HttpError(413, 'INPUT_TOO_LARGE', e.message);
    if (e.code === 'EMPTY_INPUT' || e.code === 'INVALID_ARGUMENT') return new HttpError(400, 'INVALID_REQUEST', e.message);
  }
  return new HttpError(500, 'INTERNAL', 'internal error');
}
