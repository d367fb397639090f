// SQL of the post-build command runner (hydra_ops.post_build_runs, hydra_ops.post_build_cursor) and the build
// description handed to the commands. Never writes Hydra's tables: notificationPendingSince is hydra-notify's.
import type {Queryable} from '../queryable.js';
import type {PostBuildStatus} from '../schema/hydra-ops-migrations.js';
import {buildOutputs, buildProducts} from './builds.js';

export interface FinishedBuild {
  id: number;
  project: string;
  jobset: string;
  job: string;
  stoptime: number;
}

const FINISHED_COLUMNS = 'b.id, j.project, j.name AS jobset, b.job, b.stopTime AS stoptime';

/**
 * Builds a runner finished, to be considered for post-build commands: those hydra-notify has not handled yet
 * (notificationPendingSince set, within the look-back) and every build that stopped since `since`. User
 * cancellations (status 4 without a pending notification) are not build-finished events, as for hydra-notify.
 */
export async function finishedBuildsSince(db: Queryable, since: number, pendingFloor: number): Promise<FinishedBuild[]> {
  const {rows} = await db.query(
    `SELECT ${FINISHED_COLUMNS} FROM Builds b JOIN Jobsets j ON j.id = b.jobset_id
     WHERE b.finished = 1 AND b.stopTime IS NOT NULL
       AND ((b.notificationPendingSince IS NOT NULL AND b.notificationPendingSince >= $2) OR b.stopTime >= $1)
       AND NOT (b.buildStatus = 4 AND b.notificationPendingSince IS NULL)
     ORDER BY b.stopTime, b.id`,
    [since, pendingFloor],
  );
  return rows as FinishedBuild[];
}

export async function finishedBuild(db: Queryable, id: number): Promise<FinishedBuild | null> {
  const {rows} = await db.query(
    `SELECT ${FINISHED_COLUMNS} FROM Builds b JOIN Jobsets j ON j.id = b.jobset_id WHERE b.id = $1 AND b.finished = 1 AND b.stopTime IS NOT NULL`,
    [id],
  );
  return (rows[0] as FinishedBuild | undefined) ?? null;
}

export async function scanCursor(db: Queryable): Promise<number | null> {
  const {rows} = await db.query('SELECT scanned_until FROM hydra_ops.post_build_cursor WHERE id = 1');
  return rows[0] ? (rows[0].scanned_until as number) : null;
}

export async function setScanCursor(db: Queryable, until: number): Promise<void> {
  await db.query(
    `INSERT INTO hydra_ops.post_build_cursor (id, scanned_until) VALUES (1, $1)
     ON CONFLICT (id) DO UPDATE SET scanned_until = GREATEST(hydra_ops.post_build_cursor.scanned_until, EXCLUDED.scanned_until)`,
    [until],
  );
}

/**
 * Queues one run per (build finish, command); existing ones are left alone. Returns the number inserted. Only
 * the command's identity is stored (id, block, SHA-256 of its text), never the text: what runs always comes
 * from the current hydra.conf.
 */
export async function queueRuns(
  db: Queryable,
  build: FinishedBuild,
  commands: readonly {id: string; matcher: string; source: string; sha256: string}[],
): Promise<number> {
  let n = 0;
  for (const c of commands) {
    const r = await db.query(
      `INSERT INTO hydra_ops.post_build_runs (build, build_stoptime, command_id, matcher, command_source, command_sha256)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT ON CONSTRAINT post_build_runs_once DO NOTHING`,
      [build.id, build.stoptime, c.id, c.matcher, c.source, c.sha256],
    );
    n += r.rowCount ?? 0;
  }
  return n;
}

/** Runs a dead daemon left 'running' are interrupted: they run again (at-least-once). */
export async function requeueInterrupted(db: Queryable): Promise<number> {
  const r = await db.query(`UPDATE hydra_ops.post_build_runs SET status = 'pending' WHERE status = 'running'`);
  return r.rowCount ?? 0;
}

export interface RunRow {
  id: number;
  build: number;
  build_stoptime: number;
  command_id: string;
  matcher: string;
  /** Always null since migration 3 (the text lives in hydra.conf only). */
  command: string | null;
  /** `file:line` of the hydra.conf block the run was queued for. */
  command_source: string | null;
  command_sha256: string;
  status: PostBuildStatus;
  attempts: number;
  exit_code: number | null;
  signal: string | null;
  output: string | null;
  output_bytes: number | null;
  error: string | null;
  queued_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
}

export async function pendingRuns(db: Queryable, limit: number): Promise<RunRow[]> {
  const {rows} = await db.query(`SELECT * FROM hydra_ops.post_build_runs WHERE status = 'pending' ORDER BY id LIMIT $1`, [limit]);
  return rows as RunRow[];
}

/** Marks a pending run running; false when somebody else took it or it is no longer pending. */
export async function claimRun(db: Queryable, id: number): Promise<boolean> {
  const r = await db.query(
    `UPDATE hydra_ops.post_build_runs SET status = 'running', attempts = attempts + 1, started_at = now(), finished_at = NULL
     WHERE id = $1 AND status = 'pending'`,
    [id],
  );
  return r.rowCount === 1;
}

export async function finishRun(
  db: Queryable,
  id: number,
  r: {status: Exclude<PostBuildStatus, 'pending' | 'running'>; exitCode: number | null; signal: string | null; output: string; outputBytes: number; error: string | null},
): Promise<void> {
  await db.query(
    `UPDATE hydra_ops.post_build_runs SET status = $2, exit_code = $3, signal = $4, output = $5, output_bytes = $6, error = $7, finished_at = now()
     WHERE id = $1`,
    [id, r.status, r.exitCode, r.signal, r.output, r.outputBytes, r.error],
  );
}

/** The runs of one build, oldest first; [] when hydra_ops has no such table yet. */
export async function postBuildRuns(db: Queryable, build: number): Promise<RunRow[]> {
  try {
    const {rows} = await db.query('SELECT * FROM hydra_ops.post_build_runs WHERE build = $1 ORDER BY id', [build]);
    return rows as RunRow[];
  } catch (e) {
    if ((e as {code?: string}).code === '42P01' || (e as {code?: string}).code === '3F000') return [];
    throw e;
  }
}

/**
 * The JSON document a command finds in $HYDRA_JSON: Hydra RunCommand's fields (event, build, finished,
 * timestamp, project, jobset, job, drvPath, startTime, stopTime, buildStatus, nixName, system, homepage,
 * description, license, outputs, products, metrics) plus id, status (name), machine and isCachedBuild.
 */
export async function buildPayload(db: Queryable, id: number, statusName: (code: number | null) => string): Promise<Record<string, unknown> | null> {
  const {rows} = await db.query(
    `SELECT b.id, b.finished, b.timestamp, j.project, j.name AS jobset, b.job, b.drvPath AS drvpath, b.startTime AS starttime,
            b.stopTime AS stoptime, b.buildStatus AS buildstatus, b.nixName AS nixname, b.system, b.homepage, b.description,
            b.license, b.isCachedBuild AS iscachedbuild, b.releaseName AS releasename
     FROM Builds b JOIN Jobsets j ON j.id = b.jobset_id WHERE b.id = $1`,
    [id],
  );
  const b = rows[0];
  if (!b) return null;
  const [outputs, products, metrics, machine] = await Promise.all([
    buildOutputs(db, id),
    buildProducts(db, id),
    db.query('SELECT name, unit, value FROM BuildMetrics WHERE build = $1 ORDER BY name', [id]),
    db.query(
      `SELECT machine FROM BuildSteps WHERE build = $1 AND machine != '' ORDER BY (drvPath = $2) DESC, stepnr DESC LIMIT 1`,
      [id, b.drvpath],
    ),
  ]);
  return {
    event: 'buildFinished',
    build: b.id,
    id: b.id,
    finished: b.finished === 1,
    timestamp: b.timestamp,
    project: b.project,
    jobset: b.jobset,
    job: b.job,
    drvPath: b.drvpath,
    startTime: b.starttime,
    stopTime: b.stoptime,
    buildStatus: b.buildstatus,
    status: statusName(b.buildstatus),
    isCachedBuild: b.iscachedbuild === 1,
    nixName: b.nixname,
    system: b.system,
    homepage: b.homepage,
    description: b.description,
    license: b.license,
    releaseName: b.releasename,
    machine: (machine.rows[0]?.machine as string | undefined) ?? null,
    outputs: outputs.map((o) => ({name: o.name, path: o.path})),
    products: products.map((p) => ({
      productNr: p.productnr,
      type: p.type,
      subtype: p.subtype,
      fileSize: p.filesize,
      sha256hash: p.sha256hash,
      path: p.path,
      name: p.name,
      defaultPath: p.defaultpath,
    })),
    metrics: metrics.rows.map((m) => ({name: m.name, unit: m.unit, value: Number(m.value)})),
  };
}
