// Jobsets: the list with scheduling shares and queue counts, and look-up by name.
import type {Queryable} from '../queryable.js';

export interface JobsetSummaryRow {
  id: number;
  project: string;
  name: string;
  enabled: number;
  hidden: number;
  schedulingshares: number;
  lastcheckedtime: number | null;
  triggertime: number | null;
  /** Evaluation running since (evaluator), else NULL. */
  starttime: number | null;
  errortime: number | null;
  /** Unfinished builds. */
  nrqueued: number;
  /** Builds with a busy step recorded under them. */
  nrrunning: number;
}

/** Every jobset by project and name, with its shares and queued / running build counts. */
export async function listJobsets(db: Queryable): Promise<JobsetSummaryRow[]> {
  const {rows} = await db.query(
    `SELECT j.id, j.project, j.name, j.enabled, j.hidden, j.schedulingshares, j.lastcheckedtime, j.triggertime,
            j.starttime, j.errortime,
            COALESCE(q.n, 0)::int AS nrqueued, COALESCE(r.n, 0)::int AS nrrunning
     FROM Jobsets j
     LEFT JOIN (SELECT jobset_id, count(*) AS n FROM Builds WHERE finished = 0 GROUP BY jobset_id) q ON q.jobset_id = j.id
     LEFT JOIN (SELECT b.jobset_id, count(DISTINCT s.build) AS n FROM BuildSteps s JOIN Builds b ON b.id = s.build
                WHERE s.busy != 0 GROUP BY b.jobset_id) r ON r.jobset_id = j.id
     ORDER BY j.project, j.name`,
  );
  return rows as JobsetSummaryRow[];
}

export interface JobsetRow {
  id: number;
  project: string;
  name: string;
  description: string | null;
  /** 0 legacy, 1 flake. */
  type: number;
  nixexprinput: string | null;
  nixexprpath: string | null;
  flake: string | null;
  errormsg: string | null;
  errortime: number | null;
  fetcherrormsg: string | null;
  lastcheckedtime: number | null;
  triggertime: number | null;
  starttime: number | null;
  /** 0 disabled, 1 enabled, 2 one-shot, 3 one-at-a-time. */
  enabled: number;
  enableemail: number;
  hidden: number;
  emailoverride: string;
  keepnr: number;
  checkinterval: number;
  schedulingshares: number;
  forceeval: boolean | null;
}

export async function getJobsetByName(db: Queryable, project: string, name: string): Promise<JobsetRow | null> {
  const {rows} = await db.query(
    `SELECT id, project, name, description, type, nixexprinput, nixexprpath, flake, errormsg, errortime,
            fetcherrormsg, lastcheckedtime, triggertime, starttime, enabled, enableemail, hidden, emailoverride,
            keepnr, checkinterval, schedulingshares, forceeval
     FROM Jobsets WHERE project = $1 AND name = $2`,
    [project, name],
  );
  return (rows[0] as JobsetRow | undefined) ?? null;
}
