/**
 * Sampling when a request names none, for `/v1/generate`, `/v1/completions` and the page. Greedy
 * decoding of a small byte model falls into loops ("the string the string …"); sampling at a
 * temperature below 1 with nucleus (top-p) truncation keeps the text varied without the
 * low-probability bytes that make it unreadable.
 */
export const DEFAULT_SAMPLING = { temperature: 0.8, topP: 0.95 } as const;
