// The database-wide single-runner lock: a session-level PostgreSQL advisory lock held by every
// hydra-ops queue runner (daemon or console scheduler) on a dedicated connection for its lifetime,
// next to the lock files in the data directory (scheduler/runner-lock.ts). The lock files only
// exclude runners sharing a data directory; this lock excludes every hydra-ops runner on the same
// database, whatever its data directory or host. PostgreSQL frees it when the session ends (crash,
// kill, server restart), so it can never be stale.
//
// Key: the first 8 bytes of SHA-256("hydra-ops queue runner") read as a signed big-endian int64,
// RUNNER_LOCK_KEY = 4691883269048081648 (see README, "One runner per database"). In pg_locks it
// shows as locktype 'advisory', classid = key >> 32, objid = key & 0xffffffff, objsubid 1.
//
// If the lock connection dies, the lock is re-acquired on reconnect; while it is not held the
// holder object says so (`held`, `assertHeld()`), and 'lost' / 'regained' / 'taken' events tell the
// scheduler to stop or resume dispatching.
import {createHash} from 'node:crypto';
import {EventEmitter} from 'node:events';
import {hostname} from 'node:os';
import type pg from 'pg';
import {newClient, type ConnectionSettings} from './scram-client.js';
import type {Queryable} from './queryable.js';

export const RUNNER_LOCK_NAME = 'hydra-ops queue runner';
export const RUNNER_LOCK_KEY: bigint = createHash('sha256').update(RUNNER_LOCK_NAME).digest().readBigInt64BE(0);
const KEY_HI = String((RUNNER_LOCK_KEY >> 32n) & 0xffffffffn);
const KEY_LO = String(RUNNER_LOCK_KEY & 0xffffffffn);

/** A PostgreSQL session holding the runner lock, from pg_locks joined with pg_stat_activity. */
export interface RunnerLockSession {
  /** Backend pid on the database server. */
  backendPid: number;
  applicationName: string;
  /** Client address (null for a Unix socket, or when hidden from an unprivileged user). */
  clientAddr: string | null;
  clientHostname: string | null;
  clientPort: number | null;
  user: string | null;
  /** ISO time the session started (null when hidden). */
  backendStart: string | null;
  /** From a hydra-ops application_name ("hydra-ops runner pid N on HOST"): the runner's own pid and host. */
  runnerPid: number | null;
  runnerHost: string | null;
}

/** The application_name of a runner's lock connection (PostgreSQL keeps 63 bytes). */
export function runnerApplicationName(pid = process.pid, host = hostname()): string {
  return `hydra-ops runner pid ${pid} on ${host}`.slice(0, 63);
}

export function parseRunnerApplicationName(name: string): {pid: number; host: string} | null {
  const m = /^hydra-ops runner pid (\d+) on (\S+)/.exec(name);
  return m ? {pid: Number(m[1]), host: m[2]!} : null;
}

/** One line naming a holder, for errors and headers. */
export function describeLockSession(s: RunnerLockSession): string {
  const where = s.clientHostname ?? s.clientAddr ?? (s.clientAddr === null && s.backendStart !== null ? 'local socket' : 'unknown host');
  const who =
    s.runnerPid !== null ? `hydra-ops runner pid ${s.runnerPid} on ${s.runnerHost}` : `session "${s.applicationName || '(no application_name)'}"`;
  const since = s.backendStart ? `, connected since ${s.backendStart}` : '';
  return `${who} (database backend pid ${s.backendPid}, client ${where}${since})`;
}

/** Who holds the runner lock on this database right now (null: free). */
export async function runnerLockSession(db: Queryable): Promise<RunnerLockSession | null> {
  const {rows} = await db.query(
    `SELECT a.pid, coalesce(a.application_name, '') AS application_name, host(a.client_addr) AS client_addr,
            a.client_hostname, a.client_port, a.usename, a.backend_start
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
        AND l.classid::int8 = $1::int8 AND l.objid::int8 = $2::int8
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      LIMIT 1`,
    [KEY_HI, KEY_LO],
  );
  const r = rows[0];
  if (!r) return null;
  const parsed = parseRunnerApplicationName(r.application_name);
  return {
    backendPid: r.pid,
    applicationName: r.application_name,
    clientAddr: r.client_addr ?? null,
    clientHostname: r.client_hostname ?? null,
    clientPort: r.client_port ?? null,
    user: r.usename ?? null,
    backendStart: r.backend_start ? new Date(r.backend_start).toISOString() : null,
    runnerPid: parsed?.pid ?? null,
    runnerHost: parsed?.host ?? null,
  };
}

/** What runner-only statements demand: a held lock (see RunnerDbLock). */
export interface RunnerLockProof {
  readonly held: boolean;
  /** Backend pid of the session holding the lock (checked again inside the statement). */
  readonly backendPid: number | null;
  assertHeld(what?: string): void;
}

/**
 * SQL condition (for a WHERE clause) that is true only while the backend with pid $<n> holds the
 * runner lock, so a runner-only statement does nothing once the lock is gone, even mid-flight.
 */
export function lockHeldCondition(n: number): string {
  return `EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = $${n}::int AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                     AND l.classid::int8 = ${KEY_HI} AND l.objid::int8 = ${KEY_LO})`;
}

export class RunnerDbLockBusyError extends Error {
  constructor(readonly holder: RunnerLockSession | null) {
    super(
      `another queue runner holds the database's runner lock: ${holder ? describeLockSession(holder) : 'a session that just ended'}; ` +
        'stop it first (only one runner may work on a database)',
    );
    this.name = 'RunnerDbLockBusyError';
  }
}

export class RunnerDbLockNotHeldError extends Error {
  constructor(what: string) {
    super(`${what}: the database's runner lock is not held (connection lost or taken by another runner)`);
    this.name = 'RunnerDbLockNotHeldError';
  }
}

export interface RunnerDbLockOptions {
  applicationName?: string;
  /** Reconnect back-off bounds (ms). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** How often the lock connection is checked (ms; default 5000). */
  checkMs?: number;
}

/**
 * Proof that this process holds the runner lock. Statements that only the one runner of a database
 * may run (clearBusy, aborting steps it could not record) take it and call assertHeld() first.
 * Events: 'lost' (Error), 'regained' (), 'taken' (RunnerLockSession | null).
 */
export class RunnerDbLock extends EventEmitter implements RunnerLockProof {
  private client: pg.Client | null = null;
  private heldNow = false;
  private released = false;
  private timer: NodeJS.Timeout | null = null;
  private checkTimer: NodeJS.Timeout | null = null;
  private attempt = 0;
  /** Backend pid of the lock connection while held. */
  backendPid: number | null = null;

  private constructor(
    private readonly connection: ConnectionSettings,
    private readonly o: RunnerDbLockOptions,
  ) {
    super();
  }

  /** Takes the lock or throws RunnerDbLockBusyError naming the holder. */
  static async acquire(connection: ConnectionSettings, o: RunnerDbLockOptions = {}): Promise<RunnerDbLock> {
    const lock = new RunnerDbLock(connection, o);
    const r = await lock.tryOnce();
    if (r.ok) {
      lock.startChecks();
      return lock;
    }
    throw new RunnerDbLockBusyError(r.holder);
  }

  get held(): boolean {
    return this.heldNow && !this.released;
  }

  get applicationName(): string {
    return this.o.applicationName ?? runnerApplicationName();
  }

  assertHeld(what = 'runner-only statement'): void {
    if (!this.held) throw new RunnerDbLockNotHeldError(what);
  }

  private async tryOnce(): Promise<{ok: true} | {ok: false; holder: RunnerLockSession | null}> {
    const client = newClient(this.connection, {application_name: this.applicationName, keepAlive: true});
    client.on('error', (e) => this.onLost(client, e));
    client.on('end', () => this.onLost(client, new Error('connection ended')));
    try {
      await client.connect();
      const {rows} = await client.query('SELECT pg_try_advisory_lock($1::int8) AS ok, pg_backend_pid() AS pid', [RUNNER_LOCK_KEY.toString()]);
      if (rows[0].ok !== true) {
        const holder = await runnerLockSession(client).catch(() => null);
        client.removeAllListeners('end');
        await client.end().catch(() => {});
        return {ok: false, holder};
      }
      this.client = client;
      this.backendPid = rows[0].pid;
      this.heldNow = true;
      this.attempt = 0;
      return {ok: true};
    } catch (e) {
      client.removeAllListeners('end');
      await client.end().catch(() => {});
      throw e;
    }
  }

  private onLost(client: pg.Client, e: Error): void {
    if (this.client !== client) return;
    this.client = null;
    this.backendPid = null;
    const was = this.heldNow;
    this.heldNow = false;
    void client.end().catch(() => {});
    if (this.released) return;
    if (was) this.emit('lost', e);
    this.schedule();
  }

  private schedule(): void {
    if (this.released || this.timer) return;
    const min = this.o.minBackoffMs ?? 250;
    const max = this.o.maxBackoffMs ?? 5000;
    const delay = Math.min(max, min * 2 ** this.attempt);
    this.attempt++;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.reacquire();
    }, delay);
    this.timer.unref();
  }

  private async reacquire(): Promise<void> {
    if (this.released || this.heldNow) return;
    try {
      const r = await this.tryOnce();
      if (this.released) {
        await this.dropClient();
        return;
      }
      if (r.ok) this.emit('regained');
      else {
        this.emit('taken', r.holder);
        this.schedule();
      }
    } catch {
      this.schedule(); // the server is still away
    }
  }

  /** Periodic check of the lock connection, so a silently dead one is noticed. */
  private startChecks(): void {
    const ms = this.o.checkMs ?? 5000;
    this.checkTimer = setInterval(() => {
      const c = this.client;
      if (!c) return;
      c.query('SELECT 1').catch((e) => this.onLost(c, e instanceof Error ? e : new Error(String(e))));
    }, ms);
    this.checkTimer.unref();
  }

  private async dropClient(): Promise<void> {
    const c = this.client;
    this.client = null;
    this.heldNow = false;
    this.backendPid = null;
    if (!c) return;
    c.removeAllListeners('end');
    await c.query('SELECT pg_advisory_unlock($1::int8)', [RUNNER_LOCK_KEY.toString()]).catch(() => {});
    await c.end().catch(() => {});
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.checkTimer) clearInterval(this.checkTimer);
    this.timer = this.checkTimer = null;
    await this.dropClient();
  }
}

