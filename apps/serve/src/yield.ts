/**
 * Gives the event loop a turn between model steps, so that responses are written and
 * disconnects noticed mid-generation. `setImmediate` in Node; the page runs the same code in the
 * browser, which has no `setImmediate`, so a zero timeout there.
 */
export function yieldToEventLoop(): Promise<void> {
  const immediate = (globalThis as { setImmediate?: (fn: () => void) => unknown }).setImmediate;
  return new Promise((resolve) => (immediate ? immediate(resolve) : setTimeout(resolve, 0)));
}
