// Evaluations: keyset-paged listing (newest first) and an eval's member builds.
import type {Queryable} from '../queryable.js';
import {FILTER_FROM} from '../filter.js';
import {QueryBuilder, checkLimit, decodeCursor, encodeCursor, pageOf, runQuery, type FilterInput, type Page} from './sql.js';

export interface EvalRow {
  id: number;
  jobset_id: number;
  project: string;
  jobset: string;
  timestamp: number;
  checkouttime: number;
  evaltime: number;
  /** 0: the eval changed nothing and has no member rows. */
  hasnewbuilds: number;
  hash: string;
  nrbuilds: number | null;
  nrsucceeded: number | null;
  flake: string | null;
  evaluationerror_id: number | null;
  /** The linked EvaluationErrors row has a non-empty message. */
  haserror: boolean;
}

export interface ListEvalsOptions {
  /** A jobset id, `{project, name}`, or `project:jobset` / `project/jobset`. */
  jobset?: number | {project: string; name: string} | string;
  filter?: FilterInput;
  after?: string | null;
  limit?: number;
  now?: number;
}

function jobsetCondition(q: QueryBuilder, jobset: NonNullable<ListEvalsOptions['jobset']>): string {
  if (typeof jobset === 'number') return `e.jobset_id = ${q.param(jobset)}`;
  let project: string;
  let name: string;
  if (typeof jobset === 'string') {
    const parts = jobset.split(/[:/]/);
    if (parts.length !== 2 || !parts[0] || !parts[1]) throw new RangeError(`bad jobset "${jobset}" (write project:jobset)`);
    [project, name] = parts as [string, string];
  } else {
    ({project, name} = jobset);
  }
  return `j.project = ${q.param(project)} AND j.name = ${q.param(name)}`;
}

export async function listEvals(db: Queryable, opts: ListEvalsOptions = {}): Promise<Page<EvalRow>> {
  const limit = checkLimit(opts.limit);
  const q = new QueryBuilder();
  if (opts.jobset !== undefined) q.where(jobsetCondition(q, opts.jobset));
  q.filter(opts.filter, 'evals', opts.now);
  if (opts.after) q.where(`e.id < ${q.param(decodeCursor(opts.after, 'eval', 1)[0])}`);
  const sql = `SELECT e.id, e.jobset_id, j.project, j.name AS jobset, e.timestamp, e.checkouttime, e.evaltime,
      e.hasnewbuilds, e.hash, e.nrbuilds, e.nrsucceeded, e.flake, e.evaluationerror_id,
      COALESCE(ee.errormsg, '') != '' AS haserror
    FROM ${FILTER_FROM.evals} LEFT JOIN EvaluationErrors ee ON ee.id = e.evaluationerror_id
    ${q.whereClause()} ORDER BY e.id DESC LIMIT ${q.param(limit + 1)}`;
  return pageOf(await runQuery<EvalRow>(db, q, sql), limit, (r) => encodeCursor('eval', [r.id]));
}

/** Ids of the builds of one evaluation, ascending. */
export async function evalBuildIds(db: Queryable, evalId: number): Promise<number[]> {
  const {rows} = await db.query('SELECT build FROM JobsetEvalMembers WHERE eval = $1 ORDER BY build', [evalId]);
  return rows.map((r: {build: number}) => r.build);
}
