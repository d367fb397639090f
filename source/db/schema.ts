// Recognising and initialising the database: Hydra's schema (public) and hydra-ops' own schema (hydra_ops).
//
// inspectSchema() classifies a database without changing it. initSchema() creates Hydra's schema 87 in an empty
// database, applies pending hydra_ops migrations on a supported Hydra database, and refuses (changing nothing)
// anything else. Hydra's tables are never altered.
import pg from 'pg';
import {HYDRA_SCHEMA_SQL, HYDRA_SCHEMA_VERSION, HYDRA_TRIGGERS} from './schema/hydra-sql.js';
import {
  HYDRA_OPS_CREATE_SCHEMA_SQL,
  HYDRA_OPS_LEDGER_SQL,
  HYDRA_OPS_MIGRATIONS,
  HYDRA_OPS_SCHEMA,
  latestMigrationVersion,
  validateMigrations,
  type Migration,
} from './schema/hydra-ops-migrations.js';

/** Anything that can run a query: a connected client or a pool. */
export type Queryable = pg.ClientBase | pg.Pool;

/** Hydra schema versions hydra-ops reads and writes. */
export const SUPPORTED_HYDRA_VERSIONS: readonly number[] = [85, 86, 87];

export interface SchemaState {
  /** 'empty': no relations in public; 'hydra': a SchemaVersion table with one row; 'foreign': anything else. */
  kind: 'empty' | 'hydra' | 'foreign';
  /** The SchemaVersion row, when kind is 'hydra'. */
  hydraVersion: number | null;
  /** true only for a Hydra database of a supported version with nothing in `missing`. */
  supported: boolean;
  /** Required tables (`buildsteps`), columns (`builds.globalpriority`) and triggers (`trigger builds.buildbumped`)
   *  that are absent. Only computed when kind is 'hydra'. */
  missing: string[];
  /** Highest applied hydra_ops migration, null when hydra_ops has not been set up. */
  hydraOpsVersion: number | null;
  /** Highest hydra_ops migration this hydra-ops knows. */
  hydraOpsLatest: number;
  /** One sentence for the operator. */
  message: string;
}

export interface InitResult {
  /** true when Hydra's schema was created (the database was empty). */
  createdHydraSchema: boolean;
  /** hydra_ops migration versions applied by this call, in order. */
  appliedMigrations: number[];
  /** State after the call. */
  state: SchemaState;
}

export interface SchemaOptions {
  /** hydra_ops migrations to use instead of the built-in list (tests). */
  migrations?: readonly Migration[];
}

/** The database is not one hydra-ops may initialise or use; carries the inspected state when known. */
export class SchemaError extends Error {
  readonly state: SchemaState | undefined;
  constructor(message: string, state?: SchemaState, options?: {cause?: unknown}) {
    super(message, options);
    this.name = 'SchemaError';
    this.state = state;
  }
}

/** Advisory lock key serialising `db init` runs on one server (transaction-scoped). */
export const INIT_LOCK_KEY = 7_236_521_087_401;

// Columns hydra-ops relies on, per table (lower-case). Version-specific columns are listed separately.
const REQUIRED_COLUMNS: Readonly<Record<string, readonly string[]>> = {
  schemaversion: ['version'],
  users: ['username', 'fullname', 'emailaddress', 'type'],
  userroles: ['username', 'role'],
  projects: ['name', 'displayname', 'description', 'enabled', 'hidden', 'owner'],
  projectmembers: ['project', 'username'],
  jobsets: [
    'name', 'id', 'project', 'description', 'errormsg', 'errortime', 'lastcheckedtime', 'triggertime', 'enabled',
    'hidden', 'checkinterval', 'schedulingshares', 'fetcherrormsg', 'starttime', 'type',
  ],
  jobsetevals: [
    'id', 'jobset_id', 'evaluationerror_id', 'timestamp', 'checkouttime', 'evaltime', 'hasnewbuilds', 'hash',
    'nrbuilds', 'nrsucceeded', 'flake',
  ],
  jobsetevalmembers: ['eval', 'build', 'isnew'],
  evaluationerrors: ['id', 'errormsg', 'errortime'],
  builds: [
    'id', 'finished', 'timestamp', 'jobset_id', 'job', 'nixname', 'description', 'drvpath', 'system', 'maxsilent',
    'timeout', 'iscurrent', 'priority', 'globalpriority', 'starttime', 'stoptime', 'iscachedbuild', 'buildstatus',
    'size', 'closuresize', 'releasename', 'keep', 'notificationpendingsince',
  ],
  buildoutputs: ['build', 'name', 'path'],
  buildsteps: [
    'build', 'stepnr', 'type', 'drvpath', 'busy', 'status', 'errormsg', 'starttime', 'stoptime', 'machine',
    'system', 'propagatedfrom', 'overhead', 'timesbuilt', 'isnondeterministic',
  ],
  buildstepoutputs: ['build', 'stepnr', 'name', 'path'],
  buildproducts: ['build', 'productnr', 'type', 'subtype', 'filesize', 'sha256hash', 'path', 'name', 'defaultpath'],
  buildmetrics: ['build', 'name', 'unit', 'value', 'project', 'jobset', 'job', 'timestamp'],
  failedpaths: ['path'],
  systemstatus: ['what', 'status'],
  nrbuilds: ['what', 'count'],
};

/** [table, column, from version]: columns required only from a given Hydra schema version on. */
const VERSIONED_COLUMNS: ReadonlyArray<readonly [string, string, number]> = [['buildsteps', 'resolveddrvpath', 87]];

/** The tables and columns inspectSchema checks for a given Hydra version (lower-case). */
export function requiredColumns(hydraVersion: number): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [table, cols] of Object.entries(REQUIRED_COLUMNS)) out[table] = [...cols];
  for (const [table, col, from] of VERSIONED_COLUMNS) if (hydraVersion >= from) out[table]!.push(col);
  return out;
}

const supportedRange = (): string =>
  `${SUPPORTED_HYDRA_VERSIONS[0]}–${SUPPORTED_HYDRA_VERSIONS[SUPPORTED_HYDRA_VERSIONS.length - 1]}`;

function listMissing(missing: string[], max = 8): string {
  const shown = missing.slice(0, max).join(', ');
  return missing.length > max ? `${shown} and ${missing.length - max} more` : shown;
}

function isPool(db: Queryable): db is pg.Pool {
  return db instanceof pg.Pool || ('idleCount' in db && 'totalCount' in db);
}

async function relationNames(db: Queryable, schema: string): Promise<Set<string>> {
  const {rows} = await db.query<{relname: string}>(
    `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')`,
    [schema],
  );
  return new Set(rows.map((r) => r.relname));
}

type OpsRead = {version: number | null; readable: boolean};

async function readHydraOpsVersion(db: Queryable): Promise<OpsRead> {
  // Catalog lookup rather than to_regclass, which fails outright for a role without USAGE on the schema.
  const {rows} = await db.query<{readable: boolean}>(
    `SELECT has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT') AS readable
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = 'schema_migrations'`,
    [HYDRA_OPS_SCHEMA],
  );
  if (rows.length === 0) return {version: null, readable: true};
  if (!rows[0]!.readable) return {version: null, readable: false};
  const res = await db.query<{v: number | null}>('SELECT max(version)::int AS v FROM hydra_ops.schema_migrations');
  return {version: res.rows[0]?.v ?? null, readable: true};
}

type VersionRead = {ok: true; version: number} | {ok: false; problem: string};

async function readSchemaVersion(db: Queryable): Promise<VersionRead> {
  const cols = await db.query<{column_name: string; data_type: string}>(
    `SELECT column_name, data_type FROM information_schema.columns
      WHERE table_schema = 'public' AND table_name = 'schemaversion'`,
  );
  const col = cols.rows.find((c) => c.column_name === 'version');
  if (!col) return {ok: false, problem: 'table SchemaVersion has no column "version"'};
  if (!['integer', 'smallint', 'bigint'].includes(col.data_type)) {
    return {ok: false, problem: `SchemaVersion.version has type ${col.data_type}, expected integer`};
  }
  const {rows} = await db.query<{version: number | null}>('SELECT version::int AS version FROM public.schemaversion');
  if (rows.length !== 1) return {ok: false, problem: `SchemaVersion has ${rows.length} rows, expected exactly one`};
  const version = rows[0]!.version;
  if (version === null) return {ok: false, problem: 'SchemaVersion.version is NULL'};
  return {ok: true, version};
}

async function findMissing(db: Queryable, hydraVersion: number): Promise<string[]> {
  const required = requiredColumns(hydraVersion);
  const {rows} = await db.query<{table_name: string; column_name: string}>(
    `SELECT table_name, column_name FROM information_schema.columns
      WHERE table_schema = 'public' AND table_name = ANY($1::text[])`,
    [Object.keys(required)],
  );
  const present = new Map<string, Set<string>>();
  for (const r of rows) {
    if (!present.has(r.table_name)) present.set(r.table_name, new Set());
    present.get(r.table_name)!.add(r.column_name);
  }
  const missing: string[] = [];
  for (const [table, cols] of Object.entries(required)) {
    const have = present.get(table);
    if (!have) {
      missing.push(table);
      continue;
    }
    for (const c of cols) if (!have.has(c)) missing.push(`${table}.${c}`);
  }
  const trig = await db.query<{table_name: string; tgname: string}>(
    `SELECT c.relname AS table_name, t.tgname FROM pg_trigger t
       JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND NOT t.tgisinternal`,
  );
  const triggers = new Set(trig.rows.map((r) => `${r.table_name}.${r.tgname.toLowerCase()}`));
  for (const [name, table] of Object.entries(HYDRA_TRIGGERS)) {
    if (present.has(table) && !triggers.has(`${table}.${name}`)) missing.push(`trigger ${table}.${name}`);
  }
  return missing;
}

function hydraOpsNote({version, readable}: OpsRead, latest: number): string {
  if (!readable) return 'hydra_ops schema exists but this role may not read it';
  if (version === null) return 'hydra_ops schema not set up';
  if (version < latest) return `hydra_ops schema at migration ${version}, ${latest - version} pending`;
  if (version > latest) return `hydra_ops schema at migration ${version}, newer than this hydra-ops (${latest})`;
  return `hydra_ops schema up to date (migration ${version})`;
}

/** Classifies the database; reads only. */
export async function inspectSchema(db: Queryable, options: SchemaOptions = {}): Promise<SchemaState> {
  const migrations = options.migrations ?? HYDRA_OPS_MIGRATIONS;
  const hydraOpsLatest = latestMigrationVersion(migrations);
  const opsRead = await readHydraOpsVersion(db);
  const hydraOpsVersion = opsRead.version;
  const ops = hydraOpsNote(opsRead, hydraOpsLatest);
  const base = {hydraOpsVersion, hydraOpsLatest};
  /** A database hydra-ops will not use as Hydra's: empty or foreign, with the reason. */
  const unusable = (kind: 'empty' | 'foreign', message: string): SchemaState => ({...base, kind, hydraVersion: null, supported: false, missing: [], message});

  const relations = await relationNames(db, 'public');
  if (relations.size === 0) {
    return unusable('empty', `The database has no tables; \`hydra-ops db init\` creates Hydra schema ${HYDRA_SCHEMA_VERSION} (${ops}).`);
  }
  if (!relations.has('schemaversion')) {
    return unusable(
      'foreign',
      `The database has ${relations.size} relation(s) in schema public but no SchemaVersion table: ` +
        'it is not a Hydra database; hydra-ops will not use or initialise it.',
    );
  }
  const read = await readSchemaVersion(db);
  if (!read.ok) return unusable('foreign', `Malformed Hydra schema: ${read.problem}; hydra-ops will not use or initialise this database.`);
  const hydraVersion = read.version;
  const missing = await findMissing(db, hydraVersion);
  const versionOk = SUPPORTED_HYDRA_VERSIONS.includes(hydraVersion);
  let message: string;
  if (!versionOk) {
    const direction = hydraVersion < SUPPORTED_HYDRA_VERSIONS[0]! ? 'older' : 'newer';
    message =
      `Hydra schema version ${hydraVersion} is not supported (${direction} than the supported range ` +
      `${supportedRange()})` +
      (direction === 'older' ? '; upgrade Hydra (hydra-init) first.' : '; upgrade hydra-ops.');
  } else if (missing.length > 0) {
    message =
      `Hydra schema version ${hydraVersion} is incomplete: missing ${listMissing(missing)}; ` +
      'hydra-ops will not use this database.';
  } else {
    message = `Hydra schema version ${hydraVersion} (supported ${supportedRange()}); ${ops}.`;
  }
  return {...base, kind: 'hydra', hydraVersion, supported: versionOk && missing.length === 0, missing, message};
}

/**
 * Makes the database usable by hydra-ops:
 * - empty: creates Hydra's schema 87 and then applies every hydra_ops migration;
 * - supported Hydra database: applies pending hydra_ops migrations only (Hydra's tables are not touched);
 * - anything else (foreign tables, malformed SchemaVersion, unsupported version, missing columns): throws
 *   SchemaError and changes nothing.
 * Everything happens in one transaction under a transaction-scoped advisory lock, so concurrent runs serialise
 * and the second finds nothing to do. A client passed in must not be inside a transaction.
 */
export async function initSchema(db: Queryable, options: SchemaOptions = {}): Promise<InitResult> {
  const migrations = options.migrations ?? HYDRA_OPS_MIGRATIONS;
  validateMigrations(migrations);
  const client = isPool(db) ? await db.connect() : db;
  try {
    let createdHydraSchema = false;
    const appliedMigrations: number[] = [];
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock($1)', [INIT_LOCK_KEY]);
      // Hydra's DDL uses unqualified names: make sure they land in public whatever the role's search_path is.
      await client.query('SET LOCAL search_path TO public');
      const before = await inspectSchema(client, {migrations});
      if (before.kind === 'foreign') throw new SchemaError(before.message, before);
      if (before.kind === 'hydra' && !before.supported) throw new SchemaError(before.message, before);

      if (before.kind === 'empty') {
        await runStep(client, HYDRA_SCHEMA_SQL, `creating Hydra schema ${HYDRA_SCHEMA_VERSION}`);
        createdHydraSchema = true;
      }

      if (before.hydraOpsVersion === null) {
        const ns = await client.query<{present: boolean}>(
          `SELECT to_regnamespace('${HYDRA_OPS_SCHEMA}') IS NOT NULL AS present`,
        );
        if (!ns.rows[0]?.present) {
          await runStep(client, HYDRA_OPS_CREATE_SCHEMA_SQL, `creating schema ${HYDRA_OPS_SCHEMA}`);
        }
        await runStep(client, HYDRA_OPS_LEDGER_SQL, `creating table ${HYDRA_OPS_SCHEMA}.schema_migrations`);
      }
      const applied = await client.query<{version: number}>('SELECT version FROM hydra_ops.schema_migrations');
      const done = new Set(applied.rows.map((r) => r.version));
      for (const m of migrations) {
        if (done.has(m.version)) continue;
        await runStep(client, m.sql, `applying hydra_ops migration ${m.version} (${m.description})`);
        await client.query('INSERT INTO hydra_ops.schema_migrations (version) VALUES ($1)', [m.version]);
        appliedMigrations.push(m.version);
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      if (err instanceof SchemaError) throw err;
      const detail = err instanceof Error ? err.message : String(err);
      throw new SchemaError(`database initialisation failed: ${detail}; nothing was changed.`, undefined, {cause: err});
    }
    const state = await inspectSchema(client, {migrations});
    return {createdHydraSchema, appliedMigrations, state};
  } finally {
    if (client !== db) (client as pg.PoolClient).release();
  }
}

async function runStep(client: pg.ClientBase, sql: string, what: string): Promise<void> {
  try {
    await client.query(sql);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new SchemaError(`${what} failed: ${detail}; nothing was changed.`, undefined, {cause: err});
  }
}
