// hydra_ops.repro_checks: one row per reproducibility check (a derivation rebuilt on some machine and its
// outputs' NAR hashes compared with the recorded ones), plus the BuildSteps marks Hydra has columns for.
//
// outputs (jsonb array): {name, path, expected, got: [hash per round], differs, checkPath}.
import type {Queryable} from './queryable.js';
import {newestFirstPage} from './queries/sql.js';
import type {ReproVerdict} from './schema/hydra-ops-migrations.js';

export interface CheckOutputRecord {
  name: string;
  path: string;
  /** The recorded NAR hash (coordinator's store). */
  expected: string;
  /** The rebuilt NAR hash of each round. */
  got: string[];
  differs: boolean;
  /** The unpacked rebuild (`<basename>.check`), when it differed. */
  checkPath: string | null;
}

export interface CheckRow {
  id: number;
  build: number | null;
  drvPath: string;
  originalMachine: string | null;
  checkMachine: string | null;
  verdict: ReproVerdict;
  rounds: number | null;
  outputs: CheckOutputRecord[];
  diffLogPath: string | null;
  error: string | null;
  requestedBy: string | null;
  /** ISO 8601 (UTC) or null. */
  startedAt: string | null;
  finishedAt: string | null;
}

const COLUMNS = `id::float8 AS id, build, drv_path, original_machine, check_machine, verdict, rounds, outputs, diff_log_path, error,
  requested_by, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS started_at,
  to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS finished_at`;

interface RawRow {
  id: number;
  build: number | null;
  drv_path: string;
  original_machine: string | null;
  check_machine: string | null;
  verdict: ReproVerdict;
  rounds: number | null;
  outputs: CheckOutputRecord[];
  diff_log_path: string | null;
  error: string | null;
  requested_by: string | null;
  started_at: string | null;
  finished_at: string | null;
}

function toRow(r: RawRow): CheckRow {
  return {
    id: Number(r.id),
    build: r.build,
    drvPath: r.drv_path,
    originalMachine: r.original_machine,
    checkMachine: r.check_machine,
    verdict: r.verdict,
    rounds: r.rounds,
    outputs: Array.isArray(r.outputs) ? r.outputs : [],
    diffLogPath: r.diff_log_path,
    error: r.error,
    requestedBy: r.requested_by,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
  };
}

export interface NewCheck {
  build: number | null;
  drvPath: string;
  originalMachine: string | null;
  checkMachine: string;
  rounds: number;
  requestedBy: string;
  outputs: CheckOutputRecord[];
}

/** Inserts a running check; returns its id. */
export async function insertCheck(db: Queryable, c: NewCheck): Promise<number> {
  const {rows} = await db.query<{id: string}>(
    `INSERT INTO hydra_ops.repro_checks (build, drv_path, original_machine, check_machine, verdict, rounds, outputs, requested_by, started_at)
     VALUES ($1, $2, $3, $4, 'running', $5, $6::jsonb, $7, now()) RETURNING id`,
    [c.build, c.drvPath, c.originalMachine, c.checkMachine, c.rounds, JSON.stringify(c.outputs), c.requestedBy],
  );
  return Number(rows[0]!.id);
}

export interface CheckFinish {
  verdict: Exclude<ReproVerdict, 'running'>;
  outputs: CheckOutputRecord[];
  diffLogPath: string | null;
  error: string | null;
}

export async function finishCheck(db: Queryable, id: number, f: CheckFinish): Promise<void> {
  await db.query(
    `UPDATE hydra_ops.repro_checks SET verdict = $2, outputs = $3::jsonb, diff_log_path = $4, error = $5, finished_at = now() WHERE id = $1`,
    [id, f.verdict, JSON.stringify(f.outputs), f.diffLogPath, f.error],
  );
}

export async function getCheck(db: Queryable, id: number): Promise<CheckRow | null> {
  const {rows} = await db.query<RawRow>(`SELECT ${COLUMNS} FROM hydra_ops.repro_checks WHERE id = $1`, [id]);
  return rows[0] ? toRow(rows[0]) : null;
}

export interface ListChecksOptions {
  limit?: number;
  /** Rows with id below this (keyset paging, newest first). */
  before?: number;
  verdict?: ReproVerdict;
  build?: number;
  drvPath?: string;
}

/** Newest first. */
export async function listChecks(db: Queryable, o: ListChecksOptions = {}): Promise<{checks: CheckRow[]; nextBefore: number | null}> {
  const {rows, nextBefore} = await newestFirstPage<RawRow>(db, 'hydra_ops.repro_checks', COLUMNS, o, (q) => {
    if (o.verdict) q.where(`verdict = ${q.param(o.verdict)}`);
    if (o.build !== undefined) q.where(`build = ${q.param(o.build)}`);
    if (o.drvPath) q.where(`drv_path = ${q.param(o.drvPath)}`);
  });
  return {checks: rows.map(toRow), nextBefore};
}

export async function countChecks(db: Queryable): Promise<number> {
  const {rows} = await db.query<{n: number}>('SELECT count(*)::int AS n FROM hydra_ops.repro_checks');
  return rows[0]!.n;
}

/** The finished successful build step that built `drvPath` (the newest one), if any. */
export async function findBuiltStep(db: Queryable, drvPath: string): Promise<{build: number; stepnr: number; machine: string; stopTime: number | null} | null> {
  const {rows} = await db.query<{build: number; stepnr: number; machine: string; stoptime: number | null}>(
    `SELECT build, stepnr, machine, stoptime FROM BuildSteps
      WHERE drvPath = $1 AND type = 0 AND busy = 0 AND status = 0
      ORDER BY stoptime DESC NULLS LAST, build DESC, stepnr DESC LIMIT 1`,
    [drvPath],
  );
  const r = rows[0];
  return r ? {build: r.build, stepnr: r.stepnr, machine: r.machine, stopTime: r.stoptime} : null;
}

/** True when BuildSteps has Hydra's timesBuilt and isNonDeterministic columns (schema ≥ 40 has them). */
export async function stepsHaveDeterminismColumns(db: Queryable): Promise<boolean> {
  const {rows} = await db.query<{n: number}>(
    `SELECT count(*)::int AS n FROM information_schema.columns
      WHERE table_schema = current_schema() AND lower(table_name) = 'buildsteps'
        AND lower(column_name) IN ('timesbuilt', 'isnondeterministic')`,
  );
  return rows[0]!.n === 2;
}

/**
 * Records rebuilds on the step that built the derivation. timesBuilt counts every build of it (the original
 * one plus `rebuilds`, accumulated over checks); isNonDeterministic is written only together with a
 * timesBuilt above 1, as Hydra does, and once true stays true. The step's status is never changed.
 */
export async function markStepRebuilt(db: Queryable, build: number, stepnr: number, rebuilds: number, nonDeterministic: boolean): Promise<boolean> {
  const r = await db.query(
    `UPDATE BuildSteps
        SET timesBuilt = GREATEST(COALESCE(timesBuilt, 1), 1) + $3,
            isNonDeterministic = (COALESCE(isNonDeterministic, false) OR $4)
      WHERE build = $1 AND stepnr = $2 AND busy = 0 AND status = 0`,
    [build, stepnr, rebuilds, nonDeterministic],
  );
  return (r.rowCount ?? 0) === 1;
}
