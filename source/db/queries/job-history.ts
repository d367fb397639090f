// One job's builds over time: the last builds of a job (same project, jobset and job) for the console's History
// tab, and the latest successful build of a job (Hydra's `/job/P/J/JOB/latest`, `latest-for/SYSTEM` and the eval's
// job page) for `hydra-ops latest` and the detail pane's "latest" link.
//
// Both are keyset-bounded on Hydra's indexes (source/db/schema/hydra-sql.ts), never a scan of the job's builds:
// - jobHistory: IndexBuildsOnJobsetIdFinishedId (jobset_id, job, finished, id desc) — equality on the first three
//   columns, ORDER BY id DESC LIMIT n read straight off the index;
// - latestSuccessful: IndexFinishedSuccessfulBuilds (jobset_id, job, finished, buildstatus, id desc)
//   WHERE buildstatus = 0 AND finished = 1, the index Hydra added for exactly this look-up.
// Builds has no project/jobset columns in schema v87: the jobset is resolved to its id first (Jobsets' unique
// (project, name)) and passed as a value.
import type {Queryable} from '../queryable.js';

export const HISTORY_LIMIT = 30;

export interface JobRef {
  project: string;
  jobset: string;
  job: string;
}

export interface JobHistoryRow {
  id: number;
  buildstatus: number | null;
  iscachedbuild: number | null;
  system: string;
  /** Unix seconds. */
  starttime: number | null;
  stoptime: number | null;
  /** Machine of the step that built the build's own derivation ('' or null: substituted, cached, or none). */
  machine: string | null;
}

/**
 * The job's last `limit` finished builds, newest first; `before` continues below that build id (keyset).
 * The machine is the one of the build's own top-level step (the BuildSteps row whose drvPath is the build's),
 * as Hydra's build page shows it; a scan of that one build's steps by the primary key (build, stepnr).
 */
export async function jobHistory(db: Queryable, job: JobRef, o: {limit?: number; before?: number | null} = {}): Promise<JobHistoryRow[]> {
  const limit = Math.max(1, Math.min(o.limit ?? HISTORY_LIMIT, 200));
  // The jobset id as a value, not a sub-select: with a sub-select the planner costs the job's rows generically and
  // may walk the primary key backwards filtering every build instead of reading the job's slice of the index.
  const id = await jobsetId(db, job.project, job.jobset);
  if (id === null) return [];
  const params: unknown[] = [id, job.job, limit];
  let before = '';
  if (o.before !== undefined && o.before !== null) {
    params.push(o.before);
    before = `AND b.id < $${params.length}`;
  }
  const {rows} = await db.query(historySql(before), params);
  return rows as JobHistoryRow[];
}

/** The History statement ($1 jobset id, $2 job, $3 limit; `before` adds the keyset bound). */
export function historySql(before = ''): string {
  return `SELECT b.id, b.buildstatus, b.iscachedbuild, b.system, b.starttime, b.stoptime,
       (SELECT s.machine FROM BuildSteps s WHERE s.build = b.id AND s.drvPath = b.drvPath AND s.type = 0
         ORDER BY s.stepnr DESC LIMIT 1) AS machine
     FROM Builds b
     WHERE b.jobset_id = $1 AND b.job = $2 AND b.finished = 1 ${before}
     ORDER BY b.id DESC
     LIMIT $3`;
}

export interface LatestOptions {
  /** Only a member of this evaluation (JobsetEvalMembers). */
  eval?: number | null;
  /** Only builds for this platform (Hydra's `latest-for/SYSTEM`). */
  system?: string | null;
}

/** Does the jobset exist (to tell "no such jobset" from "no successful build")? */
export async function jobsetId(db: Queryable, project: string, jobset: string): Promise<number | null> {
  const {rows} = await db.query<{id: number}>('SELECT id FROM Jobsets WHERE project = $1 AND name = $2', [project, jobset]);
  return rows[0]?.id ?? null;
}

/** The id of the latest (highest id) successful build of the job — Hydra's `latest` rule — or null. */
export async function latestSuccessful(db: Queryable, job: JobRef, o: LatestOptions = {}): Promise<number | null> {
  const id = await jobsetId(db, job.project, job.jobset);
  if (id === null) return null;
  const params: unknown[] = [id, job.job];
  const where: string[] = [];
  let from = 'Builds b';
  if (o.system) {
    params.push(o.system);
    where.push(`AND b.system = $${params.length}`);
  }
  if (o.eval !== undefined && o.eval !== null) {
    params.push(o.eval);
    from = `JobsetEvalMembers m JOIN Builds b ON b.id = m.build AND m.eval = $${params.length}`;
  }
  const {rows} = await db.query<{id: number}>(
    `SELECT b.id FROM ${from}
     WHERE b.jobset_id = $1 AND b.job = $2 AND b.finished = 1 AND b.buildstatus = 0 ${where.join(' ')}
     ORDER BY b.id DESC
     LIMIT 1`,
    params,
  );
  return rows[0]?.id ?? null;
}
