// `unlock`: crash clean-up with the C++ runner's `--unlock` semantics (docs/hydra-compat.md, "Runner lock and clearBusy"). Refused while
// any queue runner holds a lock file of this data directory (naming its pid) or a live session holds the
// database's runner lock (db/runner-advisory-lock.ts, naming it); otherwise, holding both meanwhile, runs clearBusy
// (`UPDATE BuildSteps SET busy = 0, status = 3, stopTime = NULL WHERE busy != 0`: steps left running by a
// crash become Aborted) and deletes the SystemStatus 'queue-runner' row, in one transaction. Admin only.
import type pg from 'pg';
import {acquireRunnerLock, runnerLockHolder, RunnerLockBusyError, type RunnerLock} from '../scheduler/runner-lock.js';
import {
  RunnerDbLock,
  RunnerDbLockBusyError,
  describeLockSession,
  runnerLockSession,
  type RunnerLockSession,
} from '../db/runner-advisory-lock.js';
import {clearBusySteps} from '../db/runner-sql.js';
import {settingsOfPool, type ConnectionSettings} from '../db/scram-client.js';
import {ActionError} from './errors.js';
import type {Actor} from './actor.js';
import {performAction, type ActionOptions, type ActionResult} from './perform.js';

export type UnlockResult = ActionResult & {
  /** Steps that were busy and are now Aborted (status 3). */
  steps: {build: number; stepnr: number}[];
  /** A SystemStatus 'queue-runner' row existed and was deleted. */
  systemStatusDeleted: boolean;
  /** The database's runner lock was free (unlock is refused while a live session holds it). */
  databaseLock: 'free';
};

function busy(holder: {file: string; pid: number | null}): ActionError {
  return new ActionError(
    'refused',
    `a queue runner holds ${holder.file}${holder.pid ? ` (pid ${holder.pid})` : ''}; unlock is only for a runner that is no longer running`,
    {file: holder.file, pid: holder.pid},
  );
}

function dbBusy(holder: RunnerLockSession | null): ActionError {
  return new ActionError(
    'refused',
    `a queue runner holds the database's runner lock: ${holder ? describeLockSession(holder) : 'a session that just ended'}; ` +
      'unlock is only for a runner that is no longer running',
    {databaseLock: holder},
  );
}

export async function unlockRunner(
  pool: pg.Pool,
  actor: Actor,
  dataDir: string,
  opts: ActionOptions & {connection?: ConnectionSettings} = {},
): Promise<UnlockResult> {
  let lock: RunnerLock | null = null;
  let dbLock: RunnerDbLock | null = null;
  try {
    return await performAction(
      pool,
      actor,
      {
        action: 'unlock',
        privilege: 'admin',
        scope: `queue runner lock in ${dataDir}`,
        async select() {
          const holder = runnerLockHolder(dataDir);
          if (holder) throw busy(holder);
          const session = await runnerLockSession(pool);
          if (session) throw dbBusy(session);
          return {targets: [], projects: []};
        },
        async apply(client) {
          if (!opts.dryRun) {
            try {
              lock = await acquireRunnerLock(dataDir);
            } catch (e) {
              if (e instanceof RunnerLockBusyError) throw busy({file: e.file, pid: e.holderPid});
              throw e;
            }
            try {
              dbLock = await RunnerDbLock.acquire(opts.connection ?? settingsOfPool(pool), {applicationName: `hydra-ops unlock pid ${process.pid}`});
            } catch (e) {
              if (e instanceof RunnerDbLockBusyError) throw dbBusy(e.holder);
              throw e;
            }
          }
          const steps = {
            rows: dbLock
              ? await clearBusySteps(client, dbLock)
              : (await client.query<{build: number; stepnr: number}>('SELECT build, stepnr FROM BuildSteps WHERE busy != 0')).rows,
          };
          const status = await client.query("DELETE FROM SystemStatus WHERE what = 'queue-runner'");
          const list = steps.rows.sort((a, b) => a.build - b.build || a.stepnr - b.stepnr);
          return {changed: [], resultCount: list.length, steps: list, systemStatusDeleted: (status.rowCount ?? 0) > 0, databaseLock: 'free' as const};
        },
      },
      opts,
    );
  } finally {
    await (dbLock as RunnerDbLock | null)?.release();
    await (lock as RunnerLock | null)?.release();
  }
}
