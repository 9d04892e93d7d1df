import { existsSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import path from 'node:path';
import type { ConfigFile } from './config-file.js';
import { parseFaultPlan, type FaultPlan } from '../blockstore/fault-injection.js';
import { UsageError } from '../errors.js';
import type { CephOptions } from '../endpoints/rbd-cli.js';
import type { S3StoreOptions } from '../blockstore/s3-store.js';
import { DEFAULT_BLOCK_SIZE } from '../objects/formats.js';
import type { ImagePolicy } from './retention-rules.js';

/** The system-wide config file, read when present and no other is named. */
export const SYSTEM_CONFIG_FILE = '/etc/backy2.yaml';

/** Where blocks live: a directory, or an S3 bucket. */
export type BlockStoreLocation =
  | { readonly type: 'file'; readonly path: string }
  | ({ readonly type: 's3' } & S3StoreOptions);

/** How long a lock lives without a heartbeat in a PostgreSQL catalog (`catalog.lease`). */
export const DEFAULT_LEASE_MS = 120_000;

/**
 * Which catalog: a SQLite file (one host), or a PostgreSQL database shared by many backup hosts.
 * A PostgreSQL URL never carries the password into messages: it comes from `passwordFile`, the
 * URL, PGPASSWORD or ~/.pgpass, and is stripped from every location shown.
 */
export type CatalogLocation =
  | { readonly type: 'sqlite'; readonly path: string }
  | {
      readonly type: 'postgresql';
      /** `postgresql://user@host[:port]/database[?sslmode=…]`. */
      readonly url: string;
      /** A file holding the password (private to its owner). */
      readonly passwordFile: string | undefined;
      /** How long a lock stays valid without a heartbeat, ms. @default 120 s */
      readonly leaseMs: number;
      /** Connections per process. @default 4 */
      readonly poolSize: number;
    };

/** Where the catalog and blocks live. */
export interface StoreLocation {
  /** The store directory (catalog file and, by default, the blocks). */
  readonly path: string;
  /** The SQLite catalog file of the store (the catalog itself when `catalog.type` is sqlite). */
  readonly catalogPath: string;
  readonly catalog: CatalogLocation;
  readonly blockStore: BlockStoreLocation;
}

/** When backups of some images are due, and when missing ones breach the SLA. */
export interface ImageSchedule {
  /** Image names or shell patterns (`vm-*`); a name without wildcards is expected to exist. */
  readonly images: readonly string[];
  /** A backup is due once the newest valid backup is this old (minus the tolerance), in ms. */
  readonly intervalMs: number;
  /** How much earlier than `interval` a backup counts as due, and later than it as late. @default interval / 10 */
  readonly toleranceMs: number;
  /** Age of the newest valid backup after which the image breaches its SLA (ms); none when undefined. */
  readonly slaMs: number | undefined;
  /** Where the image is backed up from, `{image}` replaced by its name (for wrapper scripts). */
  readonly source: string | undefined;
}

/** Every setting, defaults applied. */
export interface Config {
  /** The config file that was read, if any. */
  readonly file: string | undefined;
  readonly store: StoreLocation;
  /** This backup host's name in locks, versions and metrics (`host`). @default the host name */
  readonly host: string;
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
  /** Retention policies (`retention.policies`), in order: the first that matches an image applies. */
  readonly retentionPolicies: readonly ImagePolicy[];
  /** Backup schedules and SLAs (`schedules`), in order: the first that matches an image applies. */
  readonly schedules: readonly ImageSchedule[];
  /** Prometheus text file written after every command (`metrics.file`). */
  readonly metricsFile: string | undefined;
  /** Bytes of the block cache of `mount` and `nbd`. @default 256 MiB */
  readonly cacheBytes: number;
  /** Blocks read ahead for sequential readers of `mount` and `nbd`. @default 8 */
  readonly readAhead: number;
  /** Directory of copy-on-write spill files. @default /var/tmp */
  readonly spillDir: string;
  /** How the `rbd` and `qemu-img` commands reach Ceph (a missing field uses Ceph's own defaults). */
  readonly ceph: CephOptions;
  /** Faults to inject into the block store (tests and chaos runs: BACKY2_FAULTS, JSON). */
  readonly faults?: FaultPlan | undefined;
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
 * `~/.local/share/backy2`. Empty variables count as unset. `$BACKY2_FAULTS` (a JSON FaultPlan) injects block-store faults, for tests.
 * @throws {UsageError} when the config file is missing, unreadable or invalid (naming the key)
 * @example
 * const config = await loadConfig({ storePath: '/tmp/store' });
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<Config> {
  const env = options.env ?? process.env;
  // An empty path would name the current directory: a store made or used there by accident.
  if (options.storePath === '') throw new UsageError('The store path is empty', { hint: 'name a store directory with --store, or leave it out' });
  if (options.configFile === '') throw new UsageError('The config file name is empty', { hint: 'name a file with --config, or leave it out' });
  const explicit = options.configFile ?? (env.BACKY2_CONFIG || undefined);
  const file = explicit ?? (existsSync(SYSTEM_CONFIG_FILE) ? SYSTEM_CONFIG_FILE : undefined);
  // The YAML parser and schema are loaded only when there is a file (they cost memory).
  const parsed: ConfigFile = file === undefined ? {} : await (await import('./config-file.js')).readConfigFile(file);
  const override = options.storePath ?? (env.BACKY2_STORE || undefined);
  const config = resolveConfig(file, parsed, override);
  if (!env.BACKY2_FAULTS) return config;
  try {
    return { ...config, faults: parseFaultPlan(env.BACKY2_FAULTS) };
  } catch (err) {
    throw new UsageError(`Bad BACKY2_FAULTS: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/**
 * The configuration of a self-contained store directory with every default (no config file).
 * @param storeDir the store directory
 */
export function defaultConfig(storeDir: string): Config {
  return resolveConfig(undefined, {}, storeDir);
}

function blockStoreOf(spec: ConfigFile['blockStore'], storeDir: string): BlockStoreLocation {
  if (!spec) return { type: 'file', path: storeDir };
  if (spec.type === 'file') return { type: 'file', path: path.resolve(spec.path) };
  return {
    type: 's3',
    endpoint: spec.endpoint,
    region: spec.region,
    bucket: spec.bucket,
    prefix: spec.prefix,
    accessKeyId: spec.accessKeyId,
    secretAccessKey: spec.secretAccessKey,
    pathStyle: spec.pathStyle,
    concurrency: spec.concurrency,
    attempts: spec.retries === undefined ? undefined : spec.retries + 1,
    timeoutMs: spec.timeout,
  };
}

function catalogOf(spec: ConfigFile['catalog'], storeDir: string): CatalogLocation {
  const postgres = (url: string, rest: { passwordFile?: string | undefined; lease?: number | undefined; pool?: number | undefined } = {}): CatalogLocation => ({
    type: 'postgresql',
    url,
    passwordFile: rest.passwordFile === undefined ? undefined : path.resolve(rest.passwordFile),
    leaseMs: rest.lease ?? DEFAULT_LEASE_MS,
    poolSize: rest.pool ?? 4,
  });
  if (spec === undefined) return { type: 'sqlite', path: path.join(storeDir, 'catalog.sqlite') };
  if (typeof spec === 'string') return isPostgresUrl(spec) ? postgres(spec) : { type: 'sqlite', path: path.resolve(spec) };
  if ('url' in spec) return postgres(spec.url, spec);
  return { type: 'sqlite', path: path.resolve(spec.path) };
}

/**
 * A catalog named on the command line (`db copy --to`): a `postgresql://` URL (password from
 * `passwordFile`, the URL, PGPASSWORD or ~/.pgpass) or a SQLite file.
 */
export function catalogLocation(value: string, passwordFile?: string): CatalogLocation {
  if (isPostgresUrl(value)) return catalogOf({ url: value, passwordFile }, '');
  if (passwordFile !== undefined) throw new UsageError('A password file is only for a postgresql:// catalog');
  return catalogOf(value, '');
}

/** True for a `postgresql://` (or `postgres://`) URL. */
export function isPostgresUrl(value: string): boolean {
  return /^postgres(ql)?:\/\//.test(value);
}

function resolveConfig(file: string | undefined, parsed: ConfigFile, override: string | undefined): Config {
  const storeDir = path.resolve(override ?? parsed.store ?? path.join(homedir(), '.local', 'share', 'backy2'));
  let store: StoreLocation;
  if (override !== undefined) {
    const catalogPath = path.join(storeDir, 'catalog.sqlite');
    store = { path: storeDir, catalogPath, catalog: { type: 'sqlite', path: catalogPath }, blockStore: { type: 'file', path: storeDir } };
  } else {
    const catalog = catalogOf(parsed.catalog, storeDir);
    const catalogPath = catalog.type === 'sqlite' ? catalog.path : path.join(storeDir, 'catalog.sqlite');
    store = { path: storeDir, catalogPath, catalog, blockStore: blockStoreOf(parsed.blockStore, storeDir) };
  }
  return {
    file,
    store,
    host: parsed.host ?? hostname(),
    blockSize: parsed.backup?.blockSize ?? DEFAULT_BLOCK_SIZE,
    readers: parsed.backup?.readers ?? 4,
    writers: parsed.backup?.writers ?? 8,
    hashWorkers: parsed.backup?.hashWorkers ?? 2,
    hintSample: parsed.backup?.hintSample ?? 32,
    minRemoveAgeMs: parsed.retention?.minAge ?? 6 * 24 * 3600 * 1000,
    retentionPolicies: (parsed.retention?.policies ?? []).map(({ images, ...rules }) => ({ images, rules })),
    schedules: (parsed.schedules ?? []).map((s) => ({
      images: s.images,
      intervalMs: s.interval,
      toleranceMs: s.tolerance ?? Math.round(s.interval / 10),
      slaMs: s.sla,
      source: s.source,
    })),
    metricsFile: parsed.metrics?.file === undefined ? undefined : path.resolve(parsed.metrics.file),
    cacheBytes: parsed.mount?.cacheSize ?? 256 << 20,
    readAhead: parsed.mount?.readAhead ?? 8,
    spillDir: path.resolve(parsed.mount?.spillDir ?? '/var/tmp'),
    ceph: {
      conf: parsed.ceph?.conf,
      id: parsed.ceph?.id,
      keyring: parsed.ceph?.keyring,
      timeoutMs: parsed.ceph?.timeout ?? 120_000,
    },
  };
}
