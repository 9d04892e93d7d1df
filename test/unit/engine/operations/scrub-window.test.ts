import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { inWindow, scrubWindow } from '../../../../src/engine/operations/scrub-window.js';

const DAY = 86_400_000;
const digests = Array.from({ length: 20_000 }, () => randomBytes(32));

describe('scrubWindow()', () => {
  it.each([1, 10, 15, 33, 50])('at %d%% holds about that share of digests, and ceil(100/P) consecutive days hold every digest', (percent) => {
    const start = Date.UTC(2026, 3, 5, 13);
    const today = scrubWindow(percent, start);
    const share = digests.filter((d) => inWindow(today, d)).length / digests.length;
    expect(share).toBeGreaterThan((percent / 100) * 0.85);
    expect(share).toBeLessThan((percent / 100) * 1.15 + 0.002);
    const days = Math.ceil(100 / percent);
    const windows = Array.from({ length: days }, (_, i) => scrubWindow(percent, start + i * DAY));
    expect(digests.every((d) => windows.some((w) => inWindow(w, d)))).toBe(true);
  });

  it('moves on each day: consecutive days share no digest (below 50%)', () => {
    const start = Date.UTC(2026, 3, 5);
    for (let i = 0; i < 10; i++) {
      const [a, b] = [scrubWindow(15, start + i * DAY), scrubWindow(15, start + (i + 1) * DAY)];
      expect(digests.filter((d) => inWindow(a, d) && inWindow(b, d))).toEqual([]);
    }
  });

  it('is the same all day (a second run that day checks the same blocks) and all digests at 100%', () => {
    const day = Date.UTC(2026, 3, 5);
    expect(scrubWindow(10, day + 1000)).toEqual(scrubWindow(10, day + DAY - 1));
    expect(digests.every((d) => inWindow(scrubWindow(100, day), d))).toBe(true);
  });
});
