import type { Progress } from '../../engine/support/progress.js';
import type { CliIo, Globals } from '../io.js';
import { RateEstimator, renderProgressLine } from './progress-line.js';

/** A progress sink that the command stops when done. */
export interface ProgressView extends Progress {
  stop(): void;
}

const SILENT: ProgressView = { stop: () => undefined };

/**
 * A progress bar with rate and ETA on standard error, drawn only on a terminal and never with
 * --json.
 * @param label what is in progress, e.g. "backup vm1"
 */
export async function progressView(io: CliIo, globals: Globals, label: string): Promise<ProgressView> {
  if (!io.stderrIsTTY || globals.json) return SILENT;
  // Loaded only for a terminal: it costs memory that scripts and cron jobs need not pay.
  const { default: cliProgress } = await import('cli-progress');
  const rate = new RateEstimator(Date.now());
  let done = 0;
  let smoothed: number | undefined;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
      fps: 5,
      // Redrawn in full each time: the line is ours, fitted to the terminal's current width.
      format: (_options, params) => {
        smoothed = rate.update(done, Date.now()) ?? smoothed;
        return renderProgressLine({ label, done, total: params.total, rate: smoothed, columns: process.stderr.columns || 80 });
      },
    },
    cliProgress.Presets.legacy,
  );
  let running = false;
  return {
    start: ({ totalBytes }) => {
      bar.start(Math.max(1, totalBytes), 0);
      running = true;
    },
    advance: (bytes) => {
      done += bytes;
      if (running) bar.update(done);
    },
    stop: () => {
      if (running) bar.stop();
      running = false;
    },
  };
}
