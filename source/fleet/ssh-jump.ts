// ProxyJump chaining for the ssh2 transport: each hop is a pooled ssh2 connection, shared by every connection that
// goes through it, whose `direct-tcpip` channels carry the next hop's (or the machine's) connection — as
// `ssh -J a,b` reaches the machine through b, and b through a.
import ssh2 from 'ssh2';
import type {ClientChannel, Client as SshClient} from 'ssh2';
import type {Socket} from 'node:net';
import type {Duplex} from 'node:stream';
import type {ResolvedSsh} from './ssh-config.js';
import {SshTransportError} from './ssh-common.js';
import {authMethods, handshake, hostKeyPolicy, tcp, type Ssh2Settings} from './ssh2-connect.js';

const {Client} = ssh2;

/** A pooled connection to a ProxyJump hop, shared by every connection that goes through it. */
export interface JumpConnection {
  key: string;
  hop: ResolvedSsh;
  client: SshClient | undefined;
  ready: Promise<void>;
  users: number;
  dead: boolean;
  parent: JumpConnection | undefined;
  sock: Socket | Duplex | undefined;
}

export const hopLabel = (h: ResolvedSsh): string => `${h.user}@${h.hostname}:${h.port}`;

/** The pooled connections to ProxyJump hops, keyed by the chain that reaches them. */
export class ProxyJumps {
  private readonly jumps = new Map<string, JumpConnection>();

  constructor(private readonly s: Ssh2Settings) {}

  /** A `direct-tcpip` channel through a jump host's connection to host:port. */
  forward(uri: string, jump: JumpConnection, host: string, port: number): Promise<ClientChannel> {
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
  acquire(uri: string, hops: ResolvedSsh[]): JumpConnection {
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
      const deadline = Date.now() + this.s.connectTimeoutMs;
      const who = `ProxyJump host ${hopLabel(hop)}: `;
      if (hops.length > 1) {
        j.parent = this.acquire(uri, hops.slice(0, -1));
        await j.parent.ready;
        j.sock = await this.forward(uri, j.parent, hop.hostname, hop.port);
      } else {
        j.sock = await tcp(this.s, uri, hop.hostname, hop.port, deadline, (s) => (j.sock = s));
      }
      if (j.dead) throw new SshTransportError('closed', uri, 'connection pool is closed');
      const auth = await authMethods(uri, hop, undefined, who);
      const policy = await hostKeyPolicy(this.s, uri, undefined, hop);
      const client = new Client();
      client.setMaxListeners(0);
      j.client = client;
      await handshake(this.s, uri, who, client, j.sock, hop, auth, policy, deadline, undefined);
      client.on('close', () => this.drop(j));
      client.on('error', () => this.drop(j));
      if (j.dead) throw new SshTransportError('closed', uri, 'connection pool is closed');
    })();
    j.ready.catch(() => this.drop(j));
    return j;
  }

  release(j: JumpConnection): void {
    j.users--;
    if (j.users <= 0) this.drop(j);
  }

  drop(j: JumpConnection): void {
    if (j.dead) return;
    j.dead = true;
    if (this.jumps.get(j.key) === j) this.jumps.delete(j.key);
    j.client?.end();
    j.sock?.destroy();
    if (j.parent) this.release(j.parent);
  }

  closeAll(): void {
    for (const j of [...this.jumps.values()]) this.drop(j);
  }
}
