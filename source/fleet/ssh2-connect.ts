// One ssh2 connection, step by step: the TCP connection (or a ProxyJump hop's forwarding channel), the host-key
// policy (the machines file's pinned key, else known_hosts), the authentication methods in OpenSSH's order, and the
// SSH handshake that checks the one and offers the other. The pool (ssh-transport.ts) and the ProxyJump hops
// (ssh-jump.ts) both connect through here.
import ssh2 from 'ssh2';
import type {AgentAuthMethod, PublicKeyAuthMethod, Client as SshClient, ConnectConfig} from 'ssh2';
import {connect as netConnect, type Socket} from 'node:net';
import {readFile} from 'node:fs/promises';
import {existsSync} from 'node:fs';
import type {Duplex} from 'node:stream';
import {timingSafeEqual} from 'node:crypto';
import {checkHostKey, fingerprintSha256, knownKeyTypes, loadKnownHosts, publicKeyLineToBlob, type HostKeyVerdict} from './known-hosts.js';
import type {ResolvedSsh} from './ssh-config.js';
import {SshTransportError} from './ssh-common.js';

const {utils} = ssh2;
export type AuthMethod = PublicKeyAuthMethod | AgentAuthMethod;

/** The pool's settings a connection needs. */
export interface Ssh2Settings {
  connectTimeoutMs: number;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  /** known_hosts files given to the pool, which override the ones `ssh -G` names. */
  explicitKnownHosts: string[] | undefined;
  /** known_hosts files for a host `ssh -G` did not resolve. */
  knownHostsFiles: string[];
}

/** How a server's host key is judged, and which host-key algorithms to offer first. */
export interface HostKeyPolicy {
  verify: (key: Buffer) => HostKeyVerdict | {status: 'pinned-ok'} | {status: 'pinned-mismatch'; expected: string};
  algorithms: string[] | undefined;
  files: string[];
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

/** Reads a private key; `required` (column 3) makes every problem an error, other IdentityFiles are skipped when unusable. */
export async function readKey(uri: string, file: string, required: boolean): Promise<Buffer | undefined> {
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
export async function authMethods(uri: string, r: ResolvedSsh, explicitKey: string | undefined, who: string): Promise<AuthMethod[]> {
  const username = r.user;
  const files: AuthMethod[] = [];
  if (explicitKey !== undefined) {
    files.push({type: 'publickey', username, key: (await readKey(uri, explicitKey, true))!});
  }
  for (const f of r.identityFiles) {
    if (f === explicitKey) continue;
    const key = await readKey(uri, f, false);
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

export async function hostKeyPolicy(
  s: Ssh2Settings,
  uri: string,
  pinnedLine: string | undefined,
  r: ResolvedSsh,
): Promise<HostKeyPolicy> {
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
  const files = s.explicitKnownHosts ?? (r.fromSsh ? r.knownHostsFiles : s.knownHostsFiles);
  const known = await loadKnownHosts(files);
  return {
    verify: (key) => checkHostKey(known.entries, r.hostKeyName, r.port, key),
    algorithms: hostKeyAlgorithms(knownKeyTypes(known.entries, r.hostKeyName, r.port)),
    files,
  };
}

/** A TCP connection with its own timeout; `onSocket` sees the socket at once (so it can be destroyed meanwhile). */
export function tcp(s: Ssh2Settings, uri: string, hostIn: string, port: number, deadline: number, onSocket: (s: Socket) => void): Promise<Socket> {
  const host = hostIn.startsWith('[') ? hostIn.slice(1, -1) : hostIn;
  return new Promise<Socket>((resolve, reject) => {
    const sock = netConnect({host, port});
    onSocket(sock);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new SshTransportError('timeout', uri, `TCP connect to ${host}:${port} timed out after ${s.connectTimeoutMs} ms`));
    }, Math.max(1, deadline - Date.now()));
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      sock.removeAllListeners('close');
      sock.setNoDelay(true);
      resolve(sock);
    });
    sock.once('close', () => {
      clearTimeout(timer);
      reject(new SshTransportError('closed', uri, 'connection pool is closed'));
    });
    sock.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new SshTransportError('connect', uri, `cannot connect to ${host}:${port}: ${e.code ?? e.message}`, {cause: e}));
    });
  });
}

/** The SSH handshake on an established byte stream: host key check, then authentication. */
export async function handshake(
  s: Ssh2Settings,
  uri: string,
  who: string,
  client: SshClient,
  sock: Socket | Duplex,
  r: ResolvedSsh,
  authHandler: AuthMethod[],
  policy: HostKeyPolicy,
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
    keepaliveInterval: s.keepaliveIntervalMs,
    keepaliveCountMax: s.keepaliveCountMax,
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
        reject(new SshTransportError('timeout', uri, `${who}SSH handshake timed out after ${s.connectTimeoutMs} ms`, {cause: e}));
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
