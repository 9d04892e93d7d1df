import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addSpan, formatLocalIso, formatSpan, isoWeek, parseDate, parseSpan, periodKey, periodSpan, subtractSpan } from '../../../../src/engine/support/calendar.js';
import { globToRegExp, isGlob, matchesAny, matchesGlob } from '../../../../src/engine/support/glob.js';

// Local time with DST: 2024-03-31 02:00 CET → 03:00 CEST, 2024-10-27 03:00 CEST → 02:00 CET.
const savedTz = process.env.TZ;
beforeAll(() => {
  process.env.TZ = 'Europe/Berlin';
});
afterAll(() => {
  process.env.TZ = savedTz;
  if (savedTz === undefined) delete process.env.TZ;
});

const local = (text: string) => {
  const ms = parseDate(text);
  if (ms === undefined) throw new Error(`bad date ${text}`);
  return ms;
};

describe('parseSpan()', () => {
  it.each([
    ['7d', { years: 0, months: 0, days: 7, hours: 0 }],
    ['36h', { years: 0, months: 0, days: 0, hours: 36 }],
    ['2w', { years: 0, months: 0, days: 14, hours: 0 }],
    ['6mo', { years: 0, months: 6, days: 0, hours: 0 }],
    ['1y6mo2d3h', { years: 1, months: 6, days: 2, hours: 3 }],
    [' 1Y ', { years: 1, months: 0, days: 0, hours: 0 }],
  ])('parseSpan(%j) reads calendar units', (text, span) => {
    expect(parseSpan(text)).toEqual(span);
  });

  it.each(['', '30m', '5', 'd', '1d1d', '-1d', '1.5d', '1x'])('parseSpan(%j) refuses what is not a span (m would be minutes)', (text) => {
    expect(parseSpan(text)).toBeUndefined();
  });

  it('formatSpan() writes what parseSpan() reads', () => {
    for (const text of ['1y6mo', '7d', '36h', '1y2mo3d4h']) expect(formatSpan(parseSpan(text)!)).toBe(text);
    expect(formatSpan({ years: 0, months: 0, days: 0, hours: 0 })).toBe('0h');
  });
});

describe('subtractSpan() and addSpan()', () => {
  it('move the local date by calendar days across DST (a day is 23 or 25 hours)', () => {
    expect(subtractSpan(local('2024-03-31 12:00'), parseSpan('1d')!)).toBe(local('2024-03-30 12:00'));
    expect(local('2024-03-31 12:00') - local('2024-03-30 12:00')).toBe(23 * 3_600_000);
    expect(subtractSpan(local('2024-10-27 12:00'), parseSpan('1d')!)).toBe(local('2024-10-26 12:00'));
    expect(local('2024-10-27 12:00') - local('2024-10-26 12:00')).toBe(25 * 3_600_000);
  });

  it('count hours exactly', () => {
    expect(local('2024-03-31 12:00') - subtractSpan(local('2024-03-31 12:00'), parseSpan('24h')!)).toBe(24 * 3_600_000);
  });

  it('overflow months as Go AddDate does', () => {
    // March 31 minus one month is "February 31", which is March 2 in a leap year.
    expect(subtractSpan(local('2024-03-31 10:00'), parseSpan('1mo')!)).toBe(local('2024-03-02 10:00'));
    expect(addSpan(local('2024-01-31 10:00'), parseSpan('1mo')!)).toBe(local('2024-03-02 10:00'));
    expect(subtractSpan(local('2024-02-29 10:00'), parseSpan('1y')!)).toBe(local('2023-03-01 10:00'));
  });
});

describe('isoWeek() and periodKey()', () => {
  it.each([
    ['2020-12-31', 2020, 53],
    ['2021-01-03', 2020, 53],
    ['2021-01-04', 2021, 1],
    ['2024-12-29', 2024, 52],
    ['2024-12-30', 2025, 1],
    ['2026-01-01', 2026, 1],
    ['2027-01-01', 2026, 53],
  ])('isoWeek(%s) is %i-W%i', (date, year, week) => {
    expect(isoWeek(local(date))).toEqual({ year, week });
    expect(isoWeek(local(`${date} 23:59`))).toEqual({ year, week });
  });

  it('names local periods, not UTC ones', () => {
    // 00:30 local on April 1 is March 31 in UTC.
    const t = local('2024-04-01 00:30');
    expect(periodKey(t, 'hour')).toBe('2024-04-01 00h');
    expect(periodKey(t, 'day')).toBe('2024-04-01');
    expect(periodKey(t, 'week')).toBe('2024-W14');
    expect(periodKey(t, 'month')).toBe('2024-04');
    expect(periodKey(t, 'year')).toBe('2024');
    // Both 02:30 of the night the clocks go back are hour 02 of that day.
    expect(periodKey(local('2024-10-27 02:30+02:00'), 'hour')).toBe(periodKey(local('2024-10-27 02:30+01:00'), 'hour'));
  });
});

describe('parseDate()', () => {
  it.each([
    ['2024-03-31', '2024-03-31T00:00:00+01:00'],
    ['2024-03-31 14:00', '2024-03-31T14:00:00+02:00'],
    ['2024-03-31T14:00:05', '2024-03-31T14:00:05+02:00'],
    ['2024-03-31T12:00:00Z', '2024-03-31T14:00:00+02:00'],
    ['2024-03-31 12:00+0000', '2024-03-31T14:00:00+02:00'],
    ['2024-01-15T10:00-05:00', '2024-01-15T16:00:00+01:00'],
  ])('parseDate(%j) is %s', (text, iso) => {
    expect(formatLocalIso(parseDate(text)!)).toBe(iso);
  });

  it.each(['', 'tomorrow', '2024-02-30', '2024-13-01', '2024-03-31 24:00', '31.03.2024', '2024-3-1'])('parseDate(%j) refuses what is not a date', (text) => {
    expect(parseDate(text)).toBeUndefined();
  });
});

describe('glob', () => {
  it.each([
    ['vm-*', 'vm-1', true],
    ['vm-*', 'vm', false],
    ['vm?', 'vm1', true],
    ['vm?', 'vm12', false],
    ['db[0-9]', 'db3', true],
    ['db[!0-9]', 'db3', false],
    ['db[!0-9]', 'dbx', true],
    ['a.b', 'aXb', false],
    ['a.b', 'a.b', true],
    ['*', 'anything.at_all', true],
    ['[abc', '[abc', true],
  ])('matchesGlob(%j) of %j is %s', (pattern, name, expected) => {
    expect(matchesGlob(name, pattern)).toBe(expected);
  });

  it('isGlob() tells patterns from names; matchesAny() takes a list', () => {
    expect(isGlob('vm1')).toBe(false);
    expect(isGlob('vm*')).toBe(true);
    expect(matchesAny('db1', ['vm*', 'db?'])).toBe(true);
    expect(globToRegExp('x+y').test('x+y')).toBe(true);
  });
});

describe('periodSpan()', () => {
  it('runs from the first to the last ms of the period periodKey names, also across DST changes and year ends', () => {
    const times = ['2026-03-29T02:30:00', '2026-10-25T02:30:00', '2026-12-31T23:59:59', '2027-01-01T00:00:00', '2026-11-30T00:00:00'].map((t) => new Date(t).getTime());
    for (let i = 0; i < 300; i++) times.push(Date.UTC(2026, 0, 1) + Math.floor(Math.random() * 800 * 86_400_000));
    for (const ms of times) {
      for (const unit of ['day', 'week', 'month', 'year'] as const) {
        const { since, until } = periodSpan(ms, unit);
        const key = periodKey(ms, unit);
        expect([periodKey(since, unit), periodKey(until - 1, unit)], `${unit} of ${new Date(ms).toString()}`).toEqual([key, key]);
        expect(periodKey(since - 1, unit)).not.toBe(key);
        expect(periodKey(until, unit)).not.toBe(key);
      }
    }
  });
});
