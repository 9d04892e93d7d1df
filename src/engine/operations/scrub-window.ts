/**
 * Which blocks a partial scrub (`-p P`) reads: those whose digest falls into a window of P% of
 * the digest space, and the window moves on by P% every day (UTC). Digests are uniform, so a
 * window holds about P% of the distinct blocks (and map segments) in scope however many versions
 * share them, consecutive days check different blocks, and ceil(100 / P) days check them all
 * (15% a day: everything within a week). Nothing needs to be remembered between runs.
 */

const DAY_MS = 86_400_000;
/** Digest bytes read as the position in the digest space (48 bits: exact in a double). */
const POSITION_BYTES = 6;

/** A share of the digest space: positions from `start` (wrapping at 1) for `share`. */
export interface ScrubWindow {
  /** Where it starts, 0 ≤ start < 1. */
  readonly start: number;
  /** How much of the space it holds, 0 < share ≤ 1. */
  readonly share: number;
}

/**
 * The window of a scrub of `percent` on the day of `at`.
 * @param percent share to check, above 0 and at most 100
 * @param at when the scrub runs (ms since the epoch)
 * @returns the window; all of the space at 100
 */
export function scrubWindow(percent: number, at: number): ScrubWindow {
  const share = Math.min(1, percent / 100);
  if (share >= 1) return { start: 0, share: 1 };
  const day = Math.floor(at / DAY_MS);
  return { start: (day * share) % 1, share };
}

/** Whether a block or segment of this digest is in the window. */
export function inWindow(window: ScrubWindow, digest: Uint8Array): boolean {
  if (window.share >= 1) return true;
  let position = 0;
  for (let i = 0; i < POSITION_BYTES; i++) position = position * 256 + (digest[i] ?? 0);
  const offset = position / 2 ** (8 * POSITION_BYTES) - window.start;
  return (offset < 0 ? offset + 1 : offset) < window.share;
}
