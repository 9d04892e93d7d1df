/** What a command may touch of the outside world; tests pass captured streams. */
export interface CliIo {
  /** Writes to standard output. */
  readonly stdout: (text: string) => void;
  /** Writes to standard error. */
  readonly stderr: (text: string) => void;
  /** Whether standard error is a terminal (progress bars are drawn only then). */
  readonly stderrIsTTY: boolean;
  readonly env: NodeJS.ProcessEnv;
  /** Fires on SIGINT/SIGTERM. */
  readonly signal?: AbortSignal | undefined;
}

/** Options every command accepts. */
export interface Globals {
  /** `--store PATH`. */
  readonly store?: string | undefined;
  /** `--config FILE`. */
  readonly config?: string | undefined;
  /** `--json`: machine-readable output on stdout. */
  readonly json: boolean;
  /** `--debug`: stack traces of internal errors. */
  readonly debug: boolean;
  /** `--metrics-file PATH`: Prometheus text file written after the command. */
  readonly metricsFile?: string | undefined;
}

/** The process's own streams. */
export function processIo(signal?: AbortSignal): CliIo {
  return {
    // Once a reader went away (EPIPE), its stream is destroyed: the rest of the output is dropped.
    stdout: (text) => void (process.stdout.writable && process.stdout.write(text)),
    stderr: (text) => void (process.stderr.writable && process.stderr.write(text)),
    stderrIsTTY: process.stderr.isTTY === true,
    env: process.env,
    signal,
  };
}

/** Writes one JSON document and a newline. */
export function printJson(io: CliIo, value: unknown): void {
  io.stdout(`${JSON.stringify(value, null, 2)}\n`);
}
