// SSH transport to build machines: one persistent authenticated connection per machine, shared by
// every step; one exec channel per remote command. A second connection is opened only when the
// channels in flight would exceed the per-connection session limit (sshd's MaxSessions, default 10).
//
// Host keys are pinned to the machines file's column 8 when present, otherwise checked against
// known_hosts files; an unknown or changed key is refused during the handshake, before any command.
//
// A machine is reached as OpenSSH would reach it: its host is resolved with `ssh -G` (ssh-config.ts: HostName,
// Port, User, IdentityFile, IdentityAgent, ProxyJump, UserKnownHostsFile), keys may come from ssh-agent, and
// ProxyJump hops are pooled ssh2 connections whose `direct-tcpip` channels carry the next connection. What ssh2
// cannot do (certificates, PKCS#11, security keys, ProxyCommand) goes through the `ssh` binary with one
// ControlMaster per machine (openssh-transport.ts), chosen automatically or by HYDRA_OPS_SSH_TRANSPORT.
import ssh2 from 'ssh2';
import type {AgentAuthMethod, PublicKeyAuthMethod, Client as SshClient, ClientChannel, ConnectConfig} from 'ssh2';
import {connect as netConnect, type Socket} from 'node:net';
import {readFile} from 'node:fs/promises';
import {existsSync} from 'node:fs';
import type {Duplex} from 'node:stream';
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
import {
  SshConfigError,
  configFileFromEnv,
  needsOpenSsh,
  parseJumpHop,
  resolveSsh,
  transportModeFor,
  type ResolvedSsh,
} from './ssh-config.js';
import {OpenSshTransport} from './openssh-transport.js';

const {Client, utils} = ssh2;
type AuthMethod = PublicKeyAuthMethod | AgentAuthMethod;

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

export interface SshPoolOptions {
  /**
   * known_hosts files used when a machine has no pinned key (default: what OpenSSH uses for the host —
   * UserKnownHostsFile and GlobalKnownHostsFile of `ssh -G`, normally ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts).
   */
  knownHostsFiles?: string[];
  /** OpenSSH client configuration file (`ssh -F`); default HYDRA_OPS_SSH_CONFIG, else OpenSSH's own default. */
  sshConfigFile?: string;
  /** Transport choice, as HYDRA_OPS_SSH_TRANSPORT (`auto`, `ssh2`, `openssh`, `HOST=MODE`, comma-separated); default that variable. */
  transport?: string;
  /** Environment for `ssh` and the agent socket (default process.env). */
  env?: NodeJS.ProcessEnv;
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
  /** A TCP socket, or the jump host's forwarding channel (counted by `meter`). */
  socket: Socket | undefined;
  meter: {in: number; out: number} | undefined;
  jump: JumpConnection | undefined;
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

/** A pooled connection to a ProxyJump hop, shared by every connection that goes through it. */
interface JumpConnection {
  key: string;
  hop: ResolvedSsh;
  client: SshClient | undefined;
  ready: Promise<void>;
  users: number;
  dead: boolean;
  parent: JumpConnection | undefined;
  sock: Socket | Duplex | undefined;
}

interface Route {
  resolved: ResolvedSsh;
  /** ProxyJump hops in connection order, each resolved. */
  hops: ResolvedSsh[];
  transport: 'ssh2' | 'openssh';
  /** Why OpenSSH is used (for diagnostics). */
  reason: string | undefined;
  at: number;
}

const ROUTE_TTL_MS = 30_000;
const MAX_JUMP_DEPTH = 8;

const hopLabel = (h: ResolvedSsh): string => `${h.user}@${h.hostname}:${h.port}`;
const bytesIn = (c: PooledConnection): number => c.meter?.in ?? c.socket?.bytesRead ?? 0;
const bytesOut = (c: PooledConnection): number => c.meter?.out ?? c.socket?.bytesWritten ?? 0;

export class SshConnectionPool {
  private readonly pools = new Map<string, PooledConnection[]>();
  private readonly counters = new Map<string, Counters>();
  private readonly knownHostsFiles: string[];
  private readonly connectTimeoutMs: number;
  private readonly keepaliveIntervalMs: number;
  private readonly keepaliveCountMax: number;
  private readonly maxSessions: number;
  private readonly idleExtraMs: number;
  private readonly explicitKnownHosts: string[] | undefined;
  private readonly sshConfigFile: string | undefined;
  private readonly transportSetting: string | undefined;
  private readonly env: NodeJS.ProcessEnv;
  private readonly routes = new Map<string, Promise<Route>>();
  private readonly jumps = new Map<string, JumpConnection>();
  private readonly openssh: OpenSshTransport;
  private closed = false;

  constructor(options: SshPoolOptions = {}) {
    this.explicitKnownHosts = options.knownHostsFiles;
    this.knownHostsFiles = options.knownHostsFiles ?? defaultKnownHostsFiles();
    this.env = options.env ?? process.env;
    this.sshConfigFile = options.sshConfigFile ?? configFileFromEnv(this.env);
    this.transportSetting = options.transport ?? this.env.HYDRA_OPS_SSH_TRANSPORT;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 60_000;
    this.keepaliveIntervalMs = options.keepaliveIntervalMs ?? 15_000;
    this.keepaliveCountMax = options.keepaliveCountMax ?? 3;
    this.maxSessions = options.maxSessionsPerConnection ?? 10;
    this.idleExtraMs = options.idleExtraConnectionMs ?? 60_000;
    this.openssh = new OpenSshTransport({
      configFile: this.sshConfigFile,
      knownHostsFiles: this.explicitKnownHosts,
      connectTimeoutMs: this.connectTimeoutMs,
      keepaliveIntervalMs: this.keepaliveIntervalMs,
      keepaliveCountMax: this.keepaliveCountMax,
      env: this.env,
    });
  }

  /** How a machine is reached (resolved with `ssh -G`, cached for 30 s and until closeMachine). */
  route(target: SshTarget): Promise<Route> {
    const cached = this.routes.get(target.uri);
    if (cached) return cached;
    const p = this.computeRoute(target);
    this.routes.set(target.uri, p);
    const expire = () => setTimeout(() => this.routes.get(target.uri) === p && this.routes.delete(target.uri), ROUTE_TTL_MS).unref();
    p.then(expire, () => this.routes.get(target.uri) === p && this.routes.delete(target.uri));
    return p;
  }

  /** Which transport a machine uses, and why ('openssh' also when chosen explicitly). */
  async transportOf(target: SshTarget): Promise<{transport: 'ssh2' | 'openssh'; reason: string | undefined}> {
    const r = await this.route(target);
    return {transport: r.transport, reason: r.reason};
  }

  private async computeRoute(target: SshTarget): Promise<Route> {
    const uri = target.uri;
    try {
      const mode = transportModeFor(this.transportSetting, uri, target.host);
      const opts = {configFile: this.sshConfigFile, env: this.env};
      const resolved = await resolveSsh(target.host, {...opts, port: target.port, user: target.user});
      if (mode === 'openssh') return {resolved, hops: [], transport: 'openssh', reason: 'selected by HYDRA_OPS_SSH_TRANSPORT', at: Date.now()};
      const hops = await this.resolveHops(resolved.proxyJump, 0);
      let reason = needsOpenSsh(resolved, target.sshKey);
      for (const h of hops) reason ??= needsOpenSsh(h, undefined);
      if (reason !== undefined && mode === 'ssh2') {
        throw new SshConfigError(`needs ${reason}, which the ssh2 transport cannot use, but HYDRA_OPS_SSH_TRANSPORT selects ssh2`);
      }
      return {resolved, hops, transport: reason === undefined ? 'ssh2' : 'openssh', reason, at: Date.now()};
    } catch (e) {
      if (e instanceof SshConfigError) throw new SshTransportError('config', uri, e.message, {cause: e});
      throw e;
    }
  }

  /** Resolves ProxyJump hops: for `a,b` the target is reached through b and b through a; a single hop keeps its own ProxyJump. */
  private async resolveHops(hops: string[], depth: number): Promise<ResolvedSsh[]> {
    if (hops.length === 0) return [];
    if (depth >= MAX_JUMP_DEPTH) throw new SshConfigError(`ProxyJump chain longer than ${MAX_JUMP_DEPTH} hops (a loop?)`);
    const last = parseJumpHop(hops[hops.length - 1]!);
    const r = await resolveSsh(last.host, {configFile: this.sshConfigFile, env: this.env, port: last.port, user: last.user});
    const before = hops.length > 1 ? hops.slice(0, -1) : r.proxyJump;
    return [...(await this.resolveHops(before, depth + 1)), r];
  }

  /** Runs `argv` on the machine. Every argument is shell-quoted: it arrives as exactly one literal word. */
  async exec(target: SshTarget, argv: string[]): Promise<ExecHandle> {
    const command = commandLine(argv);
    if (target.kind === 'local') {
      throw new Error(`${target.uri}: is a local machine; it is not reached over SSH (use the local transport)`);
    }
    if (this.closed) throw new SshTransportError('closed', target.uri, 'connection pool is closed');
    const route = await this.route(target);
    if (route.transport === 'openssh') return this.openssh.exec(target, argv);
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
    if (this.openssh.has(uri)) return this.openssh.stats(uri);
    const c = this.counters.get(uri) ?? {connectionsOpened: 0, closedBytesIn: 0, closedBytesOut: 0};
    const live = (this.pools.get(uri) ?? []).filter((p) => !p.dead);
    return {
      connectionsOpened: c.connectionsOpened,
      connectionsOpen: live.filter((p) => p.client !== undefined).length,
      channelsOpen: live.reduce((n, p) => n + p.active, 0),
      bytesIn: c.closedBytesIn + live.reduce((n, p) => n + bytesIn(p), 0),
      bytesOut: c.closedBytesOut + live.reduce((n, p) => n + bytesOut(p), 0),
    };
  }

  /** Number of authenticated connections ever opened to the machine. */
  connectionsOpened(target: SshTarget | string): number {
    return this.stats(target).connectionsOpened;
  }

  /** Closes the connections of one machine (e.g. after it was removed from the machines file). */
  closeMachine(uri: string): void {
    for (const conn of [...(this.pools.get(uri) ?? [])]) this.dropConnection(uri, conn);
    this.openssh.closeMachine(uri);
    this.routes.delete(uri);
  }

  closeAll(): void {
    this.closed = true;
    for (const uri of [...this.pools.keys()]) this.closeMachine(uri);
    this.openssh.closeAll();
    for (const j of [...this.jumps.values()]) this.dropJump(j);
  }

  /** PID of the OpenSSH ControlMaster of a machine on the openssh transport. */
  openSshMasterPid(uri: string): number | undefined {
    return this.openssh.masterPid(uri);
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
      c.closedBytesIn += bytesIn(conn);
      c.closedBytesOut += bytesOut(conn);
      if (conn.jump) this.releaseJump(conn.jump);
    }
    const list = this.pools.get(uri);
    if (list) {
      const i = list.indexOf(conn);
      if (i >= 0) list.splice(i, 1);
    }
    conn.client?.end();
    conn.socket?.destroy();
  }

  /** Reads a private key; `required` (column 3) makes every problem an error, other IdentityFiles are skipped when unusable. */
  private async readKey(uri: string, file: string, required: boolean): Promise<Buffer | undefined> {
    let key: Buffer;
    try {
      key = await readFile(file);
    } catch (e) {
      if (!required) return undefined;
      const err = e as NodeJS.ErrnoException;
      throw new SshTransportError('key-file', uri, `cannot read SSH key '${file}': ${err.code ?? err.message}`, {cause: e});
    }
    const parsed = utils.parseKey(key);
    const first = Array.isArray(parsed) ? parsed[0] : parsed;
    if (first instanceof Error || first === undefined) {
      if (!required) return undefined;
      const why = first instanceof Error ? first.message : 'no key found';
      throw new SshTransportError('key-file', uri, `cannot use SSH key '${file}': ${why}`);
    }
    if (first.isPrivateKey && !first.isPrivateKey()) {
      if (!required) return undefined;
      throw new SshTransportError('key-file', uri, `SSH key '${file}' is a public key, not a private key`);
    }
    return key;
  }

  /**
   * Authentication methods in the order OpenSSH tries them: the machines file's key (column 3, as `ssh -i`), the
   * agent's keys (IdentityAgent, else SSH_AUTH_SOCK), then the IdentityFile keys of the configuration.
   */
  private async authMethods(uri: string, r: ResolvedSsh, explicitKey: string | undefined, who: string): Promise<AuthMethod[]> {
    const username = r.user;
    const files: AuthMethod[] = [];
    if (explicitKey !== undefined) {
      files.push({type: 'publickey', username, key: (await this.readKey(uri, explicitKey, true))!});
    }
    for (const f of r.identityFiles) {
      if (f === explicitKey) continue;
      const key = await this.readKey(uri, f, false);
      if (key) files.push({type: 'publickey', username, key});
    }
    const agent = r.agent !== undefined && existsSync(r.agent) && !(r.identitiesOnly && files.length > 0) ? r.agent : undefined;
    const methods: AuthMethod[] = explicitKey !== undefined ? [files[0]!] : [];
    if (agent !== undefined) methods.push({type: 'agent', username, agent});
    methods.push(...(explicitKey !== undefined ? files.slice(1) : files));
    if (methods.length === 0) {
      throw new SshTransportError(
        'key-file',
        uri,
        `${who}no SSH key: none given in the machines file (column 3), no IdentityFile of the SSH configuration exists, and no ssh-agent (SSH_AUTH_SOCK${r.agent !== undefined ? ` ${r.agent} does not exist` : ' is not set'})`,
      );
    }
    return methods;
  }

  private async hostKeyPolicy(
    uri: string,
    pinnedLine: string | undefined,
    r: ResolvedSsh,
  ): Promise<{
    verify: (key: Buffer) => HostKeyVerdict | {status: 'pinned-ok'} | {status: 'pinned-mismatch'; expected: string};
    algorithms: string[] | undefined;
    files: string[];
  }> {
    if (pinnedLine !== undefined) {
      let pinned: {keyType: string; keyBlob: Buffer};
      try {
        pinned = publicKeyLineToBlob(pinnedLine);
      } catch (e) {
        throw new SshTransportError('host-key', uri, `pinned host key is unusable: ${(e as Error).message}`);
      }
      const expected = fingerprintSha256(pinned.keyBlob);
      return {
        verify: (key) =>
          key.length === pinned.keyBlob.length && timingSafeEqual(key, pinned.keyBlob)
            ? {status: 'pinned-ok'}
            : {status: 'pinned-mismatch', expected},
        algorithms: hostKeyAlgorithms([pinned.keyType]),
        files: [],
      };
    }
    const files = this.explicitKnownHosts ?? (r.fromSsh ? r.knownHostsFiles : this.knownHostsFiles);
    const known = await loadKnownHosts(files);
    return {
      verify: (key) => checkHostKey(known.entries, r.hostKeyName, r.port, key),
      algorithms: hostKeyAlgorithms(knownKeyTypes(known.entries, r.hostKeyName, r.port)),
      files,
    };
  }

  /** A TCP connection with its own timeout; `onSocket` sees the socket at once (so it can be destroyed meanwhile). */
  private tcp(uri: string, hostIn: string, port: number, deadline: number, onSocket: (s: Socket) => void): Promise<Socket> {
    const host = hostIn.startsWith('[') ? hostIn.slice(1, -1) : hostIn;
    return new Promise<Socket>((resolve, reject) => {
      const s = netConnect({host, port});
      onSocket(s);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new SshTransportError('timeout', uri, `TCP connect to ${host}:${port} timed out after ${this.connectTimeoutMs} ms`));
      }, Math.max(1, deadline - Date.now()));
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        s.removeAllListeners('close');
        s.setNoDelay(true);
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
    });
  }

  /** A `direct-tcpip` channel through a jump host's connection to host:port. */
  private forward(uri: string, jump: JumpConnection, host: string, port: number): Promise<ClientChannel> {
    const client = jump.client;
    const label = hopLabel(jump.hop);
    if (!client || jump.dead) return Promise.reject(new SshTransportError('lost', uri, `connection to ProxyJump host ${label} lost`));
    return new Promise((resolve, reject) => {
      try {
        client.forwardOut('127.0.0.1', 0, host.replace(/^\[(.*)\]$/, '$1'), port, (err, channel) => {
          if (err) reject(new SshTransportError('connect', uri, `ProxyJump host ${label} cannot open a connection to ${host}:${port}: ${err.message}`, {cause: err}));
          else resolve(channel);
        });
      } catch (e) {
        reject(new SshTransportError('lost', uri, `connection to ProxyJump host ${label} lost: ${(e as Error).message}`, {cause: e}));
      }
    });
  }

  /** The pooled connection to the last of `hops` (through the ones before it), with one more user. */
  private acquireJump(uri: string, hops: ResolvedSsh[]): JumpConnection {
    const key = hops.map(hopLabel).join(' > ');
    const existing = this.jumps.get(key);
    if (existing && !existing.dead) {
      existing.users++;
      return existing;
    }
    const hop = hops[hops.length - 1]!;
    const j: JumpConnection = {key, hop, client: undefined, ready: Promise.resolve(), users: 1, dead: false, parent: undefined, sock: undefined};
    this.jumps.set(key, j);
    j.ready = (async () => {
      const deadline = Date.now() + this.connectTimeoutMs;
      const who = `ProxyJump host ${hopLabel(hop)}: `;
      if (hops.length > 1) {
        j.parent = this.acquireJump(uri, hops.slice(0, -1));
        await j.parent.ready;
        j.sock = await this.forward(uri, j.parent, hop.hostname, hop.port);
      } else {
        j.sock = await this.tcp(uri, hop.hostname, hop.port, deadline, (s) => (j.sock = s));
      }
      if (j.dead) throw new SshTransportError('closed', uri, 'connection pool is closed');
      const auth = await this.authMethods(uri, hop, undefined, who);
      const policy = await this.hostKeyPolicy(uri, undefined, hop);
      const client = new Client();
      client.setMaxListeners(0);
      j.client = client;
      await this.handshake(uri, who, client, j.sock, hop, auth, policy, deadline, undefined);
      client.on('close', () => this.dropJump(j));
      client.on('error', () => this.dropJump(j));
      if (j.dead) throw new SshTransportError('closed', uri, 'connection pool is closed');
    })();
    j.ready.catch(() => this.dropJump(j));
    return j;
  }

  private releaseJump(j: JumpConnection): void {
    j.users--;
    if (j.users <= 0) this.dropJump(j);
  }

  private dropJump(j: JumpConnection): void {
    if (j.dead) return;
    j.dead = true;
    if (this.jumps.get(j.key) === j) this.jumps.delete(j.key);
    j.client?.end();
    j.sock?.destroy();
    if (j.parent) this.releaseJump(j.parent);
  }

  /** The SSH handshake on an established byte stream: host key check, then authentication. */
  private async handshake(
    uri: string,
    who: string,
    client: SshClient,
    sock: Socket | Duplex,
    r: ResolvedSsh,
    authHandler: AuthMethod[],
    policy: Awaited<ReturnType<SshConnectionPool['hostKeyPolicy']>>,
    deadline: number,
    meter: {in: number; out: number} | undefined,
  ): Promise<void> {
    let hostKeyProblem: SshTransportError | undefined;
    const pinnedWhere = who === '' ? 'not pinned in the machines file (column 8) and ' : '';
    const config: ConnectConfig = {
      sock: sock as Socket,
      username: r.user,
      authHandler,
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
              `${who}host key changed: the server offered ${seen} but known_hosts (${where}) has ${expected.join(', ')}; refusing to connect`,
              {fingerprint: seen, expected},
            );
            return false;
          }
          case 'revoked':
            hostKeyProblem = new SshTransportError(
              'host-key',
              uri,
              `${who}host key ${seen} is marked @revoked in ${verdict.entry.file}:${verdict.entry.line}; refusing to connect`,
              {fingerprint: seen},
            );
            return false;
          case 'unknown':
            hostKeyProblem = new SshTransportError(
              'host-key',
              uri,
              `${who}unknown host key ${seen}: ${pinnedWhere}not in known_hosts (${policy.files.join(', ')}); refusing to connect`,
              {fingerprint: seen},
            );
            return false;
        }
      },
    };
    if (policy.algorithms) config.algorithms = {serverHostKey: policy.algorithms as never};
    if (meter) {
      const write = sock.write.bind(sock) as (...a: unknown[]) => boolean;
      (sock as {write: unknown}).write = (chunk: Buffer | string, ...rest: unknown[]) => {
        meter.out += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
        return write(chunk, ...rest);
      };
    }
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      client.once('ready', () => {
        settled = true;
        // Counted from here: a 'data' listener added before ssh2's own would let early bytes pass it by.
        if (meter) sock.on('data', (c: Buffer) => (meter.in += c.length));
        resolve();
      });
      client.on('error', (e: Error & {level?: string}) => {
        if (settled) return;
        settled = true;
        if (hostKeyProblem) reject(hostKeyProblem);
        else if (e.level === 'client-authentication') {
          reject(new SshTransportError('auth', uri, `${who}authentication as '${config.username}' refused: ${e.message}`, {cause: e}));
        } else if (e.level === 'client-timeout') {
          reject(new SshTransportError('timeout', uri, `${who}SSH handshake timed out after ${this.connectTimeoutMs} ms`, {cause: e}));
        } else {
          reject(new SshTransportError('connect', uri, `${who}SSH handshake failed: ${e.message}`, {cause: e}));
        }
      });
      client.on('close', () => {
        if (!settled) {
          settled = true;
          reject(hostKeyProblem ?? new SshTransportError('connect', uri, `${who}connection closed during the SSH handshake`));
        }
      });
      client.connect(config);
    });
  }

  private async connect(target: SshTarget, conn: PooledConnection): Promise<void> {
    const uri = target.uri;
    const deadline = Date.now() + this.connectTimeoutMs;
    const fail = (e: unknown): never => {
      this.dropConnection(uri, conn);
      throw e;
    };
    let route: Route;
    let auth: AuthMethod[];
    let policy: Awaited<ReturnType<SshConnectionPool['hostKeyPolicy']>>;
    try {
      route = await this.route(target);
      auth = await this.authMethods(uri, route.resolved, target.sshKey, '');
      policy = await this.hostKeyPolicy(uri, target.publicHostKey, route.resolved);
    } catch (e) {
      return fail(e);
    }
    if (conn.dead) return fail(new SshTransportError('closed', uri, 'connection pool is closed'));
    const r = route.resolved;

    let sock: Socket | Duplex;
    if (route.hops.length > 0) {
      const jump = this.acquireJump(uri, route.hops);
      conn.jump = jump;
      conn.meter = {in: 0, out: 0};
      try {
        await jump.ready;
        sock = await this.forward(uri, jump, r.hostname, r.port);
      } catch (e) {
        return fail(e);
      }
    } else {
      // TCP first, with its own timeout, so the socket's byte counters cover the whole session.
      sock = await this.tcp(uri, r.hostname, r.port, deadline, (s) => (conn.socket = s)).catch(fail);
    }
    if (conn.dead) {
      sock.destroy();
      return fail(new SshTransportError('closed', uri, 'connection pool is closed'));
    }
    const client = new Client();
    client.setMaxListeners(0);
    conn.client = client;
    if (!(sock instanceof Object && 'bytesRead' in sock)) {
      // A forwarding channel: destroyed with the connection, like the TCP socket.
      const channel = sock;
      client.once('close', () => channel.destroy());
    }
    await this.handshake(uri, '', client, sock, r, auth, policy, deadline, conn.meter).catch(fail);

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
