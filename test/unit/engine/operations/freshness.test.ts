import { describe, expect, it } from 'vitest';
import { assessImage, type FreshnessVersion } from '../../../../src/engine/operations/freshness.js';
import type { ImageSchedule } from '../../../../src/engine/support/config.js';

const H = 3_600_000;
const NOW = 1_800_000_000_000;
const daily: ImageSchedule = { images: ['vm*'], intervalMs: 24 * H, toleranceMs: 2 * H, slaMs: 36 * H, source: undefined };

const v = (hoursAgo: number, extra: Partial<FreshnessVersion> = {}): FreshnessVersion => ({
  uid: `v${hoursAgo}`,
  createdAt: NOW - hoursAgo * H,
  kind: 'backup',
  status: 'valid',
  ...extra,
});

describe('assessImage()', () => {
  it.each<[string, FreshnessVersion[], ImageSchedule | undefined, string, number, boolean]>([
    ['a fresh backup', [v(3)], daily, 'ok', 0, false],
    ['due a little before the interval (tolerance), still ok', [v(22.5)], daily, 'ok', 0, true],
    ['not due yet', [v(21.5)], daily, 'ok', 0, false],
    ['late after interval + tolerance', [v(27)], daily, 'late', 1, true],
    ['breached after the SLA', [v(37)], daily, 'breached', 2, true],
    ['breached without any backup', [], daily, 'breached', 2, true],
    ['only copy-on-write and incomplete versions count as none', [v(1, { kind: 'cow' }), v(2, { status: 'incomplete' })], daily, 'breached', 2, true],
    ['ages count from the newest valid backup, not a newer invalid one', [v(30), v(2, { status: 'invalid' })], daily, 'late', 1, true],
    ['a fresh image with an old invalid version is a warning', [v(50, { status: 'invalid' }), v(3)], daily, 'ok', 1, false],
    ['all backups invalid: breached even without a schedule', [v(3, { status: 'invalid' })], undefined, 'breached', 2, false],
    ['no schedule: no expectation', [v(1000)], undefined, 'ok', 0, false],
    ['no SLA: late at worst', [v(1000)], { ...daily, slaMs: undefined }, 'late', 1, true],
  ])('%s', (_what, versions, schedule, freshness, level, due) => {
    const h = assessImage('vm1', versions, schedule, NOW);
    expect({ freshness: h.freshness, level: h.level, due: h.due }).toEqual({ freshness, level, due });
    expect(h.problems.length > 0).toBe(level > 0);
  });

  it('says why, and when the next backup is due', () => {
    const late = assessImage('vm1', [v(27)], daily, NOW);
    expect(late.problems).toEqual(['newest valid backup is 27h00m old, due every 24h00m']);
    expect(late.dueAt).toBe(NOW - 27 * H + 22 * H);
    const invalid = assessImage('vm1', [v(30), v(2, { status: 'invalid' })], daily, NOW);
    expect(invalid.problems).toEqual(['newest valid backup is 30h00m old, due every 24h00m', 'newest backup v2 is invalid (a scrub found bad blocks); the newest valid one is v30']);
    expect(invalid.newerInvalid).toEqual({ uid: 'v2', createdAt: NOW - 2 * H });
    expect(assessImage('vm1', [], daily, NOW).problems).toEqual(['no backup yet']);
    expect(assessImage('vm1', [v(40)], daily, NOW).problems).toEqual(['newest valid backup is 40h00m old, older than the SLA of 36h00m']);
  });
});
