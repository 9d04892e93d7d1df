import { describe, expect, it } from 'vitest';
import { autoTagPeriods, autoTags } from '../../../src/engine/operations/auto-tags.js';
import { bitIsSet, hintedBlocks, parseHints } from '../../../src/engine/endpoints/hints.js';
import { VERSION_UID_PATTERN, newVersionUid } from '../../../src/engine/support/uid.js';
import { formatBytes, parseDuration, parseSize } from '../../../src/engine/support/units.js';
import { checkImageName, checkTag } from '../../../src/engine/support/names.js';

describe('parseSize()', () => {
  it.each([
    ['4MiB', 4 * 1024 ** 2],
    ['4M', 4 * 1024 ** 2],
    ['64k', 65536],
    ['1 GiB', 1024 ** 3],
    ['4096', 4096],
    ['2T', 2 * 1024 ** 4],
  ])('parses %s', (text, bytes) => expect(parseSize(text)).toBe(bytes));
  it.each(['', 'abc', '4 parsecs', '-1M', '1.5.2G'])('rejects "%s"', (text) => expect(parseSize(text)).toBeUndefined());
});

describe('parseDuration()', () => {
  it.each([
    ['6d', 6 * 86_400_000],
    ['12h', 12 * 3_600_000],
    ['30m', 1_800_000],
    ['45s', 45_000],
    ['1w', 7 * 86_400_000],
    ['0', 0],
  ])('parses %s', (text, ms) => expect(parseDuration(text)).toBe(ms));
  it.each(['', 'six days', '6y', '-1d'])('rejects "%s"', (text) => expect(parseDuration(text)).toBeUndefined());
});

describe('formatBytes()', () => {
  it('uses binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(4 * 1024 ** 2)).toBe('4.0 MiB');
  });
});

describe('parseHints()', () => {
  it('accepts rbd diff output with string or boolean exists', () => {
    expect(parseHints([{ offset: 0, length: 10, exists: 'true' }, { offset: 10, length: 5, exists: false }], 'h')).toEqual([
      { offset: 0, length: 10, exists: true },
      { offset: 10, length: 5, exists: false },
    ]);
  });
  it.each([
    ['not an array', { offset: 0 }],
    ['a non-object entry', [1]],
    ['a missing offset', [{ length: 1, exists: true }]],
    ['a negative length', [{ offset: 0, length: -1, exists: true }]],
    ['a fractional offset', [{ offset: 0.5, length: 1, exists: true }]],
    ['a bad exists', [{ offset: 0, length: 1, exists: 'yes' }]],
  ])('rejects %s with a usage error naming the entry', (_name, data) => {
    expect(() => parseHints(data, '"h.json"')).toThrow(expect.objectContaining({ code: 'E_USAGE', message: expect.stringContaining('"h.json"') }));
  });
});

describe('hintedBlocks()', () => {
  it('marks every block an extent touches', () => {
    const bitmap = hintedBlocks([{ offset: 100, length: 200, exists: true }, { offset: 1024 * 3 - 1, length: 2, exists: true }], { size: 10 * 1024, blockSize: 1024, what: 'h' });
    expect([...Array(10).keys()].filter((i) => bitIsSet(bitmap, i))).toEqual([0, 2, 3]);
  });
  it('rejects extents past the end of the source', () => {
    expect(() => hintedBlocks([{ offset: 9000, length: 2000, exists: true }], { size: 10_000, blockSize: 1024, what: 'h' })).toThrow(
      expect.objectContaining({ code: 'E_USAGE', message: expect.stringContaining('past the end') }),
    );
  });
});

describe('autoTags()', () => {
  const at = (s: string) => new Date(s).getTime();
  it('tags the first version of a day, week and month', () => {
    expect(autoTags(at('2026-11-27T10:00:00'), [])).toEqual(['b_daily', 'b_weekly', 'b_monthly']);
    expect(autoTags(at('2026-11-27T18:00:00'), [at('2026-11-27T10:00:00')])).toEqual([]);
    // Friday 2026-11-27 and Monday 2026-11-23 share an ISO week; the 30th starts a new one
    expect(autoTags(at('2026-11-27T10:00:00'), [at('2026-11-23T10:00:00')])).toEqual(['b_daily']);
    expect(autoTags(at('2026-11-30T10:00:00'), [at('2026-11-27T10:00:00')])).toEqual(['b_daily', 'b_weekly']);
    expect(autoTags(at('2026-12-01T10:00:00'), [at('2026-11-30T10:00:00')])).toEqual(['b_daily', 'b_monthly']);
  });

  it('autoTagPeriods(): the oldest version of each period alone decides the tags as all versions do', () => {
    const day = 86_400_000;
    // Month and week edges, a week across a month and a year, DST changes (in the local zone, if it has them).
    const times = ['2026-11-30T00:00:00', '2026-12-01T00:00:00', '2026-12-31T23:59:59', '2027-01-03T12:00:00', '2026-03-29T02:30:00', '2026-10-25T01:30:00'].map(at);
    for (let n = 0; n < 200; n++) times.push(at('2026-01-01T00:00:00') + Math.floor(Math.random() * 730 * day));
    for (const t of times) {
      const periods = autoTagPeriods(t);
      for (const p of periods) expect(p.since <= t && t < p.until).toBe(true);
      for (let k = 0; k < 10; k++) {
        const others = Array.from({ length: 3 }, () => t + Math.floor((Math.random() - 0.5) * 80 * day));
        const firsts = periods.flatMap((p) => others.filter((o) => o >= p.since && o < p.until).sort((a, b) => a - b).slice(0, 1));
        expect(autoTags(t, firsts), new Date(t).toString()).toEqual(autoTags(t, others));
      }
    }
  });
});

describe('names', () => {
  it('newVersionUid() is unique, short and sorts by time', () => {
    const a = newVersionUid(1_700_000_000_000);
    const b = newVersionUid(1_800_000_000_000);
    expect(a).toMatch(VERSION_UID_PATTERN);
    expect(a < b).toBe(true);
    expect(new Set(Array.from({ length: 1000 }, () => newVersionUid())).size).toBeGreaterThan(990);
  });
  it.each(['', '../x', 'a/b', '-vm', 'latest.img', 'x'.repeat(129)])('checkImageName() rejects "%s"', (name) => {
    expect(() => checkImageName(name)).toThrow(expect.objectContaining({ code: 'E_USAGE' }));
  });
  it.each(['vm1', 'db.prod-01', 'host@pool+x'])('checkImageName() accepts "%s"', (name) => expect(checkImageName(name)).toBe(name));
  it.each(['', 'a b', 'x,y'])('checkTag() rejects "%s"', (tag) => expect(() => checkTag(tag)).toThrow(expect.objectContaining({ code: 'E_USAGE' })));
});
