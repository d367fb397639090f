// Is another queue runner alive on this database? The console asks before it runs the scheduler
// in-process, so it never becomes a second runner beside a daemon with another data directory, or
// beside Hydra's own runner. Signals, strongest first:
//   1. a session holds the database's runner lock (db/runner-advisory-lock.ts): a hydra-ops runner;
//   2. a lock file of our data directory is held (runner-lock.ts): any runner sharing it;
//   3. a configured REST endpoint answers /status (Hydra's `queue_runner_endpoint`, or an explicitly
//      configured hydra-ops statusAddress) — Hydra's Rust runner has no other sign of life;
//   4. SystemStatus('queue-runner') is fresh: its `time` at most SYSTEM_STATUS_FRESH_SEC old, or it
//      is rewritten when asked with NOTIFY dump_status (Hydra's C++ runner writes the row only on
//      start and on that notification; hydra-ops' daemon also every 10 s);
//   5. busy BuildSteps rows whose newest start is at most BUSY_RECENT_SEC old: someone is building,
//      even if it shows no other sign (older busy rows are what a crash leaves; `unlock` clears them).
// observeRunners() gathers the signals; otherRunner() and decideConsoleRunner() are pure.
import {newClient, type ConnectionSettings} from '../db/scram-client.js';
import type {Queryable} from '../db/queryable.js';
import {describeLockSession, runnerLockSession, type RunnerLockSession} from '../db/runner-advisory-lock.js';
import {runnerLockHolder} from './runner-lock.js';

export const SYSTEM_STATUS_FRESH_SEC = 60;
export const BUSY_RECENT_SEC = 600;

export interface PresenceObservations {
  lockHolder: RunnerLockSession | null;
  lockFile: {file: string; pid: number | null} | null;
  /** REST endpoints that answered /status with a runner that is up. */
  rest: Array<{url: string; source: 'queue-runner-endpoint' | 'hydra-ops'}>;
  /** The SystemStatus('queue-runner') row: its age and whether it answered dump_status just now. */
  systemStatus: {ageSec: number | null; answered: boolean; pid: number | null} | null;
  busy: {count: number; newestAgeSec: number | null};
}

export type OtherRunnerKind = 'lock-holder' | 'lock-file' | 'rest' | 'system-status' | 'busy-steps';

export interface OtherRunner {
  kind: OtherRunnerKind;
  /** For the header: "attached to <description>". */
  description: string;
}

export interface PresenceRules {
  systemStatusFreshSec: number;
  busyRecentSec: number;
}

const DEFAULT_RULES: PresenceRules = {systemStatusFreshSec: SYSTEM_STATUS_FRESH_SEC, busyRecentSec: BUSY_RECENT_SEC};

const secs = (n: number) => `${Math.max(0, Math.round(n))} s`;

/** The runner found alive on the database, if any (strongest signal first). */
export function otherRunner(o: PresenceObservations, rules: PresenceRules = DEFAULT_RULES): OtherRunner | null {
  if (o.lockHolder) {
    const h = o.lockHolder;
    const description =
      h.runnerPid !== null ? `hydra-ops runner pid ${h.runnerPid} on ${h.runnerHost} (lock holder)` : `${describeLockSession(h)} (lock holder)`;
    return {kind: 'lock-holder', description};
  }
  if (o.lockFile) return {kind: 'lock-file', description: `runner pid ${o.lockFile.pid ?? '?'} (holds ${o.lockFile.file})`};
  const rest = o.rest[0];
  if (rest) {
    const who = rest.source === 'queue-runner-endpoint' ? "Hydra's queue runner" : 'the queue runner';
    return {kind: 'rest', description: `${who} at ${rest.url} (REST status answering)`};
  }
  const s = o.systemStatus;
  if (s && (s.answered || (s.ageSec !== null && s.ageSec <= rules.systemStatusFreshSec))) {
    const pid = s.pid !== null ? ` pid ${s.pid}` : '';
    return {kind: 'system-status', description: `Hydra's queue runner${pid} (SystemStatus ${s.ageSec !== null ? `${secs(s.ageSec)} ago` : 'answered'})`};
  }
  if (o.busy.count > 0 && o.busy.newestAgeSec !== null && o.busy.newestAgeSec <= rules.busyRecentSec) {
    return {
      kind: 'busy-steps',
      description: `an unknown runner (${o.busy.count} busy step${o.busy.count === 1 ? '' : 's'}, newest started ${secs(o.busy.newestAgeSec)} ago; if none runs: hydra-ops unlock)`,
    };
  }
  return null;
}

export type ConsoleRunnerDecision =
  | {action: 'run'}
  | {action: 'attach'; runner: OtherRunner; note: string}
  | {action: 'none'; note: string};

export const NO_RUNNER_NOTE = 'start one with hydra-ops --daemon, or open the console with --scheduler';

/**
 * Whether the console runs the scheduler in-process. `scheduler`: --scheduler (true), --no-scheduler
 * (false) or neither (undefined). The embedded database runs it by default; a configured server only
 * with --scheduler. Never while another runner is alive.
 */
export function decideConsoleRunner(i: {
  observations: PresenceObservations;
  database: 'embedded' | 'server';
  scheduler: boolean | undefined;
  /** Read-only mode: never run the scheduler (it writes rows and migrations). */
  readonly?: boolean;
  rules?: PresenceRules;
}): ConsoleRunnerDecision {
  const other = otherRunner(i.observations, i.rules);
  if (other) return {action: 'attach', runner: other, note: other.description};
  if (i.readonly) return {action: 'none', note: 'read-only: the console runs no scheduler; start one with hydra-ops --daemon'};
  if (i.scheduler === false) return {action: 'none', note: '--no-scheduler: start one with hydra-ops --daemon'};
  if (i.scheduler === true || i.database === 'embedded') return {action: 'run'};
  return {action: 'none', note: NO_RUNNER_NOTE};
}

export interface ObserveOptions {
  pool: Queryable;
  /** For the dump_status exchange (a dedicated LISTEN connection). */
  connection: ConnectionSettings;
  dataDir: string;
  /** REST base URLs to try (`http://host:port`), with where they come from. */
  rest?: Array<{url: string; source: 'queue-runner-endpoint' | 'hydra-ops'}>;
  /** How long a stale SystemStatus row gets to answer dump_status (ms, default 1500). */
  dumpStatusWaitMs?: number;
  restTimeoutMs?: number;
  now?: () => number;
  fetch?: typeof fetch;
}

async function restUp(url: string, timeoutMs: number, doFetch: typeof fetch): Promise<boolean> {
  try {
    const res = await doFetch(`${url.replace(/\/+$/, '')}/status`, {signal: AbortSignal.timeout(timeoutMs)});
    if (!res.ok) return false;
    const doc = (await res.json()) as {queueRunner?: {status?: unknown}; status?: unknown};
    return (doc.queueRunner?.status ?? doc.status) === 'up';
  } catch {
    return false;
  }
}

interface StatusRow {
  time: number | null;
  pid: number | null;
}

async function statusRow(db: Queryable): Promise<StatusRow | null> {
  const {rows} = await db.query<{status: unknown}>("SELECT status FROM SystemStatus WHERE what = 'queue-runner'");
  if (rows.length === 0) return null;
  const raw = rows[0]!.status;
  const doc = (typeof raw === 'string' ? JSON.parse(raw) : raw) as Record<string, unknown>;
  if (doc?.status !== 'up') return null;
  return {
    time: typeof doc.time === 'number' ? doc.time : null,
    pid: typeof doc.pid === 'number' ? doc.pid : null,
  };
}

/** NOTIFY dump_status and wait for status_dumped (as `hydra-queue-runner --status` does; docs/hydra-compat.md, "Status documents and metrics"). */
async function dumpStatusAnswered(connection: ConnectionSettings, waitMs: number): Promise<boolean> {
  const client = newClient(connection, {application_name: 'hydra-ops console probe'});
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('LISTEN status_dumped');
    const answered = new Promise<boolean>((resolve) => {
      client.on('notification', (n) => n.channel === 'status_dumped' && resolve(true));
      setTimeout(() => resolve(false), waitMs).unref();
    });
    await client.query('NOTIFY dump_status');
    return await answered;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Gathers the signals; a signal that cannot be read (no schema yet, no table) counts as absent. */
export async function observeRunners(o: ObserveOptions): Promise<PresenceObservations> {
  const now = o.now ?? Date.now;
  const doFetch = o.fetch ?? fetch;
  const lockHolder = await runnerLockSession(o.pool).catch(() => null);
  const lockFile = runnerLockHolder(o.dataDir);
  const rest: PresenceObservations['rest'] = [];
  if (!lockHolder && !lockFile) {
    const answers = await Promise.all((o.rest ?? []).map(async (r) => ((await restUp(r.url, o.restTimeoutMs ?? 1000, doFetch)) ? r : null)));
    for (const a of answers) if (a) rest.push(a);
  }
  let systemStatus: PresenceObservations['systemStatus'] = null;
  let row = await statusRow(o.pool).catch(() => null);
  if (row) {
    const age = (r: StatusRow) => (r.time !== null ? now() / 1000 - r.time : null);
    let answered = false;
    const a0 = age(row);
    if (!lockHolder && !lockFile && rest.length === 0 && (a0 === null || a0 > SYSTEM_STATUS_FRESH_SEC)) {
      answered = await dumpStatusAnswered(o.connection, o.dumpStatusWaitMs ?? 1500);
      if (answered) row = (await statusRow(o.pool).catch(() => null)) ?? row;
    }
    systemStatus = {ageSec: age(row), answered, pid: row.pid};
  }
  const busy = await o.pool
    .query<{n: number; newest: number | null}>('SELECT count(*)::int AS n, max(startTime) AS newest FROM BuildSteps WHERE busy != 0')
    .then((r) => r.rows[0]!)
    .catch(() => ({n: 0, newest: null}));
  return {
    lockHolder,
    lockFile,
    rest,
    systemStatus,
    busy: {count: busy.n, newestAgeSec: busy.newest !== null ? now() / 1000 - Number(busy.newest) : null},
  };
}
