import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { IoError, UsageError } from '../errors.js';
import { parseHints, type Extent } from './hints.js';
import { exitOf, rbdError, runRbd, spawnRbd, type RbdSpec } from './rbd-cli.js';
import { DiffStreamReader, type DiffRecord } from './rbd-diff-format.js';
import { NbdReader } from './nbd-reader.js';
import type { BlockSource } from './endpoints.js';

/** Prefix of the snapshots `--snapshot auto` creates and removes. */
export const AUTO_SNAPSHOT_PREFIX = 'backy2-';

/** Options of {@link openRbdSource}. */
export interface RbdSourceOptions {
  /** Create this snapshot and back it up (`--snapshot auto`); removed again if the backup fails. */
  readonly createSnapshot?: string | undefined;
  /** Directory for the socket of random reads. */
  readonly tmpDir: string;
}

interface Plan {
  /** Snapshot the data stream is relative to, or null for all allocated data. */
  readonly fromSnap: string | null;
  /** Extents the stream delivers, ascending, merged. */
  readonly extents: readonly Extent[];
}

/**
 * An RBD snapshot as a backup source. The data of changed (or, without a usable base snapshot,
 * allocated) objects comes from one `rbd export-diff --whole-object` stream, read in ascending
 * order as the backup asks; the few blocks outside it (verification samples, blocks to heal)
 * are read at random through one qemu-nbd serving the snapshot. Unallocated ranges are holes.
 * @throws {UsageError} without a snapshot, or for a bad name
 * @throws {NotFoundError} when the image or snapshot does not exist
 */
export async function openRbdSource(spec: RbdSpec, options: RbdSourceOptions): Promise<RbdSource> {
  let snapshot = spec.snapshot;
  let created = false;
  if (!snapshot) {
    if (!options.createSnapshot) {
      throw new UsageError(`Back up ${spec.location} from a snapshot: name one (rbd:POOL/IMAGE@SNAPSHOT) or use --snapshot auto`);
    }
    snapshot = options.createSnapshot;
    await runRbd(['snap', 'create', `${spec.pool}/${spec.image}@${snapshot}`], spec.ceph, spec.location);
    created = true;
  }
  const at = { ...spec, snapshot, location: `rbd:${spec.pool}/${spec.image}@${snapshot}` };
  try {
    // Each rbd command connects to the cluster (about 30 ms): the two run at once.
    const [infoJson, snaps] = await Promise.all([runRbd(['info', '--format', 'json', `${spec.pool}/${spec.image}@${snapshot}`], spec.ceph, at.location), listSnapshots(spec, at.location)]);
    const info = JSON.parse(infoJson) as { size: number; id?: string };
    const snapId = snaps.find((s) => s.name === snapshot)?.id;
    const identity = info.id !== undefined && snapId !== undefined ? `${info.id}@${snapId}` : undefined;
    return new RbdSource(at, info.size, created, options.tmpDir, identity, snaps);
  } catch (err) {
    if (created) await runRbd(['snap', 'rm', `${spec.pool}/${spec.image}@${snapshot}`], spec.ceph, at.location).catch(() => undefined);
    throw err;
  }
}

/** An RBD snapshot as `rbd snap ls` lists it; ids are never reused within an image. */
interface SnapshotInfo {
  readonly id: number;
  readonly name: string;
}

async function listSnapshots(spec: RbdSpec, what: string): Promise<SnapshotInfo[]> {
  return JSON.parse(await runRbd(['snap', 'ls', '--format', 'json', `${spec.pool}/${spec.image}`], spec.ceph, what)) as SnapshotInfo[];
}

export class RbdSource implements BlockSource {
  readonly location: string;
  readonly size: number;
  readonly snapshot: string;
  /** `<image id>@<snapshot id>`: a snapshot deleted and made again under the same name differs. */
  readonly snapshotId: string | undefined;
  readonly #spec: RbdSpec;
  readonly #created: boolean;
  readonly #tmpDir: string;
  #plan: Plan | undefined;
  /** Index of the plan extent that the last hole check looked at. */
  #cursor = 0;
  #stream: { child: ChildProcess; reader: DiffStreamReader; started: boolean; record: DiffRecord | undefined; pos: number } | undefined;
  #queue: Promise<void> = Promise.resolve();
  #random: Promise<RandomReader> | undefined;
  /** The image's snapshots when the source was opened (the one read included). */
  readonly #snapshots: readonly SnapshotInfo[];

  constructor(spec: RbdSpec & { snapshot: string }, size: number, created: boolean, tmpDir: string, snapshotId: string | undefined, snapshots: readonly SnapshotInfo[]) {
    this.#spec = spec;
    this.#snapshots = snapshots;
    this.snapshotId = snapshotId;
    this.location = spec.location;
    this.snapshot = spec.snapshot;
    this.size = size;
    this.#created = created;
    this.#tmpDir = tmpDir;
  }

  get #name(): string {
    return `${this.#spec.pool}/${this.#spec.image}@${this.snapshot}`;
  }

  /**
   * Plans the read: when the very snapshot the base was read from still exists (same image, same
   * snapshot id: a name alone may have been deleted and made again, or belong to a recreated
   * image), the objects changed since it, which become the backup's hints; otherwise every
   * allocated object (the rest are holes). A base that cannot be proven this way, e.g. recorded
   * by an older backy2 without the ids, is never diffed against.
   * @returns the changed extents, or undefined when there is no usable base snapshot
   */
  async changedExtents(base: { readonly snapshot: string | null; readonly snapshotId: string | null; readonly source: string | null } | null): Promise<Extent[] | undefined> {
    // The listing made when the source was opened, moments ago: a base snapshot removed since
    // makes rbd diff and export-diff fail, which fails the backup. One removed and made again
    // under the same name within those moments would not be noticed (nor was it when the
    // listing came right before rbd diff: the window is as short).
    const imageId = this.snapshotId?.split('@')[0];
    const baseSnapshot = base?.source?.startsWith(`rbd:${this.#spec.pool}/${this.#spec.image}@`) ? base.snapshot : null;
    const current = this.#snapshots.find((s) => s.name === baseSnapshot);
    const proven = imageId !== undefined && current !== undefined && base?.snapshotId === `${imageId}@${current.id}`;
    const usable = baseSnapshot !== null && baseSnapshot !== this.snapshot && proven;
    const fromSnap = usable ? baseSnapshot : null;
    // While rbd diff lists the changes, the processes that deliver the data connect to the
    // cluster (each takes 30-80 ms to start): the export-diff stream, and for an incremental
    // the NBD server its verification samples are read through.
    this.#stream ??= this.#startStream(fromSnap);
    if (usable) this.#startRandomReads();
    const args = ['diff', '--whole-object', '--format', 'json', ...(fromSnap !== null ? ['--from-snap', fromSnap] : []), this.#name];
    const extents = parseHints(JSON.parse(await runRbd(args, this.#spec.ceph, this.location)), `of rbd diff ${this.location}`);
    this.#plan = { fromSnap, extents: merge(extents) };
    return usable ? extents : undefined;
  }

  mayHaveData(offset: number, length: number): boolean {
    const plan = this.#plan;
    if (!plan || plan.fromSnap !== null) return true;
    const extents = plan.extents;
    if (this.#cursor > 0 && (extents[this.#cursor - 1]?.offset ?? 0) > offset) this.#cursor = 0;
    while (this.#cursor < extents.length && end(extents[this.#cursor] as Extent) <= offset) this.#cursor++;
    const next = extents[this.#cursor];
    return next !== undefined && next.offset < offset + length;
  }

  read(offset: number, into: Uint8Array): Promise<void> {
    // Ranges outside the stream (samples, blocks to heal) are read at once, in parallel.
    if (!this.#touchesStream(offset, into.length)) return this.#readRandom(offset, into);
    // One stream, consumed in order: stream reads run one after the other (they come in ascending order).
    const run = this.#queue.then(() => this.#read(offset, into));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #touchesStream(offset: number, length: number): boolean {
    const e = this.#plan?.extents[this.#firstEndingAfter(offset)];
    return e !== undefined && e.offset < offset + length;
  }

  /** Binary search: index of the first extent ending after `offset` (extents are sorted and disjoint). */
  #firstEndingAfter(offset: number): number {
    const extents = this.#plan?.extents ?? [];
    let lo = 0;
    let hi = extents.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (end(extents[mid] as Extent) <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  async #read(offset: number, into: Uint8Array): Promise<void> {
    const endAt = offset + into.length;
    let at = offset;
    const extents = this.#plan?.extents ?? [];
    for (let k = this.#firstEndingAfter(offset); k < extents.length; k++) {
      const e = extents[k] as Extent;
      if (e.offset >= endAt) break;
      if (e.offset > at) {
        await this.#readRandom(at, into.subarray(at - offset, e.offset - offset));
        at = e.offset;
      }
      const to = Math.min(end(e), endAt);
      await this.#readStream(at, into.subarray(at - offset, to - offset));
      at = to;
    }
    if (at < endAt) await this.#readRandom(at, into.subarray(at - offset));
  }

  /** Copies [offset, offset + into.length) from the export-diff stream; gaps and `z` records read as zeros. */
  async #readStream(offset: number, into: Uint8Array): Promise<void> {
    // Only a planned extent routes a read here, and planning (changedExtents) started the stream.
    const s = this.#stream;
    if (!s) throw new Error(`Internal error: ${this.location} read from its export-diff stream before rbd diff planned it`);
    if (!s.started) {
      await s.reader.start();
      s.started = true;
    }
    const endAt = offset + into.length;
    let at = offset;
    while (at < endAt) {
      if (!s.record) {
        s.record = await s.reader.next();
        if (s.record.type !== 'end') s.pos = s.record.offset;
      }
      const r = s.record;
      if (r.type === 'end' || r.offset >= endAt) {
        into.fill(0, at - offset);
        return;
      }
      const rEnd = r.offset + r.length;
      if (rEnd <= at) {
        // A record before what is asked: drop the rest of its data.
        if (r.type === 'w') await s.reader.readData(null, rEnd - s.pos);
        s.record = undefined;
        continue;
      }
      if (r.offset > at) {
        into.fill(0, at - offset, r.offset - offset);
        at = r.offset;
      }
      if (r.type === 'w' && s.pos < at) await s.reader.readData(null, at - s.pos);
      const to = Math.min(rEnd, endAt);
      if (r.type === 'w') await s.reader.readData(into.subarray(at - offset, to - offset), to - at);
      else into.fill(0, at - offset, to - offset);
      s.pos = to;
      at = to;
      if (to === rEnd) s.record = undefined;
    }
  }

  #startStream(fromSnap: string | null) {
    const args = ['export-diff', '--no-progress', '--whole-object', ...(fromSnap !== null ? ['--from-snap', fromSnap] : []), this.#name, '-'];
    const child = spawnRbd(args, this.#spec.ceph);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = exitOf(child, this.location);
    // Started before it is read (or never read, when a backup fails first): its failure is
    // reported by the read that awaits it, not as an unhandled rejection.
    exited.catch(() => undefined);
    const stdout = child.stdout;
    if (!stdout) throw new IoError(`Cannot read ${this.location}: no output stream`);
    const guarded = (async function* () {
      yield* stdout as AsyncIterable<Buffer>;
      const code = await exited;
      if (code !== 0) throw rbdError(stderr, code, `rbd export-diff of ${child.spawnargs.at(-2) ?? ''}`, 'export-diff');
    })();
    return { child, reader: new DiffStreamReader(guarded, this.location), started: false, record: undefined as DiffRecord | undefined, pos: 0 };
  }

  /** Reads a range outside the stream through the snapshot's NBD server. */
  async #readRandom(offset: number, into: Uint8Array): Promise<void> {
    if (into.length === 0) return;
    await (await this.#startRandomReads()).reader.read(offset, into);
  }

  /** The random reader, started on first use; a failure to start is reported by the reads that need it. */
  #startRandomReads(): Promise<RandomReader> {
    if (!this.#random) {
      this.#random = this.#startRandomReader();
      this.#random.catch(() => undefined);
    }
    return this.#random;
  }

  /**
   * Serves the snapshot with one `qemu-nbd` (its rbd driver) on a private unix socket, for all
   * the random reads of this backup: a `qemu-img` process per range cost about 60 ms each.
   */
  async #startRandomReader(): Promise<RandomReader> {
    const base = path.join(this.#tmpDir, 'backy2-rbd-');
    // A unix socket path has at most 107 bytes.
    const dir = await fsp.mkdtemp(base.length > 80 ? path.join(tmpdir(), 'backy2-rbd-') : base);
    const socket = path.join(dir, 'nbd.sock');
    const s = this.#spec;
    const opts = [
      'driver=raw',
      'file.driver=rbd',
      `file.pool=${s.pool}`,
      `file.image=${s.image}`,
      `file.snapshot=${this.snapshot}`,
      ...(s.ceph.conf ? [`file.conf=${s.ceph.conf}`] : []),
      ...(s.ceph.id ? [`file.user=${s.ceph.id}`] : []),
    ].join(',');
    const server = spawn('qemu-nbd', ['--read-only', '--persistent', '--socket', socket, '--image-opts', opts], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    server.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const failed = new Promise<never>((_, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'ENOENT' ? new UsageError('Reading unchanged RBD blocks needs qemu-nbd with the rbd driver (Debian packages qemu-utils and qemu-block-extra)') : err),
      );
      server.once('exit', (code) => reject(new IoError(`Cannot read ${this.location}: qemu-nbd exited (${code ?? 'killed'}): ${stderr.trim().split('\n').pop() ?? ''}`)));
    });
    failed.catch(() => undefined);
    try {
      const reader = await Promise.race([connectWhenListening(socket, this.location), failed]);
      return { server, reader, dir };
    } catch (err) {
      server.kill();
      await fsp.rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * After the backup: on success, drop the backy2 snapshots of the image's earlier versions
   * (never one that no version of this image recorded); on failure, the one made for it.
   */
  async finish(committed: boolean, earlier: readonly string[]): Promise<void> {
    if (!this.#created) return;
    const image = `${this.#spec.pool}/${this.#spec.image}`;
    if (!committed) {
      await runRbd(['snap', 'rm', `${image}@${this.snapshot}`], this.#spec.ceph, this.location).catch(() => undefined);
      return;
    }
    const snaps = JSON.parse(await runRbd(['snap', 'ls', '--format', 'json', image], this.#spec.ceph, this.location)) as { name: string }[];
    for (const snap of snaps) {
      if (snap.name.startsWith(AUTO_SNAPSHOT_PREFIX) && snap.name !== this.snapshot && earlier.includes(snap.name)) {
        await runRbd(['snap', 'rm', `${image}@${snap.name}`], this.#spec.ceph, this.location);
      }
    }
  }

  async close(): Promise<void> {
    const child = this.#stream?.child;
    if (child && child.exitCode === null) child.kill();
    const random = await this.#random?.catch(() => undefined);
    if (random) {
      await random.reader.close().catch(() => undefined);
      random.server.kill();
      await fsp.rm(random.dir, { recursive: true, force: true });
    }
  }
}

/** The snapshot's NBD server and our connection to it. */
interface RandomReader {
  readonly server: ChildProcess;
  readonly reader: NbdReader;
  readonly dir: string;
}

/** Connects once the server listens (qemu-nbd makes its socket after opening the image). */
async function connectWhenListening(socket: string, what: string): Promise<NbdReader> {
  for (let waited = 0; ; waited += 20) {
    try {
      return await NbdReader.connect(socket, what);
    } catch (err) {
      const code = (err as { cause?: NodeJS.ErrnoException }).cause?.code;
      if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || waited > 60_000) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

function end(e: Extent): number {
  return e.offset + e.length;
}

/** Sorted, overlapping or touching extents merged. */
function merge(extents: readonly Extent[]): Extent[] {
  const sorted = [...extents].sort((a, b) => a.offset - b.offset);
  const out: Extent[] = [];
  for (const e of sorted) {
    const last = out[out.length - 1];
    if (last && e.offset <= end(last)) out[out.length - 1] = { offset: last.offset, length: Math.max(end(last), end(e)) - last.offset, exists: true };
    else out.push({ ...e, exists: true });
  }
  return out;
}
