/**
 * What a benchmark run costs besides its time: CPU seconds of the whole machine (every process
 * and the kernel, from /proc/stat) and of one server process, and a process's peak RSS. Linux only.
 */
import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc's CPU figures (USER_HZ, 100 on Linux). */
const TICKS = 100;

/** CPU seconds (user + system) a process has used so far, all its threads. */
export function cpuSeconds(pid: number): number {
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

/** CPU seconds the whole machine has been busy so far (all CPUs; idle and iowait excluded). */
export function machineBusySeconds(): number {
  const [, ...fields] = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/);
  const v = fields.map(Number);
  // user nice system idle iowait irq softirq steal
  return ((v[0] ?? 0) + (v[1] ?? 0) + (v[2] ?? 0) + (v[5] ?? 0) + (v[6] ?? 0) + (v[7] ?? 0)) / TICKS;
}

/** Peak resident memory of a process so far (VmHWM), in MiB. */
export function peakRssMiB(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

/** What one measured piece of work cost. */
export interface Cost {
  readonly seconds: number;
  /** CPU seconds of the whole machine during the work. */
  readonly machineCpu: number;
  /** CPU seconds of the server process during the work (0 without one). */
  readonly serverCpu: number;
}

/** Runs `work` and measures it; `serverPid` names the process serving it, if any. */
export async function measure(work: () => unknown, serverPid?: number): Promise<Cost> {
  const server0 = serverPid ? cpuSeconds(serverPid) : 0;
  const machine0 = machineBusySeconds();
  const t = process.hrtime.bigint();
  await work();
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  return { seconds, machineCpu: machineBusySeconds() - machine0, serverCpu: serverPid ? cpuSeconds(serverPid) - server0 : 0 };
}

/** The median of some figures (the upper one of an even count); NaN for none. */
export function median(values: readonly number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
}

/** The run with the median time. */
export function medianCost(costs: Cost[]): Cost {
  const sorted = [...costs].sort((a, b) => a.seconds - b.seconds);
  const median = sorted[Math.floor(sorted.length / 2)];
  if (!median) throw new Error('no runs');
  return median;
}

/** `1234 MB/s, 0.52 CPU-s/GB (server 0.31)` for `bytes` moved at `cost`. */
export function describeCost(bytes: number, cost: Cost): string {
  const gb = bytes / 1e9;
  const server = cost.serverCpu > 0 ? ` (server ${(cost.serverCpu / gb).toFixed(2)})` : '';
  return `${(bytes / cost.seconds / 1e6).toFixed(0)} MB/s, ${(cost.machineCpu / gb).toFixed(2)} CPU-s/GB${server}`;
}
