// Queue aggregates (Hydra's /queue-summary, /api/nrqueue and the "N running / M queued" header),
// computed with GROUP BY in the database rather than over rows.
import type {Queryable} from '../queryable.js';

export interface QueueJobsetRow {
  jobset_id: number;
  project: string;
  jobset: string;
  queued: number;
  /** Oldest and newest Builds.timestamp among the queued builds. */
  oldest: number;
  newest: number;
}

export interface QueueSystemRow {
  system: string;
  queued: number;
}

export interface QueueSummary {
  /** Jobsets with queued builds, most queued first. */
  jobsets: QueueJobsetRow[];
  /** Systems with queued builds, most queued first. */
  systems: QueueSystemRow[];
}

export async function queueSummary(db: Queryable): Promise<QueueSummary> {
  const jobsets = await db.query(
    `SELECT j.id AS jobset_id, j.project, j.name AS jobset, count(*)::int AS queued,
            min(b.timestamp) AS oldest, max(b.timestamp) AS newest
     FROM Builds b JOIN Jobsets j ON j.id = b.jobset_id
     WHERE b.finished = 0
     GROUP BY j.id, j.project, j.name
     ORDER BY queued DESC, j.project, j.name`,
  );
  return {jobsets: jobsets.rows as QueueJobsetRow[], systems: await queuedBySystem(db)};
}

/** Queued builds per system, most queued first. */
export async function queuedBySystem(db: Queryable): Promise<QueueSystemRow[]> {
  const {rows} = await db.query(`SELECT system, count(*)::int AS queued FROM Builds WHERE finished = 0 GROUP BY system ORDER BY queued DESC, system`);
  return rows as QueueSystemRow[];
}

/** Unfinished builds (`/api/nrqueue`). */
export async function nrQueued(db: Queryable): Promise<number> {
  const {rows} = await db.query('SELECT count(*)::int AS n FROM Builds WHERE finished = 0');
  return (rows[0] as {n: number}).n;
}

/** Builds with a busy step recorded under them (the web header's "N running"). */
export async function nrRunningBuilds(db: Queryable): Promise<number> {
  const {rows} = await db.query('SELECT count(DISTINCT build)::int AS n FROM BuildSteps WHERE busy != 0');
  return (rows[0] as {n: number}).n;
}

/** Queued builds and busy steps, in one round trip (the console header). */
export async function queuedAndBusySteps(db: Queryable): Promise<{queued: number; running: number}> {
  const {rows} = await db.query(
    `SELECT (SELECT count(*) FROM Builds WHERE finished = 0)::int AS queued,
            (SELECT count(*) FROM BuildSteps WHERE busy != 0)::int AS running`,
  );
  return rows[0] as {queued: number; running: number};
}

/** Builds finished in each minute since `since` (Unix seconds): minute index from `since` → count. */
export async function finishedPerMinute(db: Queryable, since: number): Promise<{m: number; n: number}[]> {
  const {rows} = await db.query(
    `SELECT ((stoptime - $1) / 60)::int AS m, count(*)::int AS n FROM Builds
      WHERE finished = 1 AND stoptime > $1 GROUP BY 1`,
    [since],
  );
  return rows as {m: number; n: number}[];
}
