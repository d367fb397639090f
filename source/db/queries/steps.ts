// Build steps: keyset-paged listings of finished or running steps, one build's steps, a step's
// outputs, and the running-steps-per-machine query of Hydra's /machines page.
import type {Queryable} from '../queryable.js';
import {FILTER_FROM} from '../filter.js';
import {QueryBuilder, checkLimit, decodeCursor, encodeCursor, pageOf, runQuery, type FilterInput, type Page} from './sql.js';

export interface StepRow {
  build: number;
  stepnr: number;
  /** 0 build, 1 substitution. */
  type: number;
  drvpath: string | null;
  /** 0 not running, else a busy phase. */
  busy: number;
  /** NULL while busy. */
  status: number | null;
  errormsg: string | null;
  starttime: number | null;
  stoptime: number | null;
  machine: string;
  system: string | null;
  propagatedfrom: number | null;
  overhead: number | null;
  timesbuilt: number | null;
  isnondeterministic: boolean | null;
  /** Present from schema 87. */
  resolveddrvpath?: string | null;
  project: string;
  jobset: string;
  job: string;
}

// s.* rather than a column list: resolvedDrvPath exists only from schema 87.
const STEP_COLUMNS = 's.*, j.project, j.name AS jobset, b.job';

export interface ListStepsOptions {
  filter?: FilterInput;
  /**
   * true: running steps (busy != 0, partial index), oldest start first.
   * false / absent: steps with a stop time, latest first (stopTime DESC index). Rows without times
   * (propagated failures) appear only in buildSteps().
   */
  running?: boolean;
  after?: string | null;
  limit?: number;
  now?: number;
}

export async function listSteps(db: Queryable, opts: ListStepsOptions = {}): Promise<Page<StepRow>> {
  const limit = checkLimit(opts.limit);
  const q = new QueryBuilder();
  let orderBy: string;
  let cursorOf: (row: StepRow) => string;
  if (opts.running) {
    q.where('s.busy != 0');
    q.filter(opts.filter, 'steps', opts.now);
    if (opts.after) {
      const [start, build, stepnr] = decodeCursor(opts.after, 'running', 3);
      q.where(`(COALESCE(s.starttime, 0), s.build, s.stepnr) > (${q.param(start)}, ${q.param(build)}, ${q.param(stepnr)})`);
    }
    orderBy = 'COALESCE(s.starttime, 0), s.build, s.stepnr';
    cursorOf = (r) => encodeCursor('running', [r.starttime ?? 0, r.build, r.stepnr]);
  } else {
    q.where('s.starttime IS NOT NULL AND s.stoptime IS NOT NULL');
    q.filter(opts.filter, 'steps', opts.now);
    if (opts.after) {
      const [stop, build, stepnr] = decodeCursor(opts.after, 'stopped', 3);
      q.where(`(s.stoptime, s.build, s.stepnr) < (${q.param(stop)}, ${q.param(build)}, ${q.param(stepnr)})`);
    }
    orderBy = 's.stoptime DESC, s.build DESC, s.stepnr DESC';
    cursorOf = (r) => encodeCursor('stopped', [r.stoptime ?? 0, r.build, r.stepnr]);
  }
  const sql = `SELECT ${STEP_COLUMNS} FROM ${FILTER_FROM.steps} ${q.whereClause()} ORDER BY ${orderBy} LIMIT ${q.param(limit + 1)}`;
  return pageOf(await runQuery<StepRow>(db, q, sql), limit, cursorOf);
}

/** Number of steps matching the filter within the same set listSteps pages through. */
export async function countSteps(db: Queryable, filter?: FilterInput, opts: {running?: boolean; now?: number} = {}): Promise<number> {
  const q = new QueryBuilder();
  q.where(opts.running ? 's.busy != 0' : 's.starttime IS NOT NULL AND s.stoptime IS NOT NULL');
  q.filter(filter, 'steps', opts.now);
  const rows = await runQuery<{n: number}>(db, q, `SELECT count(*)::int AS n FROM ${FILTER_FROM.steps} ${q.whereClause()}`);
  return rows[0]!.n;
}

/** All steps recorded under one build, including propagated-failure rows, by step number. */
export async function buildSteps(db: Queryable, buildId: number): Promise<StepRow[]> {
  const {rows} = await db.query(`SELECT ${STEP_COLUMNS} FROM ${FILTER_FROM.steps} WHERE s.build = $1 ORDER BY s.stepnr`, [buildId]);
  return rows as StepRow[];
}

export interface StepOutputRow {
  name: string;
  path: string | null;
}

export async function stepOutputs(db: Queryable, build: number, stepnr: number): Promise<StepOutputRow[]> {
  const {rows} = await db.query('SELECT name, path FROM BuildStepOutputs WHERE build = $1 AND stepnr = $2 ORDER BY name', [build, stepnr]);
  return rows as StepOutputRow[];
}

export interface RunningStepRow {
  build: number;
  stepnr: number;
  type: number;
  system: string | null;
  drvpath: string | null;
  machine: string;
  starttime: number | null;
  project: string;
  jobset: string;
  job: string;
  busy: number;
}

/** The running steps of Hydra's /machines page: busy != 0, by machine, oldest start first. */
export async function runningStepsByMachine(db: Queryable): Promise<RunningStepRow[]> {
  const {rows} = await db.query(
    `SELECT s.build, s.stepnr, s.type, s.system, s.drvpath, s.machine, s.starttime, j.project, j.name AS jobset, b.job, s.busy
     FROM BuildSteps s JOIN Builds b ON s.build = b.id JOIN Jobsets j ON j.id = b.jobset_id
     WHERE s.busy != 0
     ORDER BY s.machine, s.starttime, s.build, s.stepnr`,
  );
  return rows as RunningStepRow[];
}

/** Groups rows of runningStepsByMachine() by machine, keeping their order. */
export function groupByMachine(rows: RunningStepRow[]): {machine: string; steps: RunningStepRow[]}[] {
  const groups: {machine: string; steps: RunningStepRow[]}[] = [];
  for (const row of rows) {
    const last = groups[groups.length - 1];
    if (last && last.machine === row.machine) last.steps.push(row);
    else groups.push({machine: row.machine, steps: [row]});
  }
  return groups;
}

export interface BusyStepRow {
  build: number;
  stepnr: number;
  machine: string;
  project: string;
  jobset: string;
  job: string;
  drvpath: string | null;
  system: string | null;
  busy: number;
  /** Unix seconds. */
  starttime: number | null;
  timeout: number | null;
}

/** Busy steps by machine, oldest first (bounded by the farm's job slots); `filter` is the shared grammar. */
export async function busySteps(db: Queryable, filter: string | null): Promise<BusyStepRow[]> {
  const q = new QueryBuilder();
  q.where('s.busy != 0');
  q.filter(filter && filter.trim() !== '' ? filter : null, 'steps');
  const sql = `SELECT s.build, s.stepnr, s.machine, j.project, j.name AS jobset, b.job, s.drvpath, s.system, s.busy, s.starttime, b.timeout
    FROM ${FILTER_FROM.steps} ${q.whereClause()} ORDER BY s.machine, COALESCE(s.starttime, 0), s.build, s.stepnr LIMIT 10000`;
  return runQuery<BusyStepRow>(db, q, sql);
}

/** A value that changes whenever the set of busy steps or one of their phases does (busy updates send no NOTIFY). */
export async function busyStepsSignature(db: Queryable): Promise<string> {
  const {rows} = await db.query(
    `SELECT count(*)::text || ':' || COALESCE(sum(busy::bigint * 1000003 + build::bigint * 31 + stepnr), 0)::text AS sig
       FROM BuildSteps WHERE busy != 0`,
  );
  return (rows[0] as {sig: string}).sig;
}

/**
 * The step whose log to show: the given one, else the running step, else the step that built the
 * build's own derivation, else the last step. undefined when there is none.
 */
export async function stepForLog(db: Queryable, build: number, stepnr?: number): Promise<{stepnr: number; drvpath: string | null} | undefined> {
  if (stepnr !== undefined) {
    const {rows} = await db.query('SELECT stepnr, drvpath FROM BuildSteps WHERE build = $1 AND stepnr = $2', [build, stepnr]);
    return rows[0] as {stepnr: number; drvpath: string | null} | undefined;
  }
  const {rows} = await db.query(
    `SELECT s.stepnr, s.drvpath FROM BuildSteps s JOIN Builds b ON b.id = s.build
      WHERE s.build = $1 AND s.drvpath IS NOT NULL
      ORDER BY (s.busy != 0) DESC, (s.drvpath = b.drvpath) DESC, s.stepnr DESC LIMIT 1`,
    [build],
  );
  return rows[0] as {stepnr: number; drvpath: string | null} | undefined;
}
