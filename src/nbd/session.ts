/**
 * One NBD connection as an explicit state machine: the negotiation (fixed newstyle handshake,
 * then options) hands over to the transmission once the client chose an export. Every request
 * gets a reply (an NBD error when it fails); only malformed or hostile input (bad magic, absurd
 * lengths, option floods, a stalled handshake) closes the connection. Reading pauses while too
 * many requests or bytes are in flight or the client does not read its replies (backpressure).
 *
 * With TLS, NBD_OPT_STARTTLS hands the connected socket to the TLS handshake; once it succeeds the
 * session goes on over the encrypted socket (the same listeners, limits and backpressure). The
 * handshake timeout covers the TLS handshake too.
 */
import type { Duplex } from 'node:stream';
import type { NbdBackend } from './backend.js';
import { ByteQueue } from './byte-queue.js';
import { Negotiation, type OptionOutcome } from './negotiation.js';
import { Cmd, decodeRequest, encodeGreeting } from './protocol.js';
import { Transmission } from './transmission.js';

/** Limits of one connection. */
export interface SessionLimits {
  /** Largest option data accepted; more closes the connection. @default 65536 */
  readonly maxOptionData?: number;
  /** Options before transmission; more closes the connection. @default 256 */
  readonly maxOptions?: number;
  /** Largest READ/WRITE/WRITE_ZEROES length (advertised as the maximum block size). @default 32 MiB */
  readonly maxRequest?: number;
  /** Requests processed at once. @default 16 */
  readonly maxInFlight?: number;
  /** Bytes of requests and replies held at once. @default 64 MiB */
  readonly maxInFlightBytes?: number;
  /** Time to complete the handshake. @default 30 s */
  readonly handshakeTimeoutMs?: number;
}

/**
 * Runs the server side of a TLS handshake on a socket nobody else reads any more.
 * @returns the encrypted socket and a description for the log; rejects when the handshake fails
 */
export type StartTls = (socket: Duplex) => Promise<{ readonly socket: Duplex; readonly description: string }>;

/** Options of {@link NbdSession}. */
export interface NbdSessionOptions {
  /** One line per event worth keeping (the server prefixes the client's address). */
  readonly log: (line: string) => void;
  /** The server as an NBD URI, for the hints in refusals. @default "nbd://HOST:PORT" */
  readonly uri?: string | undefined;
  /** TLS handshake after NBD_OPT_STARTTLS; when given, TLS is required. @default no TLS */
  readonly startTls?: StartTls | undefined;
  readonly limits?: SessionLimits | undefined;
}

type State = 'negotiation' | 'option-pending' | 'tls-handshake' | 'transmission' | 'closing' | 'closed';

/** Serves one connection. */
export class NbdSession {
  /** The raw socket, and after STARTTLS the encrypted one. */
  #socket: Duplex;
  readonly #startTls: StartTls | undefined;
  readonly #log: (line: string) => void;
  readonly #queue = new ByteQueue();
  readonly #limits: Required<SessionLimits>;
  readonly #closed: Promise<void>;
  readonly #negotiation: Negotiation;
  #resolveClosed: () => void = () => undefined;
  #state: State = 'negotiation';
  #transmission: Transmission | undefined;
  #inFlight = 0;
  #inFlightBytes = 0;
  #processing = false;
  /** Bytes the queue must hold before decoding is worth trying again. */
  #awaiting = 0;
  #timer: NodeJS.Timeout | undefined;
  #pausedForBackpressure = false;
  #released = false;
  #closeReason = '';

  readonly #onData = (chunk: Buffer): void => {
    this.#queue.push(chunk);
    this.#process();
  };
  // A half-close is a disconnect: finish what is in flight, then close.
  readonly #onEnd = (): void => this.shutdown('client closed the connection');
  readonly #onClose = (): void => this.#close('connection closed');
  readonly #onError = (err: Error): void => this.#close(`socket error: ${err.message}`);
  readonly #onDrain = (): void => this.#maybeResume();

  constructor(socket: Duplex, backend: NbdBackend, options: NbdSessionOptions) {
    this.#socket = socket;
    this.#startTls = options.startTls;
    this.#log = options.log;
    this.#limits = {
      maxOptionData: 65536,
      maxOptions: 256,
      maxRequest: 32 << 20,
      maxInFlight: 16,
      maxInFlightBytes: 64 << 20,
      handshakeTimeoutMs: 30_000,
      ...options.limits,
    };
    this.#negotiation = new Negotiation({
      backend,
      write: (data) => this.#write(data),
      isOpen: () => this.#state === 'option-pending',
      log: this.#log,
      uri: options.uri ?? 'nbd://HOST:PORT',
      tlsRequired: options.startTls !== undefined,
      limits: this.#limits,
    });
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#listen(socket);
    this.#timer = setTimeout(() => this.#abort('handshake timed out'), this.#limits.handshakeTimeoutMs);
    this.#timer.unref?.();
    socket.write(encodeGreeting());
  }

  /** Resolves once the connection is closed and its export released. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  /** Closes the connection after in-flight requests (server shutdown, client half-close). */
  shutdown(why = 'server shutting down'): void {
    if (this.#state === 'transmission') this.#state = 'closing';
    else this.#end(why);
    this.#maybeFinish();
  }

  #process(): void {
    if (this.#processing) return;
    this.#processing = true;
    try {
      while (this.#state === 'negotiation' || this.#state === 'transmission') {
        // The decoder said how many bytes the next message needs at least: wait for them.
        if (this.#queue.length < this.#awaiting) break;
        this.#awaiting = 0;
        if (this.#state === 'negotiation') {
          if (!this.#nextNegotiationStep()) break;
        } else if (!this.#nextRequest()) break;
      }
    } finally {
      this.#processing = false;
    }
  }

  /** @returns false when more bytes are needed or an option is being handled */
  #nextNegotiationStep(): boolean {
    const step = this.#negotiation.next(this.#queue);
    switch (step.kind) {
      case 'need':
        this.#awaiting = this.#queue.length + step.bytes;
        return false;
      case 'invalid':
        this.#abort(step.reason);
        return false;
      case 'continue':
        return true;
      case 'option':
        // Options are answered one at a time: stop reading and parsing until this one is done.
        this.#state = 'option-pending';
        this.#socket.pause();
        step.outcome
          .then((outcome) => this.#afterOption(outcome))
          .catch((err: unknown) => this.#abort(`option failed: ${err instanceof Error ? err.message : String(err)}`));
        return false;
    }
  }

  #afterOption(outcome: OptionOutcome): void {
    if (this.#state !== 'option-pending') {
      // Closed while the option was answered: nobody else will release what it opened.
      if (outcome.next === 'transmission') outcome.negotiated.export.close().catch((err: unknown) => this.#log(`releasing export: ${String(err)}`));
      return;
    }
    if (outcome.next === 'end') return this.#end('the client ended the negotiation');
    if (outcome.next === 'starttls') return this.#handOverToTls();
    if (outcome.next === 'transmission') {
      // The handover: from here on the connection serves requests on the chosen export.
      this.#transmission = new Transmission(outcome.negotiated, {
        write: (...data) => this.#write(...data),
        writeData: (header, data, sent) => this.#writeData(header, data, sent),
        log: this.#log,
        maxRequest: this.#limits.maxRequest,
      });
      if (this.#timer) clearTimeout(this.#timer);
      this.#log(`client opened export "${outcome.negotiated.export.name}"`);
      this.#state = 'transmission';
    } else this.#state = 'negotiation';
    this.#socket.resume();
    this.#process();
  }

  /**
   * After the ACK to STARTTLS: the raw socket now belongs to the TLS handshake, which settles
   * once it succeeds, fails, or the socket closes (the handshake timer destroys it at the latest).
   * On success the negotiation goes on over TLS.
   */
  #handOverToTls(): void {
    const raw = this.#socket;
    const startTls = this.#startTls as StartTls;
    this.#state = 'tls-handshake';
    this.#unlisten(raw);
    startTls(raw).then(
      ({ socket, description }) => {
        if (this.#state !== 'tls-handshake') {
          socket.destroy();
          return;
        }
        this.#socket = socket;
        this.#listen(socket);
        this.#log(`TLS established: ${description}`);
        this.#state = 'negotiation';
        this.#awaiting = 0;
        this.#process();
      },
      (err: unknown) => this.#abort(`TLS handshake failed: ${err instanceof Error ? err.message : String(err)}`),
    );
  }

  #listen(socket: Duplex): void {
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onClose);
    socket.on('error', this.#onError);
    socket.on('drain', this.#onDrain);
  }

  #unlisten(socket: Duplex): void {
    socket.off('data', this.#onData);
    socket.off('end', this.#onEnd);
    socket.off('close', this.#onClose);
    socket.off('error', this.#onError);
    socket.off('drain', this.#onDrain);
  }

  /** @returns false when more bytes are needed or reading is paused */
  #nextRequest(): boolean {
    if (this.#inFlight >= this.#limits.maxInFlight || this.#inFlightBytes >= this.#limits.maxInFlightBytes) {
      this.#pause();
      return false;
    }
    const decoded = decodeRequest(this.#queue, this.#limits.maxRequest);
    if (decoded.kind === 'need') {
      this.#awaiting = this.#queue.length + decoded.bytes;
      return false;
    }
    if (decoded.kind === 'invalid') {
      this.#abort(decoded.reason);
      return false;
    }
    const request = decoded.message;
    if (request.type === Cmd.NBD_CMD_DISC) {
      this.#state = 'closing';
      this.#maybeFinish();
      return false;
    }
    const bytes = request.type === Cmd.NBD_CMD_READ || request.type === Cmd.NBD_CMD_WRITE ? Math.min(request.length, this.#limits.maxRequest) : 0;
    this.#inFlight++;
    this.#inFlightBytes += bytes;
    (this.#transmission as Transmission)
      .handle(request)
      .catch((err: unknown) => this.#abort(`request failed: ${err instanceof Error ? err.message : String(err)}`))
      .finally(() => {
        this.#inFlight--;
        this.#inFlightBytes -= bytes;
        if (this.#state === 'closed') this.#releaseExport();
        else {
          this.#maybeResume();
          this.#maybeFinish();
        }
      });
    return true;
  }

  #write(...buffers: Buffer[]): void {
    if (this.#state === 'closed') return;
    for (const b of buffers) this.#socket.write(b);
  }

  #writeData(header: Buffer, data: Buffer, sent: () => void): void {
    if (this.#state === 'closed') return sent();
    this.#socket.write(header);
    // Called once the data is written, or with an error once the socket is destroyed.
    this.#socket.write(data, () => sent());
  }

  #pause(): void {
    if (!this.#pausedForBackpressure) {
      this.#pausedForBackpressure = true;
      this.#socket.pause();
    }
  }

  #maybeResume(): void {
    const writable = this.#socket as Duplex & { writableLength?: number; writableHighWaterMark?: number };
    const congested = (writable.writableLength ?? 0) > this.#limits.maxInFlightBytes;
    if (congested) {
      this.#pause();
      return;
    }
    if (this.#pausedForBackpressure && this.#inFlight < this.#limits.maxInFlight && this.#inFlightBytes < this.#limits.maxInFlightBytes) {
      this.#pausedForBackpressure = false;
      this.#socket.resume();
      this.#process();
    }
  }

  #maybeFinish(): void {
    if (this.#state === 'closing' && this.#inFlight === 0) {
      this.#socket.end();
      this.#close('client disconnected');
    }
  }

  /** A normal end before transmission (ABORT, unknown EXPORT_NAME, half-close). */
  #end(why: string): void {
    if (this.#state === 'closed') return;
    // During the TLS handshake the raw socket is the handshake's: it can only be cut.
    if (this.#state === 'tls-handshake') this.#socket.destroy();
    else this.#socket.end();
    this.#close(why);
  }

  /** Hostile or broken input: drop this connection only. */
  #abort(why: string): void {
    if (this.#state === 'closed') return;
    this.#log(`closing connection: ${why}`);
    this.#socket.destroy();
    this.#close(why);
  }

  #close(why: string): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#closeReason = why;
    if (this.#timer) clearTimeout(this.#timer);
    this.#releaseExport();
  }

  /** Releases the export once no request of this connection is in flight any more. */
  #releaseExport(): void {
    if (this.#inFlight > 0 || this.#released) return;
    this.#released = true;
    const exp = this.#transmission?.export;
    if (exp) this.#log(`export "${exp.name}" released: ${this.#closeReason}`);
    (exp ? exp.close() : Promise.resolve()).catch((err: unknown) => this.#log(`releasing export: ${String(err)}`)).finally(() => this.#resolveClosed());
  }
}
