import { scrub, type ScrubFinding, type ScrubResult } from '../../src/engine/operations/scrub.js';
import type { Store } from '../../src/engine/store.js';

/** Runs a scrub to the end and collects its findings. */
export async function runScrub(s: Store, options: Parameters<typeof scrub>[1]): Promise<{ findings: ScrubFinding[]; result: ScrubResult }> {
  const findings: ScrubFinding[] = [];
  const run = scrub(s, options);
  let step = await run.next();
  while (!step.done) {
    findings.push(step.value);
    step = await run.next();
  }
  return { findings, result: step.value };
}
