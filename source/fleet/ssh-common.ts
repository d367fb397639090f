// What every machine transport shares: the target a command runs on, the transport's error, the handle of a
// running remote command and its exit status, per-machine counters, and the quoting that turns an argv into
// the one command line SSH carries (ssh-transport.ts: ssh2, openssh-transport.ts: the `ssh` binary).
import type {Readable, Writable} from 'node:stream';

/** What the transport needs to know about a machine (a MachineSpec or a monitored Machine fits). */
export interface SshTarget {
  uri: string;
  kind?: 'ssh' | 'local';
  host: string;
  port?: number | undefined;
  user?: string | undefined;
  sshKey?: string | undefined;
  publicHostKey?: string | undefined;
  remoteStore?: string | undefined;
}

export type SshErrorKind =
  | 'connect' // TCP connection failed
  | 'timeout' // connect/handshake timeout or keepalive timeout
  | 'lost' // connection dropped while in use
  | 'host-key' // unknown, changed or revoked host key
  | 'auth' // authentication refused
  | 'key-file' // private key missing or unusable
  | 'channel' // the server refused to open a channel
  | 'config' // the SSH client configuration (ssh -G, HYDRA_OPS_SSH_TRANSPORT) is unusable
  | 'closed'; // the pool was closed

/** Any failure of the transport itself (as opposed to the remote command's own exit status). */
export class SshTransportError extends Error {
  override readonly name = 'SshTransportError';
  constructor(
    readonly kind: SshErrorKind,
    readonly machine: string,
    message: string,
    readonly details: {fingerprint?: string; expected?: string[]; cause?: unknown} = {},
  ) {
    super(`${machine}: ${message}`, details.cause === undefined ? undefined : {cause: details.cause});
  }
}

const NET_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * True when `e` is a failure to reach, authenticate with, or stay connected to a machine — a machine
 * problem rather than a build result. `SshTransportError.kind` tells the cases apart.
 */
export function isConnectionError(e: unknown): boolean {
  if (e instanceof SshTransportError) return true;
  if (e && typeof e === 'object') {
    const code = (e as {code?: unknown}).code;
    if (typeof code === 'string' && NET_ERROR_CODES.has(code)) return true;
    const level = (e as {level?: unknown}).level;
    if (level === 'client-socket' || level === 'client-timeout' || level === 'handshake') return true;
  }
  return false;
}

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quotes one argument for a POSIX shell; nothing inside is ever interpreted. */
export function shellQuote(arg: string): string {
  if (arg.includes('\0')) throw new Error('argument contains a NUL byte and cannot be passed to a remote command');
  if (arg !== '' && SAFE_WORD.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

export function commandLine(argv: string[]): string {
  if (argv.length === 0) throw new Error('empty command');
  return argv.map(shellQuote).join(' ');
}

/** The remote command of the serve protocol for a machine. */
export function serveCommand(target: Pick<SshTarget, 'remoteStore'>): string[] {
  const argv = ['nix-store', '--serve', '--write'];
  if (target.remoteStore !== undefined) argv.push('--store', target.remoteStore);
  return argv;
}

export interface ExitStatus {
  /** Exit code, or null when the command died of a signal or the channel was closed first. */
  code: number | null;
  signal: string | null;
}

export interface ExecHandle {
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  /**
   * Settles when the channel closes (stdout must be consumed for that to happen). Resolves with the
   * exit status; rejects with an SshTransportError (kind 'lost') when the connection dropped first.
   */
  exited: Promise<ExitStatus>;
  /** Cancels: EOF on the remote stdin, then closes the channel. Resolves once the channel is closed. */
  close(): Promise<void>;
}

export interface RunResult extends ExitStatus {
  stdout: Buffer;
  stderr: Buffer;
}

export interface MachineTransportStats {
  connectionsOpened: number;
  connectionsOpen: number;
  channelsOpen: number;
  bytesIn: number;
  bytesOut: number;
}
