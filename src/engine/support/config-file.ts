import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { UsageError, errnoCode } from '../errors.js';
import { MAX_BLOCK_SIZE, MIN_BLOCK_SIZE } from '../objects/formats.js';
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

/** The config file's schema: every key optional, unknown keys rejected. */
const fileSchema = z.strictObject({
  store: z.string().min(1).optional(),
  catalog: z.strictObject({ path: z.string().min(1) }).optional(),
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
  retention: z.strictObject({ minAge: duration.optional() }).optional(),
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
