// Where the embedded PostgreSQL listens. Every data directory gets its own server, so the
// address must be private to it:
//   - default: a Unix socket inside the cluster directory (`$HYDRA_DATA/pg/.s.PGSQL.5432`), no
//     TCP at all. The directory is 0700 and owned by the user the server runs as, so no other
//     (non-root) user can reach the server or put a socket of their own there. Port 5432 only
//     names the socket file, so `psql -h $HYDRA_DATA/pg -U postgres` works without -p;
//   - the socket path would exceed sun_path (107 bytes, see unix(7)), or the directory name
//     cannot be written in unix_socket_directories (a comma-separated list): loopback TCP on a
//     port derived from the directory's path, recorded in the identity file at initialisation;
//   - the operator set `embeddedPort`: loopback TCP on that port (for psql and other tools).
// Whatever the address, the server's identity is verified on every connect (embedded-identity.ts).
import {createHash} from 'node:crypto';
import {createServer} from 'node:net';
import {join, resolve} from 'node:path';

export type EmbeddedEndpoint =
  | {kind: 'socket'; dir: string; port: number; path: string}
  | {kind: 'tcp'; host: '127.0.0.1'; port: number; reason: 'embeddedPort' | 'derived'};

export const SOCKET_PORT = 5432;
/** sizeof(sockaddr_un.sun_path) on Linux is 108, including the terminating NUL. */
export const SUN_PATH_MAX = 107;
const DERIVED_BASE = 20000;
const DERIVED_SPAN = 12000;

export function socketPath(dir: string): string {
  return join(dir, `.s.PGSQL.${SOCKET_PORT}`);
}

/** Why the socket cannot live in `dir`, or null when it can. */
export function socketProblem(dir: string): string | null {
  const path = socketPath(dir);
  if (Buffer.byteLength(path) > SUN_PATH_MAX) return `the socket path ${path} is longer than ${SUN_PATH_MAX} bytes`;
  if (/[,"\\]/.test(dir) || dir !== dir.trim()) return `the directory name ${dir} cannot be used in unix_socket_directories`;
  return null;
}

/** A port in 20000..31999 (below Linux's ephemeral range) derived from the data directory's path. */
export function derivedPort(dir: string): number {
  const digest = createHash('sha256').update(resolve(dir)).digest();
  return DERIVED_BASE + (digest.readUInt32BE(0) % DERIVED_SPAN);
}

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const server = createServer();
    server.once('error', () => res(false));
    server.listen({port, host: '127.0.0.1', exclusive: true}, () => server.close(() => res(true)));
  });
}

/** The derived port, or the next free one after it (wrapping inside the range). */
export async function chooseDerivedPort(dir: string): Promise<number> {
  const first = derivedPort(dir);
  for (let i = 0; i < 64; i++) {
    const port = DERIVED_BASE + ((first - DERIVED_BASE + i) % DERIVED_SPAN);
    if (await portFree(port)) return port;
  }
  return first;
}

/**
 * The address for cluster `dir`: `explicitPort` (the embeddedPort setting) wins, then the socket,
 * then the recorded derived port (null: not chosen yet — initialisation chooses and records it).
 */
export function planEndpoint(dir: string, explicitPort: number | undefined, recordedPort: number | undefined): EmbeddedEndpoint | null {
  if (explicitPort !== undefined) return {kind: 'tcp', host: '127.0.0.1', port: explicitPort, reason: 'embeddedPort'};
  if (socketProblem(dir) === null) return {kind: 'socket', dir, port: SOCKET_PORT, path: socketPath(dir)};
  if (recordedPort !== undefined) return {kind: 'tcp', host: '127.0.0.1', port: recordedPort, reason: 'derived'};
  return null;
}

/** node-postgres host/port for the endpoint (a host starting with `/` is a socket directory). */
export function clientAddress(e: EmbeddedEndpoint): {host: string; port: number} {
  return e.kind === 'socket' ? {host: e.dir, port: e.port} : {host: e.host, port: e.port};
}

/** postgres command-line arguments that make the server listen on `e` and nowhere else. */
export function serverListenArgs(e: EmbeddedEndpoint): string[] {
  return e.kind === 'socket'
    ? ['-p', String(e.port), '-c', 'listen_addresses=', '-c', `unix_socket_directories=${e.dir}`]
    : ['-p', String(e.port), '-c', `listen_addresses=${e.host}`, '-c', 'unix_socket_directories='];
}

export function describeEndpoint(e: EmbeddedEndpoint): string {
  if (e.kind === 'socket') return `Unix socket ${e.path}`;
  return `${e.host}:${e.port} (${e.reason === 'embeddedPort' ? 'embeddedPort setting' : 'port derived from the data directory; the socket path would be too long'})`;
}
