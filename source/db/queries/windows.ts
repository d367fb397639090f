// Keyset windows for the console: pages of builds (newest first or queue order), the audit log and
// reproducibility checks, from the start, the end, or either side of a row's key, never a whole
// list; each row of a page of builds carries the phase and machine of its running steps.
import type {Queryable} from '../queryable.js';
import {FILTER_FROM} from '../filter.js';
import {QueryBuilder, runQuery} from './sql.js';
import type {BuildOrder} from './builds.js';

/** Where a page starts: the top, the bottom, or right after / before the row with this key. */
export type Anchor =
  | {kind: 'start'}
  | {kind: 'end'}
  | {kind: 'after'; key: number[]}
  | {kind: 'before'; key: number[]}
  /** Inclusive: the row with this key (if it still exists) and the ones after it (a refresh in place). */
  | {kind: 'from'; key: number[]};

export interface BuildWindowRow {
  id: number;
  project: string;
  jobset: string;
  job: string;
  system: string;
  drvpath: string;
  finished: number;
  buildstatus: number | null;
  iscachedbuild: number | null;
  priority: number;
  globalpriority: number;
  /** Unix seconds. */
  timestamp: number;
  starttime: number | null;
  stoptime: number | null;
  /** Highest busy phase of the build's running steps (0 = none). */
  busy: number;
  /** Machine of a running step, if any. */
  machine: string | null;
}

const LIST_COLUMNS = `b.id, j.project, j.name AS jobset, b.job, b.system, b.drvpath, b.finished, b.buildstatus, b.iscachedbuild,
  b.priority, b.globalpriority, b.timestamp, b.starttime, b.stoptime`;

/**
 * The Builds view's sort columns (`s` cycles them, `S` reverses): each is a list of columns ending in
 * b.id, so ties are broken by id and every row has one place (keyset paging stays exact), and each is
 * backed by an index of Hydra's schema (or the partial index of unfinished builds): `id-desc` newest
 * first (the primary key); `queue` Hydra's /queue order, globalPriority DESC, id (unfinished builds:
 * IndexBuildsOnFinished); `stoptime` the most recently finished first (finished builds:
 * IndexBuildsOnFinishedStopTime).
 */
export type BuildSortColumn = BuildOrder | 'stoptime';

export const BUILD_SORTS: Record<BuildSortColumn, {cols: {expr: string; desc: boolean; of: (r: BuildWindowRow) => number}[]; scope: string | null; label: string; reversed: string}> = {
  'id-desc': {cols: [{expr: 'b.id', desc: true, of: (r) => r.id}], scope: null, label: 'newest first', reversed: 'oldest first'},
  queue: {
    cols: [
      {expr: 'b.globalpriority', desc: true, of: (r) => r.globalpriority},
      {expr: 'b.id', desc: false, of: (r) => r.id},
    ],
    scope: 'b.finished = 0',
    label: 'queue order',
    reversed: 'queue order, last first',
  },
  stoptime: {
    cols: [
      {expr: 'b.stoptime', desc: true, of: (r) => r.stoptime ?? 0},
      {expr: 'b.id', desc: true, of: (r) => r.id},
    ],
    // Hydra sets stopTime whenever it sets finished = 1; a row without one has no place in this order.
    scope: 'b.finished = 1 AND b.stoptime IS NOT NULL',
    label: 'finished, latest first',
    reversed: 'finished, earliest first',
  },
};

/** The cycle `s` walks through. */
export const BUILD_SORT_CYCLE: readonly BuildSortColumn[] = ['id-desc', 'queue', 'stoptime'];

/** The keyset key of a row in a sort order (the values of its sort columns). */
export function buildSortKey(row: BuildWindowRow, order: BuildSortColumn): number[] {
  return BUILD_SORTS[order].cols.map((c) => c.of(row));
}

/**
 * ORDER BY and keyset condition for a sort, forwards or backwards from an anchor: "after key k" is
 * the lexicographic comparison over the sort columns, each in its own direction (mixed directions,
 * as in queue order, rule out a row-value comparison).
 */
function keyset(order: BuildSortColumn, reverseSort: boolean, anchor: Anchor, q: QueryBuilder): {orderBy: string; reverse: boolean} {
  const cols = BUILD_SORTS[order].cols.map((c) => ({expr: c.expr, desc: c.desc !== reverseSort}));
  const orderBy = (flip: boolean) => cols.map((c) => `${c.expr} ${c.desc !== flip ? 'DESC' : 'ASC'}`).join(', ');
  const cond = (key: number[], backwards: boolean, inclusive: boolean): string => {
    const ps = cols.map((_, i) => q.param(key[i]));
    const ors: string[] = [];
    for (let i = 0; i < cols.length; i++) {
      const eq = cols.slice(0, i).map((c, j) => `${c.expr} = ${ps[j]}`);
      const later = cols[i]!.desc !== backwards ? '<' : '>';
      ors.push([...eq, `${cols[i]!.expr} ${later} ${ps[i]}`].join(' AND '));
    }
    if (inclusive) ors.push(cols.map((c, j) => `${c.expr} = ${ps[j]}`).join(' AND '));
    return `(${ors.map((o) => `(${o})`).join(' OR ')})`;
  };
  switch (anchor.kind) {
    case 'start':
      return {orderBy: orderBy(false), reverse: false};
    case 'end':
      return {orderBy: orderBy(true), reverse: true};
    case 'after':
      q.where(cond(anchor.key, false, false));
      return {orderBy: orderBy(false), reverse: false};
    case 'from':
      q.where(cond(anchor.key, false, true));
      return {orderBy: orderBy(false), reverse: false};
    case 'before':
      q.where(cond(anchor.key, true, false));
      return {orderBy: orderBy(true), reverse: true};
  }
}

/** Newest-first keyset paging on an id column for the audit and checks tables. */
function idKeyset(anchor: Anchor, params: unknown[]): {where: string; orderBy: string; reverse: boolean} {
  const p = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  switch (anchor.kind) {
    case 'start':
      return {where: '', orderBy: 'id DESC', reverse: false};
    case 'end':
      return {where: '', orderBy: 'id ASC', reverse: true};
    case 'after':
      return {where: `WHERE id < ${p(anchor.key[0])}`, orderBy: 'id DESC', reverse: false};
    case 'from':
      return {where: `WHERE id <= ${p(anchor.key[0])}`, orderBy: 'id DESC', reverse: false};
    case 'before':
      return {where: `WHERE id > ${p(anchor.key[0])}`, orderBy: 'id ASC', reverse: true};
  }
}

/** A window of `limit` rows of a table paged by id (idKeyset), in newest-first order. */
async function pageById<R>(db: Queryable, table: string, columns: string, anchor: Anchor, limit: number): Promise<R[]> {
  const params: unknown[] = [];
  const k = idKeyset(anchor, params);
  params.push(limit);
  const {rows} = await db.query(`SELECT ${columns} FROM ${table} ${k.where} ORDER BY ${k.orderBy} LIMIT $${params.length}`, params);
  if (k.reverse) rows.reverse();
  return rows as R[];
}

/** Highest busy phase and a machine of each given build's running steps. */
async function busyOf(db: Queryable, ids: number[]): Promise<Map<number, {busy: number; machine: string}>> {
  const busy = new Map<number, {busy: number; machine: string}>();
  if (ids.length === 0) return busy;
  const r = await db.query(
    `SELECT build, max(busy)::int AS busy, min(machine) AS machine FROM BuildSteps
      WHERE build = ANY($1::int[]) AND busy != 0 GROUP BY build`,
    [ids],
  );
  for (const x of r.rows as {build: number; busy: number; machine: string}[]) busy.set(x.build, x);
  return busy;
}

/** A page of builds in display order; `filter` is the shared filter grammar (throws FilterError). */
export async function pageBuilds(
  db: Queryable,
  req: {filter: string | null; order: BuildSortColumn; reverse?: boolean; anchor: Anchor; limit: number},
): Promise<BuildWindowRow[]> {
  const q = buildWindowQuery(req.filter, req.order);
  const {orderBy, reverse} = keyset(req.order, req.reverse === true, req.anchor, q);
  const sql = `SELECT ${LIST_COLUMNS} FROM ${FILTER_FROM.builds} ${q.whereClause()} ORDER BY ${orderBy} LIMIT ${q.param(req.limit)}`;
  const rows = await runQuery<Omit<BuildWindowRow, 'busy' | 'machine'>>(db, q, sql);
  if (reverse) rows.reverse();
  const busy = await busyOf(db, rows.filter((r) => r.finished === 0).map((r) => r.id));
  return rows.map((r) => ({...r, busy: busy.get(r.id)?.busy ?? 0, machine: busy.get(r.id)?.machine ?? null}));
}

function buildWindowQuery(filter: string | null, order: BuildSortColumn): QueryBuilder {
  const q = new QueryBuilder();
  const scope = BUILD_SORTS[order].scope;
  if (scope) q.where(scope);
  q.filter(filter && filter.trim() !== '' ? filter : null, 'builds');
  return q;
}

/** How many builds the Builds view lists in this order with this filter (the order's scope and the filter). */
export async function countBuildWindow(db: Queryable, filter: string | null, order: BuildSortColumn): Promise<number> {
  const q = buildWindowQuery(filter, order);
  const rows = await runQuery<{n: number}>(db, q, `SELECT count(*)::int AS n FROM ${FILTER_FROM.builds} ${q.whereClause()}`);
  return rows[0]!.n;
}

export type BuildDetailRow = Omit<BuildWindowRow, 'busy' | 'machine'> & {
  nixname: string | null;
  description: string | null;
  timeout: number | null;
  maxsilent: number | null;
  releasename: string | null;
};

/** One build with the columns of a page row plus those the detail view shows. */
export async function buildDetailRow(db: Queryable, id: number): Promise<BuildDetailRow | null> {
  const {rows} = await db.query(
    `SELECT ${LIST_COLUMNS}, b.nixname, b.description, b.timeout, b.maxsilent, b.releasename FROM ${FILTER_FROM.builds} WHERE b.id = $1`,
    [id],
  );
  return (rows[0] as BuildDetailRow | undefined) ?? null;
}

/** An action taken or refused, as the console's Audit view shows it (hydra_ops.audit_log; absent text is ''). */
export interface AuditWindowRow {
  id: number;
  /** ISO time, UTC. */
  at: string;
  hydraUser: string;
  unixUser: string;
  action: string;
  scope: string;
  targetCount: number;
  resultCount: number | null;
  outcome: string;
  message: string | null;
}

/** A page of hydra_ops.audit_log, newest first. */
export function pageAuditLog(db: Queryable, anchor: Anchor, limit: number): Promise<AuditWindowRow[]> {
  return pageById(
    db,
    'hydra_ops.audit_log',
    `id::float8 AS id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS at, COALESCE(hydra_user, '') AS "hydraUser",
     COALESCE(unix_user, '') AS "unixUser", action, COALESCE(scope, '') AS scope, COALESCE(target_count, 0) AS "targetCount",
     result_count AS "resultCount", outcome, message`,
    anchor,
    limit,
  );
}

export async function countAuditLog(db: Queryable): Promise<number> {
  const {rows} = await db.query('SELECT count(*)::int AS n FROM hydra_ops.audit_log');
  return (rows[0] as {n: number}).n;
}

/** A reproducibility check as the console shows it (hydra_ops.repro_checks). */
export interface CheckWindowRow {
  id: number;
  build: number | null;
  drvPath: string;
  originalMachine: string | null;
  checkMachine: string | null;
  verdict: string;
  /** Outputs whose two builds differ (from the outputs jsonb: [{name, expected, got}]). */
  differing: string[];
  diffLogPath: string | null;
  startedAt: string | null;
}

const CHECK_COLUMNS = `id::float8 AS id, build, drv_path AS "drvPath", original_machine AS "originalMachine", check_machine AS "checkMachine", verdict,
            CASE WHEN jsonb_typeof(outputs) = 'array' THEN ARRAY(
              SELECT COALESCE(o->>'name', '?') FROM jsonb_array_elements(outputs) o
               WHERE jsonb_typeof(o) = 'object' AND o ? 'expected' AND o ? 'got' AND o->'expected' IS DISTINCT FROM o->'got')
            ELSE '{}'::text[] END AS differing,
            diff_log_path AS "diffLogPath", to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS "startedAt"`;

/** A page of hydra_ops.repro_checks, newest first. */
export function pageReproChecks(db: Queryable, anchor: Anchor, limit: number): Promise<CheckWindowRow[]> {
  return pageById(db, 'hydra_ops.repro_checks', CHECK_COLUMNS, anchor, limit);
}

/** The latest check of one build (highest id), or null. */
export async function lastReproCheck(db: Queryable, build: number): Promise<CheckWindowRow | null> {
  const {rows} = await db.query(`SELECT ${CHECK_COLUMNS} FROM hydra_ops.repro_checks WHERE build = $1 ORDER BY id DESC LIMIT 1`, [build]);
  return (rows[0] as CheckWindowRow | undefined) ?? null;
}

export async function countReproChecks(db: Queryable): Promise<number> {
  const {rows} = await db.query('SELECT count(*)::int AS n FROM hydra_ops.repro_checks');
  return (rows[0] as {n: number}).n;
}

/** Per jobset of the given builds: how many are running (have a busy step) and how many not. */
export async function buildsScope(db: Queryable, ids: number[]): Promise<{js: string; queued: number; running: number}[]> {
  if (ids.length === 0) return [];
  const {rows} = await db.query(
    `SELECT j.project || ':' || j.name AS js,
            count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM BuildSteps s WHERE s.build = b.id AND s.busy != 0))::int AS queued,
            count(*) FILTER (WHERE EXISTS (SELECT 1 FROM BuildSteps s WHERE s.build = b.id AND s.busy != 0))::int AS running
       FROM Builds b JOIN Jobsets j ON j.id = b.jobset_id WHERE b.id = ANY($1::int[]) GROUP BY 1 ORDER BY 1`,
    [ids],
  );
  return rows as {js: string; queued: number; running: number}[];
}

export interface EvalWindowRow {
  id: number;
  project: string;
  jobset: string;
  /** Unix seconds the evaluation finished. */
  timestamp: number;
  evaltime: number;
  /** 0: the eval changed nothing and has no member rows. */
  hasnewbuilds: number;
  /** The linked EvaluationErrors row has a non-empty message (its first line, shortened). */
  error: string | null;
  /** Member counts, over JobsetEvalMembers of this page's evals only. */
  builds: number;
  new: number;
  succeeded: number;
  failed: number;
  queued: number;
}

/**
 * A page of evaluations (JobsetEvals), newest first, keyset-paged on e.id; `filter` is the shared
 * filter grammar for evals (project, jobset, id, age). The member counts (Hydra's eval page shows
 * the same: succeeded, failed, queued, new) are one GROUP BY over the members of this page's evals.
 */
export async function pageEvals(db: Queryable, req: {filter: string | null; anchor: Anchor; limit: number}): Promise<EvalWindowRow[]> {
  const q = new QueryBuilder();
  q.filter(req.filter && req.filter.trim() !== '' ? req.filter : null, 'evals');
  let orderBy = 'e.id DESC';
  let reverse = false;
  const a = req.anchor;
  if (a.kind === 'end') [orderBy, reverse] = ['e.id ASC', true];
  else if (a.kind === 'after') q.where(`e.id < ${q.param(a.key[0])}`);
  else if (a.kind === 'from') q.where(`e.id <= ${q.param(a.key[0])}`);
  else if (a.kind === 'before') {
    q.where(`e.id > ${q.param(a.key[0])}`);
    [orderBy, reverse] = ['e.id ASC', true];
  }
  const sql = `SELECT e.id, j.project, j.name AS jobset, e.timestamp, e.evaltime, e.hasnewbuilds,
      NULLIF(left(split_part(COALESCE(ee.errormsg, ''), E'\\n', 1), 200), '') AS error
    FROM ${FILTER_FROM.evals} LEFT JOIN EvaluationErrors ee ON ee.id = e.evaluationerror_id
    ${q.whereClause()} ORDER BY ${orderBy} LIMIT ${q.param(req.limit)}`;
  const rows = await runQuery<Omit<EvalWindowRow, 'builds' | 'new' | 'succeeded' | 'failed' | 'queued'>>(db, q, sql);
  if (reverse) rows.reverse();
  const counts = new Map<number, {builds: number; new: number; succeeded: number; failed: number; queued: number}>();
  if (rows.length > 0) {
    const c = await db.query(
      `SELECT m.eval AS id, count(*)::int AS builds, count(*) FILTER (WHERE m.isnew = 1)::int AS new,
              count(*) FILTER (WHERE b.finished = 1 AND b.buildstatus = 0)::int AS succeeded,
              count(*) FILTER (WHERE b.finished = 1 AND b.buildstatus != 0)::int AS failed,
              count(*) FILTER (WHERE b.finished = 0)::int AS queued
         FROM JobsetEvalMembers m JOIN Builds b ON b.id = m.build
        WHERE m.eval = ANY($1::int[]) GROUP BY m.eval`,
      [rows.map((r) => r.id)],
    );
    for (const r of c.rows as ({id: number} & EvalWindowRow)[]) counts.set(r.id, r);
  }
  return rows.map((r) => {
    const n = counts.get(r.id);
    return {...r, builds: n?.builds ?? 0, new: n?.new ?? 0, succeeded: n?.succeeded ?? 0, failed: n?.failed ?? 0, queued: n?.queued ?? 0};
  });
}

export async function countEvals(db: Queryable, filter: string | null): Promise<number> {
  const q = new QueryBuilder();
  q.filter(filter && filter.trim() !== '' ? filter : null, 'evals');
  const rows = await runQuery<{n: number}>(db, q, `SELECT count(*)::int AS n FROM ${FILTER_FROM.evals} ${q.whereClause()}`);
  return rows[0]!.n;
}
