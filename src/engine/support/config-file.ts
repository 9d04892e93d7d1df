import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { UsageError, errnoCode } from '../errors.js';
import { MAX_BLOCK_SIZE, MIN_BLOCK_SIZE } from '../objects/formats.js';
import { parseSpan } from './calendar.js';
import { keepsNothing } from './retention-rules.js';
import { parseDuration, parseSize } from './units.js';

const size = z.union([z.number().int().nonnegative(), z.string()]).transform((value, ctx) => {
  const n = typeof value === 'number' ? value : parseSize(value);
  if (n === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${String(value)}" is not a size (use e.g. 4MiB)` });
    return z.NEVER;
  }
  return n;
});

const duration = z.union([z.number().nonnegative(), z.string()]).transform((value, ctx) => {
  const ms = typeof value === 'number' ? value * 1000 : parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${String(value)}" is not a duration (use e.g. 6d, 12h, 30m)` });
    return z.NEVER;
  }
  return ms;
});

const count = (min: number, max: number) => z.number().int().min(min).max(max);

/** Image names or shell patterns: one, or a list. */
const images = z
  .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
  .transform((value) => (typeof value === 'string' ? [value] : value));

/** A retention count: a whole number, or `unlimited`. */
const keepCount = z.union([z.number().int().nonnegative(), z.literal('unlimited')]).transform((value) => (value === 'unlimited' ? Infinity : value));

/** A span of calendar units for keepWithin: 7d, 36h, 2w, 6mo, 1y, 1y6mo. */
const span = z.string().transform((value, ctx) => {
  const parsed = parseSpan(value);
  if (!parsed) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a span of y, mo, w, d, h (e.g. 7d, 36h, 1y6mo; months are mo)` });
    return z.NEVER;
  }
  return parsed;
});

const TAG = /^[A-Za-z0-9][A-Za-z0-9._:+=-]{0,63}$/;

/** keepTags: each entry is a tag or comma-separated tags that must all be present. */
const tagLists = z
  .array(z.string().transform((value) => value.split(',').map((t) => t.trim())))
  .refine((lists) => lists.every((tags) => tags.length > 0 && tags.every((t) => TAG.test(t))), 'must be tags (letters, digits and . _ : + = -), or comma-separated tags that must all be present');

const policy = z
  .strictObject({
    images,
    keepLast: keepCount.optional(),
    keepHourly: keepCount.optional(),
    keepDaily: keepCount.optional(),
    keepWeekly: keepCount.optional(),
    keepMonthly: keepCount.optional(),
    keepYearly: keepCount.optional(),
    keepWithin: span.optional(),
    keepTags: tagLists.optional(),
  })
  .refine((p) => !keepsNothing(p), 'keeps nothing: give a keep rule (keepLast: unlimited keeps every version)');

const schedule = z
  .strictObject({
    images,
    interval: duration.refine((ms) => ms > 0, 'must be more than 0'),
    tolerance: duration.optional(),
    sla: duration.optional(),
    source: z.string().min(1).optional(),
  })
  .refine((s) => s.tolerance === undefined || s.tolerance < s.interval, { message: 'tolerance must be shorter than interval', path: ['tolerance'] })
  .refine((s) => s.sla === undefined || s.sla >= s.interval, { message: 'sla must be at least interval', path: ['sla'] });

/** The config file's schema: every key optional, unknown keys rejected. */
const fileSchema = z.strictObject({
  store: z.string().min(1).optional(),
  catalog: z
    .union([
      z.string().min(1),
      z.strictObject({ path: z.string().min(1) }),
      z.strictObject({
        url: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL'),
        passwordFile: z.string().min(1).optional(),
        lease: duration.refine((ms) => ms >= 2000 && ms <= 3_600_000, 'must be from 2s to 1h').optional(),
        pool: count(1, 64).optional(),
      }),
    ])
    .optional(),
  host: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be a host name (letters, digits, . _ -)').optional(),
  blockStore: z
    .discriminatedUnion('type', [
      z.strictObject({ type: z.literal('file'), path: z.string().min(1) }),
      z.strictObject({
        type: z.literal('s3'),
        endpoint: z.url().optional(),
        region: z.string().min(1).optional(),
        bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be a valid bucket name'),
        prefix: z.string().regex(/^([0-9a-z._-]+\/)*$/, 'must be lowercase path segments ending in /').optional(),
        accessKeyId: z.string().min(1).optional(),
        secretAccessKey: z.string().min(1).optional(),
        pathStyle: z.boolean().optional(),
        concurrency: count(1, 256).optional(),
        retries: count(0, 20).optional(),
        timeout: duration.optional(),
      }),
    ])
    .optional(),
  backup: z
    .strictObject({
      blockSize: size
        .refine((n) => n >= MIN_BLOCK_SIZE && n <= MAX_BLOCK_SIZE && (n & (n - 1)) === 0, 'must be a power of two from 64KiB to 64MiB')
        .optional(),
      readers: count(1, 64).optional(),
      writers: count(1, 64).optional(),
      hashWorkers: count(1, 16).optional(),
      hintSample: count(0, 1_000_000).optional(),
    })
    .optional(),
  retention: z.strictObject({ minAge: duration.optional(), policies: z.array(policy).optional() }).optional(),
  schedules: z.array(schedule).optional(),
  metrics: z.strictObject({ file: z.string().min(1).optional() }).optional(),
  ceph: z
    .strictObject({
      conf: z.string().min(1).optional(),
      id: z.string().min(1).optional(),
      keyring: z.string().min(1).optional(),
      timeout: duration.optional(),
    })
    .optional(),
  mount: z
    .strictObject({
      cacheSize: size.optional(),
      readAhead: count(0, 256).optional(),
      spillDir: z.string().min(1).optional(),
    })
    .optional(),
});

/** A parsed and checked config file. */
export type ConfigFile = z.output<typeof fileSchema>;

/**
 * Reads and checks a YAML config file.
 * @throws {UsageError} when it is missing, unreadable, not YAML, or has an unknown key or bad value (named)
 */
export function readConfigFile(file: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const why = errnoCode(err) === 'ENOENT' ? 'no such file' : err instanceof Error ? err.message : String(err);
    throw new UsageError(`Cannot read config "${file}": ${why}`, { cause: err });
  }
  const doc = parseDocument(text, { prettyErrors: false });
  const yamlError = doc.errors[0];
  if (yamlError) {
    throw new UsageError(`Bad config "${file}": not valid YAML: ${yamlError.message.split('\n')[0] ?? ''}`);
  }
  const data: unknown = doc.toJS() ?? {};
  const result = fileSchema.safeParse(data);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = issue?.path.join('.') || '(top level)';
    let message = issue?.message ?? 'invalid';
    if (issue?.code === 'unrecognized_keys') {
      const keys = issue.keys.map((k) => (issue.path.length ? `${issue.path.join('.')}.${k}` : k));
      throw new UsageError(`Bad config "${file}": unknown key ${keys.map((k) => `"${k}"`).join(', ')}`);
    }
    if (issue?.code === 'invalid_type') message = `expected ${issue.expected}`;
    throw new UsageError(`Bad config "${file}": key "${key}": ${message}`);
  }
  return result.data;
}
