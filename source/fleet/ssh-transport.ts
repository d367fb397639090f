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
//
// Modules: ssh-common.ts (shared types, errors, quoting), ssh-route.ts (resolution and the transport choice),
// ssh2-connect.ts (one ssh2 connection: TCP, host keys, authentication), ssh-jump.ts (ProxyJump hops),
// ssh2-channel.ts (a command's exec channel as an ExecHandle).
import ssh2 from 'ssh2';
import type {Client as SshClient} from 'ssh2';
import type {Socket} from 'node:net';
import type {Duplex} from 'node:stream';
import {defaultKnownHostsFiles} from './known-hosts.js';
import {configFileFromEnv} from './ssh-config.js';
import {OpenSshTransport} from './openssh-transport.js';
import {
  SshTransportError,
  commandLine,
  serveCommand,
  type ExecHandle,
  type ExitStatus,
  type MachineTransportStats,
  type RunResult,
  type SshTarget,
} from './ssh-common.js';
import {SshRoutes, type Route} from './ssh-route.js';
import {authMethods, handshake, hostKeyPolicy, tcp, type AuthMethod, type HostKeyPolicy, type Ssh2Settings} from './ssh2-connect.js';
import {ProxyJumps, type JumpConnection} from './ssh-jump.js';
import {channelHandle} from './ssh2-channel.js';

const {Client} = ssh2;

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
  private readonly settings: Ssh2Settings;
  private readonly routes: SshRoutes;
  private readonly jumps: ProxyJumps;
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
    this.settings = {
      connectTimeoutMs: this.connectTimeoutMs,
      keepaliveIntervalMs: this.keepaliveIntervalMs,
      keepaliveCountMax: this.keepaliveCountMax,
      explicitKnownHosts: this.explicitKnownHosts,
      knownHostsFiles: this.knownHostsFiles,
    };
    this.routes = new SshRoutes({sshConfigFile: this.sshConfigFile, transportSetting: this.transportSetting, env: this.env});
    this.jumps = new ProxyJumps(this.settings);
  }

  /** How a machine is reached (resolved with `ssh -G`, cached for 30 s and until closeMachine). */
  route(target: SshTarget): Promise<Route> {
    return this.routes.route(target);
  }

  /** Which transport a machine uses, and why ('openssh' also when chosen explicitly). */
  async transportOf(target: SshTarget): Promise<{transport: 'ssh2' | 'openssh'; reason: string | undefined}> {
    const r = await this.route(target);
    return {transport: r.transport, reason: r.reason};
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
    this.jumps.closeAll();
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
      if (conn.jump) this.jumps.release(conn.jump);
    }
    const list = this.pools.get(uri);
    if (list) {
      const i = list.indexOf(conn);
      if (i >= 0) list.splice(i, 1);
    }
    conn.client?.end();
    conn.socket?.destroy();
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
    let policy: HostKeyPolicy;
    try {
      route = await this.route(target);
      auth = await authMethods(uri, route.resolved, target.sshKey, '');
      policy = await hostKeyPolicy(this.settings, uri, target.publicHostKey, route.resolved);
    } catch (e) {
      return fail(e);
    }
    if (conn.dead) return fail(new SshTransportError('closed', uri, 'connection pool is closed'));
    const r = route.resolved;

    let sock: Socket | Duplex;
    if (route.hops.length > 0) {
      const jump = this.jumps.acquire(uri, route.hops);
      conn.jump = jump;
      conn.meter = {in: 0, out: 0};
      try {
        await jump.ready;
        sock = await this.jumps.forward(uri, jump, r.hostname, r.port);
      } catch (e) {
        return fail(e);
      }
    } else {
      // TCP first, with its own timeout, so the socket's byte counters cover the whole session.
      sock = await tcp(this.settings, uri, r.hostname, r.port, deadline, (s) => (conn.socket = s)).catch(fail);
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
    await handshake(this.settings, uri, '', client, sock, r, auth, policy, deadline, conn.meter).catch(fail);

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
          resolve(channelHandle(uri, client, channel, () => this.release(uri, conn)));
        });
      } catch (e) {
        reject(new SshTransportError('lost', uri, `connection lost before the command started: ${(e as Error).message}`, {cause: e}));
      }
    });
  }
}
