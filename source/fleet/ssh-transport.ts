// SSH transport to build machines: one persistent authenticated connection per machine, shared by
// every step; one exec channel per remote command. A second connection is opened only when the
// channels in flight would exceed the per-connection session limit (sshd's MaxSessions, default 10).
//
// Host keys are pinned to the machines file's column 8 when present, otherwise checked against
// known_hosts files; an unknown or changed key is refused during the handshake, before any command.
import ssh2 from 'ssh2';
import type {Client as SshClient, ClientChannel, ConnectConfig} from 'ssh2';
import {connect as netConnect, type Socket} from 'node:net';
import {readFile} from 'node:fs/promises';
import {existsSync} from 'node:fs';
import {homedir, userInfo} from 'node:os';
import {join} from 'node:path';
import {timingSafeEqual} from 'node:crypto';
import type {Readable, Writable} from 'node:stream';
import {
  checkHostKey,
  defaultKnownHostsFiles,
  fingerprintSha256,
  knownKeyTypes,
  loadKnownHosts,
  publicKeyLineToBlob,
  type HostKeyVerdict,
} from './known-hosts.js';

const {Client, utils} = ssh2;

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

export interface SshPoolOptions {
  /** known_hosts files used when a machine has no pinned key (default: ~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts). */
  knownHostsFiles?: string[];
  /** TCP connect + handshake + authentication budget (default 60 s, as Hydra's ConnectTimeout). */
  connectTimeoutMs?: number;
  /** Interval of SSH keepalive requests (default 15 s); the connection is dropped after 3 unanswered. */
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  /** Channels per connection before another connection is opened (sshd MaxSessions, default 10). */
  maxSessionsPerConnection?: number;
  /** An additional (non-first) connection idle this long is closed (default 60 s). */
  idleExtraConnectionMs?: number;
}

export interface MachineTransportStats {
  connectionsOpened: number;
  connectionsOpen: number;
  channelsOpen: number;
  bytesIn: number;
  bytesOut: number;
}

interface Counters {
  connectionsOpened: number;
  closedBytesIn: number;
  closedBytesOut: number;
}

class PooledConnection {
  active = 0;
  capacity: number;
  dead = false;
  socket: Socket | undefined;
  client: SshClient | undefined;
  ready!: Promise<void>;
  idleTimer: NodeJS.Timeout | undefined;
  constructor(capacity: number) {
    this.capacity = capacity;
  }
}

const RSA_ALGOS = ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];
const HOST_KEY_ALGOS = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', ...RSA_ALGOS];

/**
 * Host-key algorithms with the expected key types first (as OpenSSH orders them), the others after:
 * a server that only has a key of another type still shows it, and is refused with its fingerprint.
 */
function hostKeyAlgorithms(keyTypes: string[]): string[] | undefined {
  const preferred: string[] = [];
  for (const t of keyTypes) for (const a of t === 'ssh-rsa' ? RSA_ALGOS : [t]) if (HOST_KEY_ALGOS.includes(a)) preferred.push(a);
  if (preferred.length === 0) return undefined;
  return [...new Set([...preferred, ...HOST_KEY_ALGOS])];
}

const DEFAULT_IDENTITIES = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

export class SshConnectionPool {
  private readonly pools = new Map<string, PooledConnection[]>();
  private readonly counters = new Map<string, Counters>();
  private readonly knownHostsFiles: string[];
  private readonly connectTimeoutMs: number;
  private readonly keepaliveIntervalMs: number;
  private readonly keepaliveCountMax: number;
  private readonly maxSessions: number;
  private readonly idleExtraMs: number;
  private closed = false;

  constructor(options: SshPoolOptions = {}) {
    this.knownHostsFiles = options.knownHostsFiles ?? defaultKnownHostsFiles();
    this.connectTimeoutMs = options.connectTimeoutMs ?? 60_000;
    this.keepaliveIntervalMs = options.keepaliveIntervalMs ?? 15_000;
    this.keepaliveCountMax = options.keepaliveCountMax ?? 3;
    this.maxSessions = options.maxSessionsPerConnection ?? 10;
    this.idleExtraMs = options.idleExtraConnectionMs ?? 60_000;
  }

  /** Runs `argv` on the machine. Every argument is shell-quoted: it arrives as exactly one literal word. */
  async exec(target: SshTarget, argv: string[]): Promise<ExecHandle> {
    const command = commandLine(argv);
    if (target.kind === 'local') {
      throw new Error(`${target.uri}: is a local machine; it is not reached over SSH (use the local transport)`);
    }
    // One transparent retry: a pooled connection may turn out to be gone, or full, when used.
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw new SshTransportError('closed', target.uri, 'connection pool is closed');
      const conn = this.acquire(target);
      const reused = conn.client !== undefined;
      try {
        await conn.ready;
      } catch (e) {
        this.release(target.uri, conn);
        throw e;
      }
      try {
        return await this.openChannel(target, conn, command);
      } catch (e) {
        this.release(target.uri, conn);
        const retry = attempt === 0 && e instanceof SshTransportError && (e.kind === 'channel' ? true : reused && e.kind === 'lost');
        if (!retry) throw e;
        if (e.kind === 'channel' && !conn.dead) conn.capacity = Math.max(1, conn.active);
      }
    }
  }

  /** Runs a command to completion, collecting its output. `input` is written to its stdin, which is then closed. */
  async run(target: SshTarget, argv: string[], input?: string | Buffer): Promise<RunResult> {
    const h = await this.exec(target, argv);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    h.stdout.on('data', (c: Buffer) => out.push(c));
    h.stderr.on('data', (c: Buffer) => err.push(c));
    if (input !== undefined) h.stdin.write(input);
    h.stdin.end();
    const status = await h.exited;
    return {...status, stdout: Buffer.concat(out), stderr: Buffer.concat(err)};
  }

  /** Starts `nix-store --serve --write` (with `--store <remote-store>` when the URI has one). */
  openServe(target: SshTarget): Promise<ExecHandle> {
    return this.exec(target, serveCommand(target));
  }

  stats(target: SshTarget | string): MachineTransportStats {
    const uri = typeof target === 'string' ? target : target.uri;
    const c = this.counters.get(uri) ?? {connectionsOpened: 0, closedBytesIn: 0, closedBytesOut: 0};
    const live = (this.pools.get(uri) ?? []).filter((p) => !p.dead);
    return {
      connectionsOpened: c.connectionsOpened,
      connectionsOpen: live.filter((p) => p.client !== undefined).length,
      channelsOpen: live.reduce((n, p) => n + p.active, 0),
      bytesIn: c.closedBytesIn + live.reduce((n, p) => n + (p.socket?.bytesRead ?? 0), 0),
      bytesOut: c.closedBytesOut + live.reduce((n, p) => n + (p.socket?.bytesWritten ?? 0), 0),
    };
  }

  /** Number of authenticated connections ever opened to the machine. */
  connectionsOpened(target: SshTarget | string): number {
    return this.stats(target).connectionsOpened;
  }

  /** Closes the connections of one machine (e.g. after it was removed from the machines file). */
  closeMachine(uri: string): void {
    for (const conn of this.pools.get(uri) ?? []) this.dropConnection(uri, conn);
  }

  closeAll(): void {
    this.closed = true;
    for (const uri of [...this.pools.keys()]) this.closeMachine(uri);
  }

  private counter(uri: string): Counters {
    let c = this.counters.get(uri);
    if (!c) {
      c = {connectionsOpened: 0, closedBytesIn: 0, closedBytesOut: 0};
      this.counters.set(uri, c);
    }
    return c;
  }

  /** Reserves a channel slot synchronously, so parallel callers spread correctly over connections. */
  private acquire(target: SshTarget): PooledConnection {
    let list = this.pools.get(target.uri);
    if (!list) {
      list = [];
      this.pools.set(target.uri, list);
    }
    for (const conn of list) {
      if (!conn.dead && conn.active < conn.capacity) {
        conn.active++;
        if (conn.idleTimer) clearTimeout(conn.idleTimer);
        conn.idleTimer = undefined;
        return conn;
      }
    }
    const conn = new PooledConnection(this.maxSessions);
    conn.active = 1;
    conn.ready = this.connect(target, conn);
    conn.ready.catch(() => {});
    list.push(conn);
    return conn;
  }

  private release(uri: string, conn: PooledConnection): void {
    conn.active = Math.max(0, conn.active - 1);
    if (conn.dead || conn.active > 0) return;
    const list = this.pools.get(uri) ?? [];
    const firstLive = list.find((p) => !p.dead);
    if (firstLive !== conn && !conn.idleTimer) {
      conn.idleTimer = setTimeout(() => {
        conn.idleTimer = undefined;
        if (conn.active === 0) this.dropConnection(uri, conn);
      }, this.idleExtraMs);
      conn.idleTimer.unref();
    }
  }

  private dropConnection(uri: string, conn: PooledConnection): void {
    if (conn.idleTimer) clearTimeout(conn.idleTimer);
    conn.idleTimer = undefined;
    if (!conn.dead) {
      conn.dead = true;
      const c = this.counter(uri);
      c.closedBytesIn += conn.socket?.bytesRead ?? 0;
      c.closedBytesOut += conn.socket?.bytesWritten ?? 0;
    }
    const list = this.pools.get(uri);
    if (list) {
      const i = list.indexOf(conn);
      if (i >= 0) list.splice(i, 1);
    }
    conn.client?.end();
    conn.socket?.destroy();
  }

  private async privateKey(target: SshTarget): Promise<Buffer> {
    let file = target.sshKey;
    if (file === undefined) {
      file = DEFAULT_IDENTITIES.map((n) => join(homedir(), '.ssh', n)).find((f) => existsSync(f));
      if (file === undefined) {
        throw new SshTransportError(
          'key-file',
          target.uri,
          'no SSH key given in the machines file (column 3) and no default identity in ~/.ssh',
        );
      }
    }
    let key: Buffer;
    try {
      key = await readFile(file);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new SshTransportError('key-file', target.uri, `cannot read SSH key '${file}': ${err.code ?? err.message}`, {cause: e});
    }
    const parsed = utils.parseKey(key);
    const first = Array.isArray(parsed) ? parsed[0] : parsed;
    if (first instanceof Error || first === undefined) {
      const why = first instanceof Error ? first.message : 'no key found';
      throw new SshTransportError('key-file', target.uri, `cannot use SSH key '${file}': ${why}`);
    }
    if (first.isPrivateKey && !first.isPrivateKey()) {
      throw new SshTransportError('key-file', target.uri, `SSH key '${file}' is a public key, not a private key`);
    }
    return key;
  }

  private async hostKeyPolicy(target: SshTarget): Promise<{
    verify: (key: Buffer) => HostKeyVerdict | {status: 'pinned-ok'} | {status: 'pinned-mismatch'; expected: string};
    algorithms: string[] | undefined;
  }> {
    if (target.publicHostKey !== undefined) {
      let pinned: {keyType: string; keyBlob: Buffer};
      try {
        pinned = publicKeyLineToBlob(target.publicHostKey);
      } catch (e) {
        throw new SshTransportError('host-key', target.uri, `pinned host key is unusable: ${(e as Error).message}`);
      }
      const expected = fingerprintSha256(pinned.keyBlob);
      return {
        verify: (key) =>
          key.length === pinned.keyBlob.length && timingSafeEqual(key, pinned.keyBlob)
            ? {status: 'pinned-ok'}
            : {status: 'pinned-mismatch', expected},
        algorithms: hostKeyAlgorithms([pinned.keyType]),
      };
    }
    const known = await loadKnownHosts(this.knownHostsFiles);
    return {
      verify: (key) => checkHostKey(known.entries, target.host, target.port, key),
      algorithms: hostKeyAlgorithms(knownKeyTypes(known.entries, target.host, target.port)),
    };
  }

  private async connect(target: SshTarget, conn: PooledConnection): Promise<void> {
    const uri = target.uri;
    const deadline = Date.now() + this.connectTimeoutMs;
    const fail = (e: unknown): never => {
      this.dropConnection(uri, conn);
      throw e;
    };
    let privateKey: Buffer;
    let policy: Awaited<ReturnType<SshConnectionPool['hostKeyPolicy']>>;
    try {
      privateKey = await this.privateKey(target);
      policy = await this.hostKeyPolicy(target);
    } catch (e) {
      return fail(e);
    }
    if (conn.dead) return fail(new SshTransportError('closed', uri, 'connection pool is closed'));
    const host = target.host.startsWith('[') ? target.host.slice(1, -1) : target.host;
    const port = target.port ?? 22;

    // TCP first, with its own timeout, so the socket's byte counters cover the whole session.
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = netConnect({host, port});
      conn.socket = s;
      const timer = setTimeout(() => {
        s.destroy();
        reject(new SshTransportError('timeout', uri, `TCP connect to ${host}:${port} timed out after ${this.connectTimeoutMs} ms`));
      }, Math.max(1, deadline - Date.now()));
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        s.removeAllListeners('close');
        resolve(s);
      });
      s.once('close', () => {
        clearTimeout(timer);
        reject(new SshTransportError('closed', uri, 'connection pool is closed'));
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new SshTransportError('connect', uri, `cannot connect to ${host}:${port}: ${e.code ?? e.message}`, {cause: e}));
      });
    }).catch(fail);
    socket.setNoDelay(true);
    if (conn.dead) return fail(new SshTransportError('closed', uri, 'connection pool is closed'));

    const client = new Client();
    client.setMaxListeners(0);
    conn.client = client;
    let hostKeyProblem: SshTransportError | undefined;
    const config: ConnectConfig = {
      sock: socket,
      username: target.user ?? userInfo().username,
      privateKey,
      readyTimeout: Math.max(1, deadline - Date.now()),
      keepaliveInterval: this.keepaliveIntervalMs,
      keepaliveCountMax: this.keepaliveCountMax,
      hostVerifier: (key: Buffer) => {
        const verdict = policy.verify(key);
        const seen = fingerprintSha256(key);
        switch (verdict.status) {
          case 'match':
          case 'pinned-ok':
            return true;
          case 'pinned-mismatch':
            hostKeyProblem = new SshTransportError(
              'host-key',
              uri,
              `host key mismatch: the server offered ${seen} but the machines file pins ${verdict.expected}; refusing to connect`,
              {fingerprint: seen, expected: [verdict.expected]},
            );
            return false;
          case 'mismatch': {
            const expected = verdict.expected.map((e) => fingerprintSha256(e.keyBlob));
            const where = verdict.expected.map((e) => `${e.file}:${e.line}`).join(', ');
            hostKeyProblem = new SshTransportError(
              'host-key',
              uri,
              `host key changed: the server offered ${seen} but known_hosts (${where}) has ${expected.join(', ')}; refusing to connect`,
              {fingerprint: seen, expected},
            );
            return false;
          }
          case 'revoked':
            hostKeyProblem = new SshTransportError(
              'host-key',
              uri,
              `host key ${seen} is marked @revoked in ${verdict.entry.file}:${verdict.entry.line}; refusing to connect`,
              {fingerprint: seen},
            );
            return false;
          case 'unknown':
            hostKeyProblem = new SshTransportError(
              'host-key',
              uri,
              `unknown host key ${seen}: not pinned in the machines file (column 8) and not in known_hosts (${this.knownHostsFiles.join(', ')}); refusing to connect`,
              {fingerprint: seen},
            );
            return false;
        }
      },
    };
    if (policy.algorithms) config.algorithms = {serverHostKey: policy.algorithms as never};

    await new Promise<void>((resolve, reject) => {
      let settled = false;
      client.once('ready', () => {
        settled = true;
        resolve();
      });
      client.on('error', (e: Error & {level?: string}) => {
        if (settled) return;
        settled = true;
        if (hostKeyProblem) reject(hostKeyProblem);
        else if (e.level === 'client-authentication') {
          reject(new SshTransportError('auth', uri, `authentication as '${config.username}' refused: ${e.message}`, {cause: e}));
        } else if (e.level === 'client-timeout') {
          reject(new SshTransportError('timeout', uri, `SSH handshake timed out after ${this.connectTimeoutMs} ms`, {cause: e}));
        } else {
          reject(new SshTransportError('connect', uri, `SSH handshake failed: ${e.message}`, {cause: e}));
        }
      });
      client.on('close', () => {
        if (!settled) {
          settled = true;
          reject(hostKeyProblem ?? new SshTransportError('connect', uri, 'connection closed during the SSH handshake'));
        }
      });
      client.connect(config);
    }).catch(fail);

    // Established: from here on, any close marks the connection dead; the next exec reconnects.
    client.on('close', () => this.dropConnection(uri, conn));
    client.on('error', () => this.dropConnection(uri, conn));
    if (conn.dead) return fail(new SshTransportError('closed', uri, 'connection pool is closed'));
    this.counter(uri).connectionsOpened++;
  }

  private openChannel(target: SshTarget, conn: PooledConnection, command: string): Promise<ExecHandle> {
    const uri = target.uri;
    const client = conn.client;
    if (!client || conn.dead) return Promise.reject(new SshTransportError('lost', uri, 'connection lost before the command started'));
    return new Promise<ExecHandle>((resolve, reject) => {
      try {
        client.exec(command, (err, channel) => {
          if (err) {
            reject(
              conn.dead
                ? new SshTransportError('lost', uri, `connection lost while starting the command: ${err.message}`, {cause: err})
                : new SshTransportError('channel', uri, `cannot start the command: ${err.message}`, {cause: err}),
            );
            return;
          }
          resolve(this.makeHandle(uri, conn, client, channel));
        });
      } catch (e) {
        reject(new SshTransportError('lost', uri, `connection lost before the command started: ${(e as Error).message}`, {cause: e}));
      }
    });
  }

  private makeHandle(uri: string, conn: PooledConnection, client: SshClient, channel: ClientChannel): ExecHandle {
    let exit: ExitStatus | undefined;
    let closeRequested = false;
    let released = false;
    const release = () => {
      if (!released) {
        released = true;
        this.release(uri, conn);
      }
    };
    // Stream errors (e.g. writing after the connection died) surface through `exited`.
    channel.on('error', () => {});
    channel.stderr.on('error', () => {});
    channel.on('exit', (code: number | null, signal?: string) => {
      exit = {code: typeof code === 'number' ? code : null, signal: signal ?? null};
    });
    const closed = new Promise<void>((resolve) => channel.once('close', () => resolve()));
    // A dropped connection settles `exited` even when nobody drains the channel's output.
    const lost = new Promise<void>((resolve) => {
      const onClose = () => resolve();
      client.once('close', onClose);
      void closed.then(() => client.removeListener('close', onClose));
    });
    const exited = Promise.race([closed, lost]).then((): ExitStatus => {
      release();
      if (exit) return exit;
      if (closeRequested) return {code: null, signal: null};
      throw new SshTransportError('lost', uri, 'connection lost while the command was running');
    });
    exited.catch(() => {});
    return {
      stdin: channel,
      stdout: channel,
      stderr: channel.stderr,
      exited,
      close: async () => {
        if (!closeRequested) {
          closeRequested = true;
          try {
            channel.end();
            channel.close();
          } catch {
            // already closed
          }
          // Nobody may be reading any more: keep the data flowing so 'close' can be emitted.
          channel.resume();
          channel.stderr.resume();
        }
        await closed;
      },
    };
  }
}
