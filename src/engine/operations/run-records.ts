import type { Store } from '../store.js';
import { debug } from '../support/debug.js';

/** Operations whose runs are recorded for `check` and the metrics. */
export type RecordedOperation = 'cleanup' | 'scrub' | 'forget';

/**
 * Records a finished run and its figures in the catalog (the last run, and totals). Best effort:
 * a read-only store records nothing, and a failure to record never fails the run itself.
 * @param figures numbers only (counts, bytes, seconds)
 */
export async function recordRun(store: Store, operation: RecordedOperation, figures: Readonly<Record<string, number>>): Promise<void> {
  if (store.readOnly) return;
  try {
    await store.catalog.recordRun(operation, Date.now(), figures);
  } catch (err) {
    debug(`${operation}: could not record the run: ${String(err)}`);
  }
}
