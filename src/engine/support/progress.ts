/**
 * Progress callbacks of long operations; all optional. The engine never prints: front ends
 * render these (a bar on a TTY, JSON lines, nothing).
 */
export interface Progress {
  /**
   * Once, before data moves.
   * @param info `totalBytes`: the size of what is processed; `workBytes`: bytes that will actually be read
   */
  start?(info: { readonly totalBytes: number; readonly workBytes: number }): void;
  /** Bytes of `totalBytes` done since the last call. */
  advance?(bytes: number): void;
}
