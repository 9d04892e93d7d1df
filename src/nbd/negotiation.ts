/**
 * The negotiation phase of one NBD connection: the client's handshake flags, then option haggling
 * until the client chooses an export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) or leaves. What it
 * agreed on is handed to the transmission phase as a {@link Negotiated}.
 *
 * With TLS configured the server is in the spec's FORCEDTLS mode: before NBD_OPT_STARTTLS every
 * option but STARTTLS and ABORT gets NBD_REP_ERR_TLS_REQD, and NBD_OPT_EXPORT_NAME (which has no
 * error reply) ends the connection. After the ACK to STARTTLS the session runs the TLS handshake
 * and the negotiation starts over on the encrypted connection, keeping nothing from before.
 */
import { printable } from '../engine/support/names.js';
import type { NbdBackend, NbdExport } from './backend.js';
import type { ByteQueue } from './byte-queue.js';
import {
  BASE_ALLOCATION,
  ClientFlag,
  Info,
  Opt,
  Rep,
  TxFlag,
  decodeClientFlags,
  decodeOption,
  encodeExportNameReply,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoText,
  encodeMetaContext,
  encodeOptionReply,
  encodeServerEntry,
  optionName,
  parseInfoRequest,
  parseMetaContextRequest,
  type Decoded,
} from './protocol.js';

/** What the client and the server agreed on; transmission starts from it. */
export interface Negotiated {
  readonly export: NbdExport;
  /** The transmission flags advertised for the export. */
  readonly flags: number;
  /** Structured replies were negotiated. */
  readonly structured: boolean;
  /** `base:allocation` was selected for this export (BLOCK_STATUS allowed). */
  readonly blockStatus: boolean;
}

/** Where an option leaves the connection. */
export type OptionOutcome =
  | { readonly next: 'options' }
  | { readonly next: 'end' }
  | { readonly next: 'starttls' }
  | { readonly next: 'transmission'; readonly negotiated: Negotiated };

/**
 * One step of the negotiation over the bytes received so far: more bytes needed, input that
 * closes the connection (as from the decoders), a message consumed, or an option being answered
 * (read nothing more until it settles).
 */
export type NegotiationStep =
  | Exclude<Decoded<never>, { readonly kind: 'message' }>
  | { readonly kind: 'continue' }
  | { readonly kind: 'option'; readonly outcome: Promise<OptionOutcome> };

/** What a negotiation may use of its connection. */
export interface NegotiationContext {
  readonly backend: NbdBackend;
  /** Sends bytes to the client (dropped once the connection closed). */
  readonly write: (data: Buffer) => void;
  /** False once the connection closed while an option was being answered. */
  readonly isOpen: () => boolean;
  readonly log: (line: string) => void;
  /** The server as an NBD URI (`nbd://127.0.0.1:10809`), for hints in refusals. */
  readonly uri: string;
  /** TLS is configured: nothing but STARTTLS and ABORT before it (FORCEDTLS). */
  readonly tlsRequired: boolean;
  readonly limits: {
    /** Largest option data accepted; more aborts. */
    readonly maxOptionData: number;
    /** Options before transmission; more aborts. */
    readonly maxOptions: number;
    /** Advertised as the maximum block size. */
    readonly maxRequest: number;
  };
}

/** Smallest block size advertised (and used by clients for alignment). */
export const MIN_BLOCK = 512;
const PREFERRED_BLOCK = 4096;
/** The id of `base:allocation`, the only metadata context. */
export const CONTEXT_ID = 1;
const KNOWN_CLIENT_FLAGS = ClientFlag.NBD_FLAG_C_FIXED_NEWSTYLE | ClientFlag.NBD_FLAG_C_NO_ZEROES;

/** The handshake and options of one connection (the greeting is sent by the session). */
export class Negotiation {
  readonly #ctx: NegotiationContext;
  #clientFlags = false;
  #noZeroes = false;
  #structured = false;
  #metaExport: string | undefined;
  #options = 0;
  #tlsActive = false;
  /** An option was refused for want of TLS (logged once). */
  #refusedPlain = false;

  constructor(ctx: NegotiationContext) {
    this.#ctx = ctx;
  }

  /** Consumes the next message of the negotiation from `q`, if it is complete. */
  next(q: ByteQueue): NegotiationStep {
    if (!this.#clientFlags) {
      const decoded = decodeClientFlags(q);
      if (decoded.kind !== 'message') return decoded;
      const flags = decoded.message;
      if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) return { kind: 'invalid', reason: `unknown client flags 0x${flags.toString(16)}` };
      this.#noZeroes = (flags & ClientFlag.NBD_FLAG_C_NO_ZEROES) !== 0;
      this.#clientFlags = true;
      return { kind: 'continue' };
    }
    const decoded = decodeOption(q, this.#ctx.limits.maxOptionData);
    if (decoded.kind !== 'message') return decoded;
    if (++this.#options > this.#ctx.limits.maxOptions) return { kind: 'invalid', reason: 'too many options' };
    const { option, data } = decoded.message;
    if (option === Opt.NBD_OPT_STARTTLS && this.#tlsPending() && data.length === 0 && q.length > 0) {
      // Everything after STARTTLS must be TLS, and a client has to wait for the ACK before its
      // handshake: bytes already here were sent without waiting (or injected). Never read them.
      return { kind: 'invalid', reason: `${q.length} bytes sent after STARTTLS before its reply` };
    }
    if (this.#tlsPending()) return { kind: 'option', outcome: Promise.resolve(this.#beforeTls(option, data)) };
    return { kind: 'option', outcome: this.#handleOption(option, data) };
  }

  /** TLS is required but not started yet. */
  #tlsPending(): boolean {
    return this.#ctx.tlsRequired && !this.#tlsActive;
  }

  /** An option before STARTTLS on a server that requires TLS. */
  #beforeTls(option: number, data: Buffer): OptionOutcome {
    const reply = (type: number, message?: string) => this.#ctx.write(encodeOptionReply(option, type, message === undefined ? undefined : Buffer.from(message, 'utf8')));
    switch (option) {
      case Opt.NBD_OPT_STARTTLS:
        if (data.length > 0) return (reply(Rep.NBD_REP_ERR_INVALID, 'STARTTLS takes no data'), { next: 'options' });
        reply(Rep.NBD_REP_ACK);
        // The spec: nothing negotiated before STARTTLS survives it.
        this.#tlsActive = true;
        this.#structured = false;
        this.#metaExport = undefined;
        return { next: 'starttls' };
      case Opt.NBD_OPT_ABORT:
        reply(Rep.NBD_REP_ACK);
        return { next: 'end' };
      case Opt.NBD_OPT_EXPORT_NAME:
        // No error reply exists for EXPORT_NAME: the spec says to end the session.
        this.#ctx.log('refused NBD_OPT_EXPORT_NAME before STARTTLS: this server requires TLS');
        return { next: 'end' };
      default:
        if (!this.#refusedPlain) this.#ctx.log(`refused ${optionName(option)} before STARTTLS: this server requires TLS`);
        this.#refusedPlain = true;
        reply(Rep.NBD_REP_ERR_TLS_REQD, `this server requires TLS: connect to ${this.#ctx.uri} with its credentials (qemu: tls-creds)`);
        return { next: 'options' };
    }
  }

  async #handleOption(option: number, data: Buffer): Promise<OptionOutcome> {
    const reply = (type: number, payload?: Buffer) => this.#ctx.write(encodeOptionReply(option, type, payload));
    const error = (type: number, message: string) => reply(type, Buffer.from(message, 'utf8'));
    const options = { next: 'options' } as const;
    switch (option) {
      case Opt.NBD_OPT_EXPORT_NAME: {
        const name = data.toString('utf8');
        const opened = await this.#ctx.backend.open(name);
        if (!opened) {
          // EXPORT_NAME has no error reply: the spec says to close the connection.
          this.#refusal(name);
          return { next: 'end' };
        }
        const exp = await this.#adopt(opened);
        if (!exp) return { next: 'end' };
        this.#ctx.write(encodeExportNameReply(exp.size, this.#flags(exp), this.#noZeroes));
        return this.#go(exp);
      }
      case Opt.NBD_OPT_ABORT:
        reply(Rep.NBD_REP_ACK);
        return { next: 'end' };
      case Opt.NBD_OPT_LIST:
        if (data.length > 0) return (error(Rep.NBD_REP_ERR_INVALID, 'LIST takes no data'), options);
        for (const e of await this.#ctx.backend.list()) reply(Rep.NBD_REP_SERVER, encodeServerEntry(e.name, e.description));
        reply(Rep.NBD_REP_ACK);
        return options;
      case Opt.NBD_OPT_STRUCTURED_REPLY:
        if (data.length > 0) return (error(Rep.NBD_REP_ERR_INVALID, 'STRUCTURED_REPLY takes no data'), options);
        this.#structured = true;
        reply(Rep.NBD_REP_ACK);
        return options;
      case Opt.NBD_OPT_INFO:
      case Opt.NBD_OPT_GO: {
        const request = parseInfoRequest(data);
        if (!request) return (error(Rep.NBD_REP_ERR_INVALID, 'malformed INFO/GO request'), options);
        const opened = await this.#ctx.backend.open(request.name);
        const exp = await this.#adopt(opened);
        if (!this.#ctx.isOpen()) return { next: 'end' };
        if (!exp) return (error(Rep.NBD_REP_ERR_UNKNOWN, this.#refusal(request.name)), options);
        reply(Rep.NBD_REP_INFO, encodeInfoExport(exp.size, this.#flags(exp)));
        if (request.infos.includes(Info.NBD_INFO_NAME)) reply(Rep.NBD_REP_INFO, encodeInfoText(Info.NBD_INFO_NAME, exp.name));
        if (request.infos.includes(Info.NBD_INFO_DESCRIPTION)) reply(Rep.NBD_REP_INFO, encodeInfoText(Info.NBD_INFO_DESCRIPTION, exp.description));
        reply(Rep.NBD_REP_INFO, encodeInfoBlockSize(MIN_BLOCK, PREFERRED_BLOCK, this.#ctx.limits.maxRequest));
        reply(Rep.NBD_REP_ACK);
        if (option === Opt.NBD_OPT_INFO) {
          await exp.close();
          return options;
        }
        return this.#go(exp);
      }
      case Opt.NBD_OPT_LIST_META_CONTEXT:
      case Opt.NBD_OPT_SET_META_CONTEXT: {
        const set = option === Opt.NBD_OPT_SET_META_CONTEXT;
        if (set && !this.#structured) return (error(Rep.NBD_REP_ERR_INVALID, 'negotiate structured replies first'), options);
        const request = parseMetaContextRequest(data);
        if (!request) return (error(Rep.NBD_REP_ERR_INVALID, 'malformed meta context request'), options);
        const exports = await this.#ctx.backend.list();
        if (request.name !== '' && !exports.some((e) => e.name === request.name)) {
          return (error(Rep.NBD_REP_ERR_UNKNOWN, `no export named "${request.name}"`), options);
        }
        const wanted = set
          ? request.queries.includes(BASE_ALLOCATION)
          : request.queries.length === 0 || request.queries.some((q) => q === 'base:' || q === BASE_ALLOCATION);
        if (set) this.#metaExport = wanted ? request.name : undefined;
        if (wanted) reply(Rep.NBD_REP_META_CONTEXT, encodeMetaContext(set ? CONTEXT_ID : 0, BASE_ALLOCATION));
        reply(Rep.NBD_REP_ACK);
        return options;
      }
      case Opt.NBD_OPT_STARTTLS:
        if (this.#tlsActive) return (error(Rep.NBD_REP_ERR_INVALID, 'TLS is already active'), options);
        error(Rep.NBD_REP_ERR_POLICY, 'TLS is not configured on this server (backy2 nbd --tls-cert/--tls-key or --tls-psk)');
        return options;
      default:
        error(Rep.NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
        return options;
    }
  }

  /**
   * Logs the refusal of an export that is not served.
   * @returns the message for the client, with a hint how to name one
   */
  #refusal(name: string): string {
    const { uri } = this.#ctx;
    const list = `\`nbdinfo --list ${uri}\` lists them`;
    if (name === '') {
      this.#ctx.log('refused the default export: there is none');
      return `no default export: name one, e.g. ${uri}/<uid>; ${list}`;
    }
    this.#ctx.log(`refused unknown export ${printable(name)}`);
    return `no export named ${printable(name)}; ${list}`;
  }

  /** An export opened while the connection closed is released at once. */
  async #adopt(exp: NbdExport | undefined): Promise<NbdExport | undefined> {
    if (exp && !this.#ctx.isOpen()) {
      await exp.close();
      return undefined;
    }
    return exp;
  }

  #go(exp: NbdExport): OptionOutcome {
    return {
      next: 'transmission',
      negotiated: { export: exp, flags: this.#flags(exp), structured: this.#structured, blockStatus: this.#structured && this.#metaExport !== undefined },
    };
  }

  #flags(exp: NbdExport): number {
    return transmissionFlags(exp, this.#structured);
  }
}

/**
 * The transmission flags of an export. A read-only export offers no FLUSH, FUA, TRIM or
 * WRITE_ZEROES: clients then do not try them (and get EPERM if they do).
 * @param structured structured replies were negotiated (DF is offered only then)
 */
export function transmissionFlags(exp: Pick<NbdExport, 'readOnly'>, structured: boolean): number {
  // All connections to an export share one cache and one copy-on-write session.
  let flags = TxFlag.NBD_FLAG_HAS_FLAGS | TxFlag.NBD_FLAG_CAN_MULTI_CONN;
  if (structured) flags |= TxFlag.NBD_FLAG_SEND_DF;
  if (exp.readOnly) return flags | TxFlag.NBD_FLAG_READ_ONLY;
  return (
    flags |
    TxFlag.NBD_FLAG_SEND_FLUSH |
    TxFlag.NBD_FLAG_SEND_FUA |
    TxFlag.NBD_FLAG_SEND_TRIM |
    TxFlag.NBD_FLAG_SEND_WRITE_ZEROES |
    TxFlag.NBD_FLAG_SEND_FAST_ZERO
  );
}

