import { describe, expect, it } from 'vitest';
import { RateEstimator, renderProgressLine } from '../../../../src/cli/ui/progress-line.js';

const GiB = 1024 ** 3;

describe('renderProgressLine()', () => {
  it.each([20, 40, 60, 80, 120, 200])('fits a terminal of %i columns', (columns) => {
    const line = renderProgressLine({ label: 'backup a-rather-long-image-name-of-a-vm', done: 3 * GiB, total: 7 * GiB, rate: 612e6, columns });
    expect(line.length).toBeLessThan(columns);
    expect(line).toContain('42%');
    expect(line).toMatch(/ETA \S+$/);
  });

  it('shows the bar, bytes and rate where there is room', () => {
    const line = renderProgressLine({ label: 'restore vm1', done: GiB, total: 4 * GiB, rate: 500 * 1024 ** 2, columns: 120 });
    expect(line).toMatch(/^restore vm1 \[#{10}-{30}\] 25% 1\.0 GiB\/4\.0 GiB 500\.0 MiB\/s ETA 6\.1s$/);
  });
});

describe('RateEstimator', () => {
  it('smooths the rate, so the ETA does not jump with one slow second', () => {
    const rate = new RateEstimator(0, 5000);
    let done = 0;
    let last: number | undefined;
    for (let t = 1000; t <= 30_000; t += 1000) {
      done += t === 20_000 ? 0 : 100e6; // one second without progress
      last = rate.update(done, t);
      if (t === 20_000) expect(last).toBeGreaterThan(80e6);
    }
    expect(last).toBeGreaterThan(95e6);
    expect(last).toBeLessThan(101e6);
  });
});
