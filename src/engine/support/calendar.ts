/**
 * Calendar arithmetic in local time, as retention needs it: periods (hour, day, ISO week, month,
 * year) named by their local date, spans of calendar units (`1y6mo`, `7d`) added and subtracted
 * the way Go's `time.AddDate` does (restic's `--keep-within`), and dates typed by people.
 *
 * Everything here uses the process's time zone (TZ): backups made at 00:30 local time belong to
 * that local day, whatever UTC says, and a day across a DST change has 23 or 25 hours.
 */

/** A span of calendar units. Years, months and days move the local date; hours are exact. */
export interface CalendarSpan {
  readonly years: number;
  readonly months: number;
  readonly days: number;
  readonly hours: number;
}

/** The periods retention counts in. */
export type PeriodUnit = 'hour' | 'day' | 'week' | 'month' | 'year';

const SPAN_UNITS: Record<string, keyof CalendarSpan | 'weeks'> = {
  y: 'years',
  mo: 'months',
  w: 'weeks',
  d: 'days',
  h: 'hours',
};

/**
 * Parses a span such as `7d`, `36h`, `2w`, `6mo`, `1y` or `1y6mo2d`. Unlike restic, `m` is not
 * accepted (backy2 durations use it for minutes): months are `mo`.
 * @returns the span, or undefined when `text` is not one (or is empty)
 */
export function parseSpan(text: string): CalendarSpan | undefined {
  const s = text.trim().toLowerCase();
  if (s === '') return undefined;
  const span = { years: 0, months: 0, days: 0, hours: 0 };
  const seen = new Set<string>();
  let rest = s;
  while (rest.length > 0) {
    const m = /^(\d{1,6})(mo|y|w|d|h)/.exec(rest);
    if (!m) return undefined;
    const unit = SPAN_UNITS[m[2] ?? ''];
    if (unit === undefined || seen.has(unit)) return undefined;
    seen.add(unit);
    const n = Number(m[1]);
    if (unit === 'weeks') span.days += 7 * n;
    else span[unit] += n;
    rest = rest.slice(m[0].length);
  }
  return span;
}

/** Formats a span as parsed by {@link parseSpan}: `1y6mo`, `7d`, `36h`; `0h` for nothing. */
export function formatSpan(span: CalendarSpan): string {
  const parts = [
    span.years ? `${span.years}y` : '',
    span.months ? `${span.months}mo` : '',
    span.days ? `${span.days}d` : '',
    span.hours ? `${span.hours}h` : '',
  ].join('');
  return parts || '0h';
}

function shift(ms: number, span: CalendarSpan, sign: 1 | -1): number {
  const d = new Date(ms);
  const moved = new Date(
    d.getFullYear() + sign * span.years,
    d.getMonth() + sign * span.months,
    d.getDate() + sign * span.days,
    d.getHours(),
    d.getMinutes(),
    d.getSeconds(),
    d.getMilliseconds(),
  );
  return moved.getTime() + sign * span.hours * 3_600_000;
}

/**
 * `ms` moved back by `span`: the local date by years, months and days (overflowing as Go's
 * AddDate does: March 31 minus one month is March 2 or 3), then exact hours.
 */
export function subtractSpan(ms: number, span: CalendarSpan): number {
  return shift(ms, span, -1);
}

/** `ms` moved forward by `span` (see {@link subtractSpan}). */
export function addSpan(ms: number, span: CalendarSpan): number {
  return shift(ms, span, 1);
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/**
 * ISO 8601 week of a local date: weeks start on Monday, and week 1 is the week with the year's
 * first Thursday, so December 30 can be in week 1 of the next year and January 1 in week 52 or
 * 53 of the previous one.
 */
export function isoWeek(ms: number): { readonly year: number; readonly week: number } {
  const d = new Date(ms);
  const date = new Date(Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()));
  const weekday = date.getUTCDay() || 7;
  date.setUTCDate(date.getUTCDate() + 4 - weekday); // the Thursday of this week decides the year
  const yearStart = Date.UTC(date.getUTCFullYear(), 0, 1);
  return { year: date.getUTCFullYear(), week: Math.ceil(((date.getTime() - yearStart) / 86_400_000 + 1) / 7) };
}

/**
 * The local period `ms` falls in, named readably: `2024-03-31 02h`, `2024-03-31`, `2024-W13`,
 * `2024-03`, `2024`. Two times share a period exactly when their names are equal.
 */
export function periodKey(ms: number, unit: PeriodUnit): string {
  const d = new Date(ms);
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  switch (unit) {
    case 'hour':
      return `${day} ${pad(d.getHours())}h`;
    case 'day':
      return day;
    case 'week': {
      const w = isoWeek(ms);
      return `${w.year}-W${pad(w.week)}`;
    }
    case 'month':
      return `${d.getFullYear()}-${pad(d.getMonth() + 1)}`;
    case 'year':
      return String(d.getFullYear());
  }
}

/** The local period `ms` falls in, as times: from its first ms to the first ms after it. */
export function periodSpan(ms: number, unit: Exclude<PeriodUnit, 'hour'>): { readonly since: number; readonly until: number } {
  const d = new Date(ms);
  const [y, m, day] = [d.getFullYear(), d.getMonth(), d.getDate()];
  switch (unit) {
    case 'day':
      return { since: new Date(y, m, day).getTime(), until: new Date(y, m, day + 1).getTime() };
    case 'week': {
      const monday = day - ((d.getDay() + 6) % 7);
      return { since: new Date(y, m, monday).getTime(), until: new Date(y, m, monday + 7).getTime() };
    }
    case 'month':
      return { since: new Date(y, m, 1).getTime(), until: new Date(y, m + 1, 1).getTime() };
    case 'year':
      return { since: new Date(y, 0, 1).getTime(), until: new Date(y + 1, 0, 1).getTime() };
  }
}

const DATE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?\s*(Z|[+-]\d{2}:?\d{2})?$/i;

/**
 * Parses a date as people type it: `2024-03-31` (local midnight), `2024-03-31 14:00`,
 * `2024-03-31T14:00:05`, each in local time unless followed by `Z` or an offset (`+02:00`).
 * @returns ms since the epoch, or undefined when `text` is not such a date (or no such day)
 */
export function parseDate(text: string): number | undefined {
  const m = DATE.exec(text.trim());
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4] ?? '0', m[5] ?? '0', m[6] ?? '0'].map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) return undefined;
  const zone = m[7];
  let ms: number;
  if (zone === undefined) {
    const local = new Date(year, month - 1, day, hour, minute, second);
    if (local.getDate() !== day || local.getMonth() !== month - 1) return undefined;
    ms = local.getTime();
  } else {
    const utc = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
    if (utc.getUTCDate() !== day) return undefined;
    let offset = 0;
    if (zone.toUpperCase() !== 'Z') {
      const z = /^([+-])(\d{2}):?(\d{2})$/.exec(zone);
      if (!z) return undefined;
      offset = (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3])) * 60_000;
    }
    ms = utc.getTime() - offset;
  }
  return Number.isFinite(ms) ? ms : undefined;
}

/** A time as local ISO 8601 with its offset: `2024-03-31T03:30:00+02:00`. */
export function formatLocalIso(ms: number): string {
  const d = new Date(ms);
  const offset = -d.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  const abs = Math.abs(offset);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
    `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`
  );
}
