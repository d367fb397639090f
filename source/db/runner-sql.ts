// Every statement the queue runner writes, exactly as Hydra's C++ runner writes
// them (src/hydra-queue-runner/*.cc; docs/hydra-compat.md, the sections from "Runner lock and clearBusy" on).
// Functions taking a `pg.PoolClient` expect to run inside the caller's transaction (see withTransaction).
//
// Longer than the other modules because it is every statement the runner writes, kept in one place to be compared
// with Hydra's C++ runner statement by statement.
import type pg from 'pg';
import type {Queryable} from './queryable.js';
import {withTransaction} from './transaction.js';
import type {NewBuildProduct} from './queries/builds.js';
import {lockHeldCondition, type RunnerLockProof} from './runner-advisory-lock.js';

export const BUSY = {
  preparing: 1,
  connecting: 10,
  sending: 20,
  building: 30,
  waitingForSlot: 35,
  receiving: 40,
  postprocessing: 50,
} as const;
export type BusyPhase = (typeof BUSY)[keyof typeof BUSY];

export const STATUS = {
  success: 0,
  failed: 1,
  depFailed: 2,
  aborted: 3,
  cancelled: 4,
  failedWithOutput: 6,
  timedOut: 7,
  cachedFailure: 8,
  unsupported: 9,
  logLimitExceeded: 10,
  narSizeLimitExceeded: 11,
  notDeterministic: 12,
} as const;

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

export async function notify(db: Queryable, channel: string, payload = ''): Promise<void> {
  await db.query('SELECT pg_notify($1, $2)', [channel, payload]);
}

/**
 * `build_finished <head>[\t<dependent>…]`, split into payloads below the 8000-byte limit; every
 * chunk repeats the head build id (docs/hydra-compat.md, "NOTIFY channels").
 */
export function buildFinishedPayloads(head: number, dependents: readonly number[], limit = 7000): string[] {
  const payloads: string[] = [];
  let current = String(head);
  for (const d of dependents) {
    const piece = `\t${d}`;
    if (current.length + piece.length > limit) {
      payloads.push(current);
      current = String(head);
    }
    current += piece;
  }
  payloads.push(current);
  return payloads;
}

export async function notifyBuildFinished(db: Queryable, head: number, dependents: readonly number[] = []): Promise<void> {
  for (const p of buildFinishedPayloads(head, dependents)) await notify(db, 'build_finished', p);
}

/**
 * clearBusy (docs/hydra-compat.md, "Runner lock and clearBusy"): anything left busy by a crash becomes Aborted. Only the database's one runner may do
 * this (any busy row may belong to a live runner), so it needs the held runner lock.
 */
export async function clearBusy(db: Queryable, lock: RunnerLockProof): Promise<number> {
  return (await clearBusySteps(db, lock)).length;
}

/** clearBusy, returning the steps it aborted. */
export async function clearBusySteps(db: Queryable, lock: RunnerLockProof): Promise<Array<{build: number; stepnr: number}>> {
  lock.assertHeld('clearBusy');
  const r = await db.query<{build: number; stepnr: number}>(
    `UPDATE BuildSteps SET busy = 0, status = 3, stopTime = NULL WHERE busy != 0 AND ${lockHeldCondition(1)} RETURNING build, stepnr`,
    [lock.backendPid],
  );
  return r.rows;
}

export interface QueuedBuildRow {
  id: number;
  jobset_id: number;
  project: string;
  jobset: string;
  job: string;
  drvpath: string;
  maxsilent: number | null;
  timeout: number | null;
  timestamp: number;
  globalpriority: number;
  priority: number;
  schedulingshares: number;
}

/** Ids of every queued build (cheap: partial index on finished = 0). */
export async function queuedBuildIds(db: Queryable): Promise<Array<{id: number; globalpriority: number}>> {
  const {rows} = await db.query('SELECT id, globalPriority AS globalpriority FROM Builds WHERE finished = 0');
  return rows;
}

/** Full rows for the given queued builds, in dispatch-friendly order. */
/** Is this build's row there and unfinished (the Rust runner's `/status/build/<id>/active`)? */
export async function buildUnfinished(db: Queryable, id: number): Promise<boolean> {
  const r = await db.query('SELECT 1 FROM builds WHERE id = $1 AND finished = 0', [id]);
  return (r.rowCount ?? 0) > 0;
}

export async function queuedBuildRows(db: Queryable, ids: readonly number[]): Promise<QueuedBuildRow[]> {
  if (ids.length === 0) return [];
  const {rows} = await db.query(
    `SELECT b.id, b.jobset_id, j.project, j.name AS jobset, b.job, b.drvPath AS drvpath, b.maxsilent, b.timeout,
            b.timestamp, b.globalPriority AS globalpriority, b.priority, j.schedulingShares AS schedulingshares
       FROM Builds b JOIN Jobsets j ON b.jobset_id = j.id
      WHERE b.id = ANY($1::int[]) AND b.finished = 0
      ORDER BY b.globalPriority DESC, b.id`,
    [ids],
  );
  return rows;
}

/** createBuild when the top-level .drv is gone (docs/hydra-compat.md, "Queue monitor"): abort without build_finished. */
export async function abortBuildMissingDrv(db: Queryable, id: number, now = nowSeconds()): Promise<boolean> {
  const r = await db.query(
    'UPDATE Builds SET finished = 1, buildStatus = 3, startTime = $2, stopTime = $2 WHERE id = $1 AND finished = 0',
    [id, now],
  );
  return (r.rowCount ?? 0) > 0;
}

export interface StepRowInput {
  build: number;
  type: 0 | 1;
  drvPath: string;
  busy: number;
  startTime: number | null;
  stopTime?: number | null;
  system: string | null;
  status?: number | null;
  propagatedFrom?: number | null;
  errorMsg?: string | null;
  machine: string;
  /** Output name → path (null when not known statically). */
  outputs: ReadonlyMap<string, string | null> | Array<[string, string | null]>;
}

/** createBuildStep (docs/hydra-compat.md, "Running a step"): allocate max(stepnr)+1 and insert, retrying on conflict; also inserts BuildStepOutputs. */
export async function insertBuildStep(client: pg.PoolClient | pg.ClientBase, s: StepRowInput): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const {rows} = await client.query('SELECT coalesce(max(stepnr), 0) + 1 AS nr FROM BuildSteps WHERE build = $1', [s.build]);
    const stepnr = Number(rows[0].nr);
    const r = await client.query(
      `INSERT INTO BuildSteps (build, stepnr, type, drvPath, busy, startTime, system, status, propagatedFrom, errorMsg, stopTime, machine)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING`,
      [s.build, stepnr, s.type, s.drvPath, s.busy, s.startTime, s.system, s.status ?? null, s.propagatedFrom ?? null, s.errorMsg ?? null, s.stopTime ?? null, s.machine],
    );
    if ((r.rowCount ?? 0) === 0) continue;
    for (const [name, path] of s.outputs) {
      await client.query('INSERT INTO BuildStepOutputs (build, stepnr, name, path) VALUES ($1, $2, $3, $4)', [s.build, stepnr, name, path]);
    }
    return stepnr;
  }
  throw new Error(`could not allocate a step number for build ${s.build}`);
}

/** Guarded phase change (docs/hydra-compat.md, "Busy phases"); returns false when the row is no longer busy. */
export async function updateStepPhase(db: Queryable, build: number, stepnr: number, busy: number): Promise<boolean> {
  const r = await db.query('UPDATE BuildSteps SET busy = $3 WHERE build = $1 AND stepnr = $2 AND busy != 0 AND status IS NULL', [build, stepnr, busy]);
  return (r.rowCount ?? 0) === 1;
}

export interface FinishStepInput {
  build: number;
  stepnr: number;
  status: number;
  errorMsg: string | null;
  startTime: number;
  stopTime: number;
  machine: string;
  overheadMs: number;
  timesBuilt: number;
  isNonDeterministic: boolean;
  logPath: string | null;
  /** Realised output paths on success. */
  outputs?: ReadonlyMap<string, string>;
}

/** finishBuildStep (docs/hydra-compat.md, "Running a step") + `step_finished` (log path or `-`). */
export async function finishBuildStep(client: pg.PoolClient | pg.ClientBase, f: FinishStepInput): Promise<void> {
  await client.query(
    `UPDATE BuildSteps SET busy = 0, status = $3, errorMsg = $4, startTime = $5, stopTime = $6, machine = $7,
            overhead = $8, timesBuilt = $9, isNonDeterministic = $10
      WHERE build = $1 AND stepnr = $2`,
    [
      f.build,
      f.stepnr,
      f.status,
      f.errorMsg,
      f.startTime,
      f.stopTime,
      f.machine,
      f.overheadMs > 0 ? Math.round(f.overheadMs) : null,
      f.timesBuilt > 0 ? f.timesBuilt : null,
      f.timesBuilt > 1 ? f.isNonDeterministic : null,
    ],
  );
  if (f.outputs) {
    for (const [name, path] of f.outputs) {
      await client.query('UPDATE BuildStepOutputs SET path = $4 WHERE build = $1 AND stepnr = $2 AND name = $3', [f.build, f.stepnr, name, path]);
    }
  }
  if (f.logPath?.includes('\t')) throw new Error(`log path contains a tab: ${f.logPath}`);
  await notify(client, 'step_finished', `${f.build}\t${f.stepnr}\t${f.logPath ?? '-'}`);
}

/** Marks a step row aborted when its final write failed earlier (orphaned steps; docs/hydra-compat.md, "Runner lock and clearBusy"). */
export async function abortOrphanedStep(db: Queryable, lock: RunnerLockProof, build: number, stepnr: number): Promise<void> {
  lock.assertHeld('abort of an unrecorded step');
  await db.query(`UPDATE BuildSteps SET busy = 0, status = 3 WHERE build = $1 AND stepnr = $2 AND busy != 0 AND ${lockHeldCondition(3)}`, [build, stepnr, lock.backendPid]);
}

/** A BuildMetrics row (nix-support/hydra-metrics). */
export interface BuildMetric {
  name: string;
  value: number;
  /** null when absent or not matching `[a-zA-Z0-9._%-]+`. */
  unit: string | null;
}

export interface SuccessInfo {
  failed: boolean;
  startTime: number;
  stopTime: number;
  size: number | null;
  closureSize: number | null;
  releaseName: string | null;
  isCachedBuild: boolean;
  outputs: ReadonlyMap<string, string>;
  products: readonly NewBuildProduct[];
  metrics: readonly BuildMetric[];
}

/** markSucceededBuild (docs/hydra-compat.md, "Success and failure bookkeeping"); a no-op (false) when the build is no longer queued. */
export async function markSucceededBuild(client: pg.PoolClient | pg.ClientBase, buildId: number, s: SuccessInfo): Promise<boolean> {
  const r = await client.query(
    `UPDATE Builds SET finished = 1, buildStatus = $2, startTime = $3, stopTime = $4, size = $5, closureSize = $6,
            releaseName = $7, isCachedBuild = $8, notificationPendingSince = $4
      WHERE id = $1 AND finished = 0`,
    [buildId, s.failed ? STATUS.failedWithOutput : STATUS.success, s.startTime, s.stopTime, s.size, s.closureSize, s.releaseName, s.isCachedBuild ? 1 : 0],
  );
  if ((r.rowCount ?? 0) === 0) return false;
  for (const [name, path] of s.outputs) {
    await client.query('UPDATE BuildOutputs SET path = $3 WHERE build = $1 AND name = $2', [buildId, name, path]);
  }
  await client.query('DELETE FROM BuildProducts WHERE build = $1', [buildId]);
  for (const p of s.products) {
    await client.query(
      `INSERT INTO BuildProducts (build, productnr, type, subtype, fileSize, sha256hash, path, name, defaultPath)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [buildId, p.productnr, p.type, p.subtype, p.filesize, p.sha256hash, p.path, p.name, p.defaultpath],
    );
  }
  await client.query('DELETE FROM BuildMetrics WHERE build = $1', [buildId]);
  if (s.metrics.length > 0) {
    const {rows} = await client.query(
      'SELECT j.project, j.name AS jobset, b.job, b.timestamp FROM Builds b JOIN Jobsets j ON b.jobset_id = j.id WHERE b.id = $1',
      [buildId],
    );
    const meta = rows[0];
    for (const m of s.metrics) {
      await client.query(
        `INSERT INTO BuildMetrics (build, name, unit, value, project, jobset, job, timestamp) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [buildId, m.name, m.unit || null, m.value, meta.project, meta.jobset, meta.job, meta.timestamp],
      );
    }
  }
  return true;
}

/** Cached success (docs/hydra-compat.md, "Success and failure bookkeeping"): size, release name, products and metrics of an earlier successful build with this output. */
export async function earlierSuccess(
  db: Queryable,
  outputPath: string,
): Promise<{id: number; buildstatus: number; releasename: string | null; closuresize: number | null; size: number | null; products: NewBuildProduct[]; metrics: BuildMetric[]} | null> {
  const {rows} = await db.query(
    `SELECT b.id, b.buildStatus AS buildstatus, b.releaseName AS releasename, b.closureSize AS closuresize, b.size
       FROM Builds b JOIN BuildOutputs o ON b.id = o.build
      WHERE b.finished = 1 AND (b.buildStatus = 0 OR b.buildStatus = 6) AND o.path = $1
      ORDER BY b.id DESC LIMIT 1`,
    [outputPath],
  );
  if (rows.length === 0) return null;
  const row = rows[0];
  const products = await db.query(
    `SELECT productnr, type, subtype, fileSize AS filesize, sha256hash, path, name, coalesce(defaultPath, '') AS defaultpath
       FROM BuildProducts WHERE build = $1 ORDER BY productnr`,
    [row.id],
  );
  const metrics = await db.query('SELECT name, unit, value FROM BuildMetrics WHERE build = $1', [row.id]);
  return {
    ...row,
    size: row.size === null ? null : Number(row.size),
    closuresize: row.closuresize === null ? null : Number(row.closuresize),
    products: products.rows.map((p) => ({...p, filesize: p.filesize === null ? null : Number(p.filesize)})),
    metrics: metrics.rows,
  };
}

export async function failedPathsAmong(db: Queryable, paths: readonly string[]): Promise<string[]> {
  if (paths.length === 0) return [];
  const {rows} = await db.query('SELECT path FROM FailedPaths WHERE path = ANY($1::text[])', [paths]);
  return rows.map((r) => r.path as string);
}

export async function insertFailedPaths(db: Queryable, paths: readonly string[]): Promise<void> {
  // The IdempotentInsert rule drops duplicates.
  for (const p of paths) await db.query('INSERT INTO FailedPaths (path) VALUES ($1)', [p]);
}

/** Cached failure (docs/hydra-compat.md, "Cached failures"): the build whose step originally failed for this derivation / these outputs. */
export async function originalFailure(db: Queryable, drvPath: string, outputs: ReadonlyMap<string, string | null>): Promise<number | null> {
  const direct = await db.query(
    'SELECT max(build) AS b FROM BuildSteps WHERE drvPath = $1 AND startTime != 0 AND stopTime != 0 AND status = 1',
    [drvPath],
  );
  if (direct.rows[0].b !== null) return Number(direct.rows[0].b);
  for (const [name, path] of outputs) {
    const r = path
      ? await db.query(
          `SELECT max(s.build) AS b FROM BuildSteps s JOIN BuildStepOutputs o ON s.build = o.build AND s.stepnr = o.stepnr
            WHERE o.path = $1 AND s.startTime != 0 AND s.stopTime != 0 AND s.status = 1`,
          [path],
        )
      : await db.query(
          `SELECT max(s.build) AS b FROM BuildSteps s JOIN BuildStepOutputs o ON s.build = o.build AND s.stepnr = o.stepnr
            WHERE s.drvPath = $1 AND o.name = $2 AND s.startTime != 0 AND s.stopTime != 0 AND s.status = 1`,
          [drvPath, name],
        );
    if (r.rows[0].b !== null) return Number(r.rows[0].b);
  }
  return null;
}

export interface FailBuildInput {
  id: number;
  status: number;
  startTime: number;
  stopTime: number;
  isCachedBuild: boolean;
}

/** failStep (docs/hydra-compat.md, "Success and failure bookkeeping"): fail one queued build (no-op when already finished). */
export async function failBuild(db: Queryable, f: FailBuildInput): Promise<boolean> {
  const r = await db.query(
    `UPDATE Builds SET finished = 1, buildStatus = $2, startTime = $3, stopTime = $4, isCachedBuild = $5,
            notificationPendingSince = $4
      WHERE id = $1 AND finished = 0`,
    [f.id, f.status, f.startTime, f.stopTime, f.isCachedBuild ? 1 : 0],
  );
  return (r.rowCount ?? 0) > 0;
}

export async function isBuildFinished(db: Queryable, id: number): Promise<boolean> {
  const {rows} = await db.query('SELECT finished FROM Builds WHERE id = $1', [id]);
  return rows.length === 0 || Number(rows[0].finished) !== 0;
}

export interface JobsetRow {
  id: number;
  project: string;
  name: string;
  schedulingshares: number;
}

export async function jobsetRows(db: Queryable, ids?: readonly number[]): Promise<JobsetRow[]> {
  const {rows} = ids
    ? await db.query('SELECT id, project, name, schedulingShares AS schedulingshares FROM Jobsets WHERE id = ANY($1::int[])', [ids])
    : await db.query('SELECT id, project, name, schedulingShares AS schedulingshares FROM Jobsets');
  return rows;
}

/** Jobset shares (docs/hydra-compat.md, "Priorities and shares"): recent step durations of a jobset (10-day look-back; the caller keeps the 24 h window). */
export async function jobsetStepHistory(db: Queryable, jobsetId: number, since: number): Promise<Array<{starttime: number; stoptime: number}>> {
  const {rows} = await db.query(
    `SELECT s.startTime AS starttime, s.stopTime AS stoptime FROM BuildSteps s JOIN Builds b ON s.build = b.id
      WHERE s.startTime IS NOT NULL AND s.stopTime > $2 AND b.jobset_id = $1`,
    [jobsetId, since],
  );
  return rows;
}

/**
 * URIs of the machines drained by operators (hydra_ops.machine_state), the one reader of that state. A database error
 * is thrown, never read as "none drained": callers keep the state they knew (the scheduler) or report the error.
 */
export async function drainedMachines(db: Queryable): Promise<Set<string>> {
  const {rows} = await db.query<{machine: string}>('SELECT machine FROM hydra_ops.machine_state WHERE drained');
  return new Set(rows.map((r) => r.machine));
}

/** State::dumpStatus (docs/hydra-compat.md, "Status documents and metrics"): rewrite the C++-shaped status row and tell `--status` clients. */
export async function writeSystemStatus(pool: pg.Pool, status: unknown): Promise<void> {
  await withTransaction(pool, async (c) => {
    await c.query("DELETE FROM SystemStatus WHERE what = 'queue-runner'");
    await c.query("INSERT INTO SystemStatus (what, status) VALUES ('queue-runner', $1)", [JSON.stringify(status)]);
    await notify(c, 'status_dumped');
  });
}

export async function deleteSystemStatus(db: Queryable): Promise<void> {
  await db.query("DELETE FROM SystemStatus WHERE what = 'queue-runner'");
}
