import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';

/** Identifies a process across pid reuse and reboots: pid, host, and a boot-bound start stamp. */
export interface Holder {
  readonly pid: number;
  readonly host: string;
  /** `<boot id>:<start time in clock ticks>`, empty when /proc is not available. */
  readonly stamp: string;
}

/** How long a lock of a process on another host stays valid without a heartbeat. */
export const REMOTE_HOLDER_TIMEOUT_MS = 10 * 60 * 1000;

/** Heartbeat period of lock holders. */
export const HEARTBEAT_INTERVAL_MS = 60 * 1000;

let bootId: string | undefined;
let pidNamespace: string | undefined;

/** This process's pid namespace (`pid:[4026531836]`), empty when unknown: pids mean something only inside it. */
export function currentPidNamespace(): string {
  if (pidNamespace === undefined) {
    try {
      pidNamespace = readlinkSync('/proc/self/ns/pid');
    } catch {
      pidNamespace = '';
    }
  }
  return pidNamespace;
}

function readBootId(): string {
  if (bootId === undefined) {
    try {
      bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      bootId = '';
    }
  }
  return bootId;
}

function startTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime); the command name (field 2) may contain spaces, so count after ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19];
  } catch {
    return undefined;
  }
}

/**
 * The holder identity of this process.
 * @param host this backup host's name (config `host`) @default the host name
 */
export function currentHolder(host: string = hostname()): Holder {
  const ticks = startTicks(process.pid);
  return { pid: process.pid, host, stamp: ticks === undefined ? '' : `${readBootId()}:${ticks}` };
}

/**
 * Whether the process of a holder on this very machine (same host name, boot and pid namespace)
 * is gone. Undefined when that cannot be told here: the holder runs elsewhere (another host, a
 * container with its own pids), so only its lease tells.
 */
export function isLocalHolderGone(holder: Holder & { readonly pidNamespace: string }, self: Holder): boolean | undefined {
  if (holder.host !== self.host || holder.pidNamespace === '' || holder.pidNamespace !== currentPidNamespace()) return undefined;
  const boot = holder.stamp.split(':')[0] ?? '';
  if (holder.stamp === '' || boot !== readBootId()) return undefined;
  const ticks = startTicks(holder.pid);
  return ticks === undefined || holder.stamp !== `${boot}:${ticks}`;
}

/**
 * Whether the process that took a lock still runs.
 * @param holder the lock's holder
 * @param heartbeatAt the lock's last heartbeat, ms since the epoch
 * @param now current time, ms since the epoch
 * @param self this process's holder identity (its host name decides what is local)
 */
export function isHolderAlive(holder: Holder, heartbeatAt: number, now: number, self: Holder = currentHolder()): boolean {
  if (holder.host !== self.host) return now - heartbeatAt < REMOTE_HOLDER_TIMEOUT_MS;
  const ticks = startTicks(holder.pid);
  if (ticks === undefined) return false;
  if (holder.stamp === '') return true;
  return holder.stamp === `${readBootId()}:${ticks}`;
}
