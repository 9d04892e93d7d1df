import { formatBytes, formatDuration } from '../../engine/support/units.js';

/**
 * The rate of a long operation, smoothed: an exponentially weighted average with a half-life of
 * a few seconds, so the ETA follows real changes (a cold region, a busy store) without jumping
 * with every block.
 */
export class RateEstimator {
  readonly #halfLifeMs: number;
  #rate: number | undefined;
  #lastAt: number;
  #lastDone = 0;

  constructor(now: number, halfLifeMs = 5000) {
    this.#halfLifeMs = halfLifeMs;
    this.#lastAt = now;
  }

  /** Records that `done` bytes are done at `now` (ms); returns the smoothed rate in bytes/s. */
  update(done: number, now: number): number | undefined {
    const dt = now - this.#lastAt;
    if (dt < 200) return this.#rate; // too short to measure
    const instant = ((done - this.#lastDone) * 1000) / dt;
    const keep = 0.5 ** (dt / this.#halfLifeMs);
    this.#rate = this.#rate === undefined ? instant : keep * this.#rate + (1 - keep) * instant;
    this.#lastAt = now;
    this.#lastDone = done;
    return this.#rate;
  }
}

/** What one progress line shows. */
export interface ProgressState {
  readonly label: string;
  readonly done: number;
  readonly total: number;
  /** Smoothed bytes per second, undefined until measured. */
  readonly rate: number | undefined;
  /** Terminal width in columns. */
  readonly columns: number;
}

/**
 * One line of progress that fits the terminal: label, bar, percent, bytes, rate and ETA; the bar
 * shrinks first, then the label is cut, then the details go.
 */
export function renderProgressLine(state: ProgressState): string {
  const fraction = state.total > 0 ? Math.min(1, state.done / state.total) : 0;
  const eta = state.rate && state.rate > 0 ? formatDuration(((state.total - state.done) / state.rate) * 1000) : '-';
  const details = ` ${Math.floor(fraction * 100)}% ${formatBytes(state.done)}/${formatBytes(state.total)} ${state.rate === undefined ? '-' : formatBytes(state.rate)}/s ETA ${eta}`;
  const width = Math.max(10, state.columns - 1); // the last column would wrap on some terminals
  const short = ` ${Math.floor(fraction * 100)}% ETA ${eta}`;
  const tail = state.label.length + details.length + 12 <= width ? details : short;
  const room = width - tail.length - 3; // " [" and "]"
  const label = state.label.length > room - 10 ? `${state.label.slice(0, Math.max(0, room - 11))}…` : state.label;
  const barWidth = Math.max(0, Math.min(40, room - label.length));
  const filled = Math.round(fraction * barWidth);
  const bar = barWidth > 0 ? ` [${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}]` : '';
  return `${label}${bar}${tail}`.slice(0, width);
}
