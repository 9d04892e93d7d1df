import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { UsageError, errnoCode } from './errors.js';
import { DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE } from './formats.js';
import { parseDuration, parseSize } from './units.js';

/** The system-wide config file, read when present and no other is named. */
export const SYSTEM_CONFIG_FILE = '/etc/backy2.yaml';

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

const fileSchema = z.strictObject({
  store: z.string().min(1).optional(),
  catalog: z.strictObject({ path: z.string().min(1) }).optional(),
  blockStore: z
    .discriminatedUnion('type', [z.strictObject({ type: z.literal('file'), path: z.string().min(1) })])
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
});

/** Where the catalog and blocks live. */
export interface StoreLocation {
  /** The store directory (catalog file and, by default, the blocks). */
  readonly path: string;
  readonly catalogPath: string;
  readonly blockStore: { readonly type: 'file'; readonly path: string };
}

/** Every setting, defaults applied. */
export interface Config {
  /** The config file that was read, if any. */
  readonly file: string | undefined;
  readonly store: StoreLocation;
  /** Block size for new images. @default 4 MiB */
  readonly blockSize: number;
  /** Parallel source reads. @default 4 */
  readonly readers: number;
  /** Parallel block-store writes. @default 8 */
  readonly writers: number;
  /** Worker threads hashing blocks. @default 2 */
  readonly hashWorkers: number;
  /** Unhinted blocks re-read to verify hints. @default 32 */
  readonly hintSample: number;
  /** Versions younger than this are only removed with --force. @default 6 days */
  readonly minRemoveAgeMs: number;
}

/** Inputs of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** `--config FILE`. */
  readonly configFile?: string | undefined;
  /** `--store PATH`: a self-contained store directory, overriding the config's locations. */
  readonly storePath?: string | undefined;
  /** Environment to read BACKY2_CONFIG and BACKY2_STORE from. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * Resolves the configuration: `--config`, else `$BACKY2_CONFIG`, else /etc/backy2.yaml when it
 * exists; the store is `--store`, else `$BACKY2_STORE`, else the config's, else
 * `~/.local/share/backy2`.
 * @throws {UsageError} when the config file is missing, unreadable or invalid (naming the key)
 * @example
 * const config = loadConfig({ storePath: '/tmp/store' });
 */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const explicit = options.configFile ?? (env.BACKY2_CONFIG || undefined);
  const file = explicit ?? (existsSync(SYSTEM_CONFIG_FILE) ? SYSTEM_CONFIG_FILE : undefined);
  const parsed = file === undefined ? {} : readConfigFile(file);

  const override = options.storePath ?? (env.BACKY2_STORE || undefined);
  const storeDir = path.resolve(override ?? parsed.store ?? path.join(homedir(), '.local', 'share', 'backy2'));
  const store: StoreLocation =
    override !== undefined
      ? { path: storeDir, catalogPath: path.join(storeDir, 'catalog.sqlite'), blockStore: { type: 'file', path: storeDir } }
      : {
          path: storeDir,
          catalogPath: path.resolve(parsed.catalog?.path ?? path.join(storeDir, 'catalog.sqlite')),
          blockStore: parsed.blockStore ? { type: 'file', path: path.resolve(parsed.blockStore.path) } : { type: 'file', path: storeDir },
        };
  return {
    file,
    store,
    blockSize: parsed.backup?.blockSize ?? DEFAULT_BLOCK_SIZE,
    readers: parsed.backup?.readers ?? 4,
    writers: parsed.backup?.writers ?? 8,
    hashWorkers: parsed.backup?.hashWorkers ?? 2,
    hintSample: parsed.backup?.hintSample ?? 32,
    minRemoveAgeMs: parsed.retention?.minAge ?? 6 * 24 * 3600 * 1000,
  };
}

function readConfigFile(file: string): z.output<typeof fileSchema> {
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
