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
  /** Asks for a secret on the terminal without echo; undefined when there is no terminal. */
  readonly readSecret?: ((prompt: string) => Promise<string | undefined>) | undefined;
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
  /** `--password-file FILE`: the passphrase of an encrypted store. */
  readonly passwordFile?: string | undefined;
  /** `--key-file FILE`: a raw key file of an encrypted store. */
  readonly keyFile?: string | undefined;
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
    readSecret: process.stdin.isTTY ? readSecretFromTerminal : undefined,
  };
}

/** Reads a line from the terminal with echo off (a passphrase). */
async function readSecretFromTerminal(prompt: string): Promise<string | undefined> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  try {
    return await new Promise<string | undefined>((resolve) => {
      let line = '';
      const onData = (chunk: Buffer) => {
        for (const ch of chunk.toString('utf8')) {
          if (ch === '\r' || ch === '\n') return done(line);
          if (ch === '\u0003' || ch === '\u0004') return done(undefined); // Ctrl-C, Ctrl-D
          if (ch === '\u007f' || ch === '\b') line = line.slice(0, -1);
          else line += ch;
        }
      };
      const done = (value: string | undefined) => {
        stdin.off('data', onData);
        resolve(value);
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write('\n');
  }
}

/** Writes one JSON document and a newline. */
export function printJson(io: CliIo, value: unknown): void {
  io.stdout(`${JSON.stringify(value, null, 2)}\n`);
}
