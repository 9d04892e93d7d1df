/**
 * Whether a transmission request may run, decided in one place before dispatch: the command is
 * known, its flags are valid for it and were advertised, it does not write to a read-only export,
 * its length is within the limits and its range within the export. The NBD errors follow the
 * "Error values" section of the spec: EPERM for writes to a read-only export, ENOSPC for writes
 * past the end, EINVAL for everything else.
 */
import { Cmd, CmdFlag, Errno, TxFlag, type Request } from './protocol.js';

/** What validation needs to know of the connection. */
export interface RequestLimits {
  /** Export size in bytes. */
  readonly size: number;
  readonly readOnly: boolean;
  /** The transmission flags advertised to the client. */
  readonly flags: number;
  /** `base:allocation` was selected (BLOCK_STATUS allowed). */
  readonly blockStatus: boolean;
  /** Largest READ/WRITE length (the advertised maximum block size). */
  readonly maxRequest: number;
}

/** Why a request is refused: the NBD error and a message for the client. */
export interface Refusal {
  readonly errno: number;
  readonly message: string;
}

interface CommandRule {
  readonly name: string;
  /** Flags valid for this command besides FUA, which is valid for all (when advertised). */
  readonly flags: number;
  /** Changes the export. */
  readonly writes: boolean;
  /** The transmission flag that exposes the command; unset: always available. */
  readonly advertisedBy?: number;
  /** The error for a range past the end of the export; unset: offset and length are ignored. */
  readonly pastEnd?: number;
  /** Carries a payload in either direction, so its length is limited. */
  readonly payload?: boolean;
  /** A length of 0 is invalid. */
  readonly nonEmpty?: boolean;
}

/** The commands served and what each allows. */
export const COMMAND_RULES: ReadonlyMap<number, CommandRule> = new Map<number, CommandRule>([
  [Cmd.NBD_CMD_READ, { name: 'READ', flags: CmdFlag.NBD_CMD_FLAG_DF, writes: false, pastEnd: Errno.NBD_EINVAL, payload: true }],
  [Cmd.NBD_CMD_WRITE, { name: 'WRITE', flags: 0, writes: true, pastEnd: Errno.NBD_ENOSPC, payload: true }],
  // FLUSH's offset and length "MUST be zero"; clients that send others are served anyway.
  [Cmd.NBD_CMD_FLUSH, { name: 'FLUSH', flags: 0, writes: false, advertisedBy: TxFlag.NBD_FLAG_SEND_FLUSH }],
  [Cmd.NBD_CMD_TRIM, { name: 'TRIM', flags: 0, writes: true, advertisedBy: TxFlag.NBD_FLAG_SEND_TRIM, pastEnd: Errno.NBD_EINVAL }],
  [
    Cmd.NBD_CMD_WRITE_ZEROES,
    {
      name: 'WRITE_ZEROES',
      flags: CmdFlag.NBD_CMD_FLAG_NO_HOLE | CmdFlag.NBD_CMD_FLAG_FAST_ZERO,
      writes: true,
      advertisedBy: TxFlag.NBD_FLAG_SEND_WRITE_ZEROES,
      pastEnd: Errno.NBD_ENOSPC,
    },
  ],
  [Cmd.NBD_CMD_BLOCK_STATUS, { name: 'BLOCK_STATUS', flags: CmdFlag.NBD_CMD_FLAG_REQ_ONE, writes: false, pastEnd: Errno.NBD_EINVAL, nonEmpty: true }],
]);

/** Command flags that are valid only when a transmission flag was advertised. */
const FLAG_ADVERTISED_BY: readonly (readonly [flag: number, name: string, advertisedBy: number])[] = [
  [CmdFlag.NBD_CMD_FLAG_FUA, 'FUA', TxFlag.NBD_FLAG_SEND_FUA],
  [CmdFlag.NBD_CMD_FLAG_DF, 'DF', TxFlag.NBD_FLAG_SEND_DF],
  [CmdFlag.NBD_CMD_FLAG_FAST_ZERO, 'FAST_ZERO', TxFlag.NBD_FLAG_SEND_FAST_ZERO],
];

const KNOWN_CMD_FLAGS = Object.values(CmdFlag).reduce((a, b) => a | b, 0);

/**
 * Checks a request against the export and what was negotiated.
 * @returns undefined when the request may run, else the error to reply with
 */
export function validateRequest(r: Pick<Request, 'type' | 'flags' | 'offset' | 'length'>, limits: RequestLimits): Refusal | undefined {
  const rule = COMMAND_RULES.get(r.type);
  if (!rule) return refuse(Errno.NBD_EINVAL, `command ${r.type} is not supported`);
  if ((r.flags & ~KNOWN_CMD_FLAGS) !== 0) return refuse(Errno.NBD_EINVAL, 'unknown command flags');
  if (rule.writes && limits.readOnly) return refuse(Errno.NBD_EPERM, 'the export is read-only');
  if (rule.advertisedBy !== undefined && (limits.flags & rule.advertisedBy) === 0) {
    // Not offered because the export cannot be written (FLUSH, TRIM, WRITE_ZEROES): EPERM says why.
    return refuse(limits.readOnly ? Errno.NBD_EPERM : Errno.NBD_EINVAL, `${rule.name} was not offered for this export${limits.readOnly ? ', which is read-only' : ''}`);
  }
  const invalid = r.flags & ~(rule.flags | CmdFlag.NBD_CMD_FLAG_FUA);
  if (invalid !== 0) return refuse(Errno.NBD_EINVAL, `flags 0x${invalid.toString(16)} are not valid for ${rule.name}`);
  for (const [flag, name, advertisedBy] of FLAG_ADVERTISED_BY) {
    if ((r.flags & flag) !== 0 && (limits.flags & advertisedBy) === 0) return refuse(Errno.NBD_EINVAL, `${name} was not offered for this export`);
  }
  if (r.type === Cmd.NBD_CMD_BLOCK_STATUS && !limits.blockStatus) return refuse(Errno.NBD_EINVAL, 'no meta context selected');
  if (rule.payload && r.length > limits.maxRequest) return refuse(Errno.NBD_EINVAL, `${rule.name} longer than the maximum block size (${limits.maxRequest} bytes)`);
  if (rule.nonEmpty && r.length === 0) return refuse(Errno.NBD_EINVAL, `${rule.name} of 0 bytes`);
  if (rule.pastEnd !== undefined && r.offset + r.length > limits.size) return refuse(rule.pastEnd, `${rule.name} past the end of the export (${limits.size} bytes)`);
  return undefined;
}

function refuse(errno: number, message: string): Refusal {
  return { errno, message };
}
