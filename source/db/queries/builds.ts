// Builds: keyset-paged listings (newest first, or queue order), counts, and one build's details.
// Row keys are Hydra's lower-case column names so script output (--json) can use them as they are.
import type {Queryable} from '../queryable.js';
import {FILTER_FROM} from '../filter.js';
import {QueryBuilder, checkLimit, decodeCursor, encodeCursor, pageOf, runQuery, type FilterInput, type Page} from './sql.js';

export interface BuildRow {
  id: number;
  finished: number;
  timestamp: number;
  jobset_id: number;
  project: string;
  jobset: string;
  job: string;
  nixname: string | null;
  description: string | null;
  drvpath: string;
  system: string;
  license: string | null;
  homepage: string | null;
  maintainers: string | null;
  maxsilent: number | null;
  timeout: number | null;
  ischannel: number;
  iscurrent: number | null;
  priority: number;
  globalpriority: number;
  starttime: number | null;
  stoptime: number | null;
  iscachedbuild: number | null;
  buildstatus: number | null;
  size: number | null;
  closuresize: number | null;
  releasename: string | null;
  keep: number;
  notificationpendingsince: number | null;
}

const BUILD_COLUMNS = `b.id, b.finished, b.timestamp, b.jobset_id, j.project, j.name AS jobset, b.job, b.nixname,
  b.description, b.drvpath, b.system, b.license, b.homepage, b.maintainers, b.maxsilent, b.timeout, b.ischannel,
  b.iscurrent, b.priority, b.globalpriority, b.starttime, b.stoptime, b.iscachedbuild, b.buildstatus,
  b.size::float8 AS size, b.closuresize::float8 AS closuresize, b.releasename, b.keep, b.notificationpendingsince`;

/**
 * 'id-desc': every build matching the filter, newest first (keyset on the primary key).
 * 'queue': unfinished builds only, in Hydra's /queue order: globalPriority DESC, id.
 */
export type BuildOrder = 'id-desc' | 'queue';

export interface ListBuildsOptions {
  filter?: FilterInput;
  order?: BuildOrder;
  /** nextCursor of the previous page. */
  after?: string | null;
  limit?: number;
  /** Unix seconds for `age` / `duration` (default: the clock). */
  now?: number;
}

function baseQuery(filter: FilterInput, order: BuildOrder, now: number | undefined): QueryBuilder {
  const q = new QueryBuilder();
  if (order === 'queue') q.where('b.finished = 0');
  return q.filter(filter, 'builds', now);
}

export async function listBuilds(db: Queryable, opts: ListBuildsOptions = {}): Promise<Page<BuildRow>> {
  const order = opts.order ?? 'id-desc';
  const limit = checkLimit(opts.limit);
  const q = baseQuery(opts.filter, order, opts.now);
  let orderBy: string;
  let cursorOf: (row: BuildRow) => string;
  if (order === 'queue') {
    if (opts.after) {
      const [gp, id] = decodeCursor(opts.after, 'queue', 2);
      const g = q.param(gp);
      q.where(`(b.globalpriority < ${g} OR (b.globalpriority = ${g} AND b.id > ${q.param(id)}))`);
    }
    orderBy = 'b.globalpriority DESC, b.id';
    cursorOf = (r) => encodeCursor('queue', [r.globalpriority, r.id]);
  } else {
    if (opts.after) q.where(`b.id < ${q.param(decodeCursor(opts.after, 'id', 1)[0])}`);
    orderBy = 'b.id DESC';
    cursorOf = (r) => encodeCursor('id', [r.id]);
  }
  const sql = `SELECT ${BUILD_COLUMNS} FROM ${FILTER_FROM.builds} ${q.whereClause()} ORDER BY ${orderBy} LIMIT ${q.param(limit + 1)}`;
  return pageOf(await runQuery<BuildRow>(db, q, sql), limit, cursorOf);
}

/** Number of builds matching the filter (with order 'queue': unfinished ones only). */
export async function countBuilds(db: Queryable, filter?: FilterInput, opts: {order?: BuildOrder; now?: number} = {}): Promise<number> {
  const q = baseQuery(filter, opts.order ?? 'id-desc', opts.now);
  const rows = await runQuery<{n: number}>(db, q, `SELECT count(*)::int AS n FROM ${FILTER_FROM.builds} ${q.whereClause()}`);
  return rows[0]!.n;
}

/** One build with its project and jobset names; null when there is no such build. */
export async function getBuild(db: Queryable, id: number): Promise<BuildRow | null> {
  const {rows} = await db.query(`SELECT ${BUILD_COLUMNS} FROM ${FILTER_FROM.builds} WHERE b.id = $1`, [id]);
  return (rows[0] as BuildRow | undefined) ?? null;
}

export interface BuildOutputRow {
  name: string;
  /** NULL for a content-addressed output not yet built. */
  path: string | null;
}

export async function buildOutputs(db: Queryable, id: number): Promise<BuildOutputRow[]> {
  const {rows} = await db.query('SELECT name, path FROM BuildOutputs WHERE build = $1 ORDER BY name', [id]);
  return rows as BuildOutputRow[];
}

/**
 * A BuildProducts row, with Hydra's column names as PostgreSQL returns them: what the runner writes (from
 * nix-support/hydra-build-products, without `build`, see NewBuildProduct) and what the readers get back.
 */
export interface BuildProduct {
  build: number;
  productnr: number;
  type: string;
  subtype: string;
  /** Regular files only, else null. */
  filesize: number | null;
  /** Regular files only (lower-case base 16), else null. */
  sha256hash: string | null;
  /** Always set by hydra-ops; NULL only in rows written by others. */
  path: string | null;
  name: string;
  /** As given in the products file ('' when absent); NULL only in rows written by others. */
  defaultpath: string | null;
}

/** A product before it has a build: what nix-support parsing yields and the runner inserts for a build. */
export type NewBuildProduct = Omit<BuildProduct, 'build'>;

export async function buildProducts(db: Queryable, id: number): Promise<BuildProduct[]> {
  const {rows} = await db.query(
    `SELECT build, productnr, type, subtype, filesize::float8 AS filesize, sha256hash, path, name, defaultpath
     FROM BuildProducts WHERE build = $1 ORDER BY productnr`,
    [id],
  );
  return rows as BuildProduct[];
}

export interface BuildMetricRow {
  build: number;
  name: string;
  unit: string | null;
  value: number;
  project: string;
  jobset: string;
  job: string;
  timestamp: number;
}

export async function buildMetrics(db: Queryable, id: number): Promise<BuildMetricRow[]> {
  const {rows} = await db.query(
    'SELECT build, name, unit, value, project, jobset, job, timestamp FROM BuildMetrics WHERE build = $1 ORDER BY name',
    [id],
  );
  return rows as BuildMetricRow[];
}

/** A build's derivation and whether it finished, or null when it does not exist. */
export async function buildDrv(db: Queryable, id: number): Promise<{drvpath: string; finished: number} | null> {
  const {rows} = await db.query('SELECT drvpath, finished FROM Builds WHERE id = $1', [id]);
  return (rows[0] as {drvpath: string; finished: number} | undefined) ?? null;
}
