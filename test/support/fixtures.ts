// Small row factories for tests against a database with Hydra's schema (see source/db/schema.ts initSchema).
//
// Each helper inserts one row with sensible defaults, creating whatever parent rows it needs (a user for a
// project, a project for a jobset, a jobset for a build) when they are not given, and returns the key. Values use
// Hydra's conventions: Unix-second integers for times, 0/1 integers for most flags, full /nix/store paths.
//
//   const jobset = await insertJobset(db);                       // user + project + jobset
//   const id = await insertBuild(db, {jobsetId: jobset.id});     // a queued build
//   const done = await insertBuild(db, {jobsetId: jobset.id, finished: 1, buildStatus: 0});
//   await insertBuildStep(db, {build: id, busy: 30});            // a running step
import {randomBytes} from 'node:crypto';
import type pg from 'pg';

export type Db = pg.ClientBase | pg.Pool;

let counter = 0;
/** A name unique within this process: `<prefix>-<n>`. */
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A syntactically valid store path `/nix/store/<32 base32 chars>-<name>`, random unless a hash is given. */
export function storePath(name: string, hash?: string): string {
  const alphabet = '0123456789abcdfghijklmnpqrsvwxyz';
  const h = hash ?? Array.from(randomBytes(32), (b) => alphabet[b % 32]).join('');
  return `/nix/store/${h}-${name}`;
}

/** Current Unix time in seconds. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

export interface UserFixture {
  userName?: string;
  fullName?: string | null;
  emailAddress?: string;
  /** Roles to grant (`admin`, `restart-jobs`, `cancel-build`, `bump-to-front`, …). */
  roles?: string[];
}

/** Inserts a Users row (if absent) plus its roles; returns the user name. */
export async function insertUser(db: Db, f: UserFixture = {}): Promise<string> {
  const userName = f.userName ?? uniqueName('user');
  await db.query(
    `INSERT INTO users (username, fullname, emailaddress, password) VALUES ($1, $2, $3, '!')
     ON CONFLICT (username) DO NOTHING`,
    [userName, f.fullName ?? null, f.emailAddress ?? `${userName}@example.org`],
  );
  for (const role of f.roles ?? []) {
    await db.query('INSERT INTO userroles (username, role) VALUES ($1, $2) ON CONFLICT DO NOTHING', [userName, role]);
  }
  return userName;
}

export interface ProjectFixture {
  name?: string;
  displayName?: string;
  /** Owner user; created when missing. Default: a fresh user. */
  owner?: string;
  enabled?: number;
  hidden?: number;
  description?: string | null;
}

/** Inserts a Projects row (creating the owner if needed); returns the project name. */
export async function insertProject(db: Db, f: ProjectFixture = {}): Promise<string> {
  const name = f.name ?? uniqueName('project');
  const owner = await insertUser(db, {userName: f.owner});
  await db.query(
    `INSERT INTO projects (name, displayname, description, enabled, hidden, owner) VALUES ($1, $2, $3, $4, $5, $6)`,
    [name, f.displayName ?? name, f.description ?? null, f.enabled ?? 1, f.hidden ?? 0, owner],
  );
  return name;
}

export interface JobsetFixture {
  /** Existing project; default: a new one. */
  project?: string;
  name?: string;
  description?: string | null;
  schedulingShares?: number;
  enabled?: number;
  hidden?: number;
  checkInterval?: number;
  triggerTime?: number | null;
}

export interface JobsetRow {
  id: number;
  project: string;
  name: string;
}

/** Inserts a legacy (type 0) Jobsets row; returns its id, project and name. */
export async function insertJobset(db: Db, f: JobsetFixture = {}): Promise<JobsetRow> {
  const project = f.project ?? (await insertProject(db));
  const name = f.name ?? uniqueName('jobset');
  const {rows} = await db.query<{id: number}>(
    `INSERT INTO jobsets (name, project, description, nixexprinput, nixexprpath, emailoverride,
                          schedulingshares, enabled, hidden, checkinterval, triggertime)
     VALUES ($1, $2, $3, 'src', 'release.nix', '', $4, $5, $6, $7, $8) RETURNING id`,
    [
      name,
      project,
      f.description ?? null,
      f.schedulingShares ?? 100,
      f.enabled ?? 1,
      f.hidden ?? 0,
      f.checkInterval ?? 300,
      f.triggerTime ?? null,
    ],
  );
  return {id: rows[0]!.id, project, name};
}

export interface BuildFixture {
  /** Existing jobset id; default: a new jobset. */
  jobsetId?: number;
  job?: string;
  /** 0 queued (default) or 1 finished. */
  finished?: number;
  /** Default: null when queued, 0 (success) when finished. */
  buildStatus?: number | null;
  timestamp?: number;
  drvPath?: string;
  system?: string;
  nixName?: string | null;
  description?: string | null;
  priority?: number;
  globalPriority?: number;
  /** Default: null when queued, now when finished (Builds' CHECKs require both times on finished rows). */
  startTime?: number | null;
  stopTime?: number | null;
  isCachedBuild?: number | null;
  isCurrent?: number;
  keep?: number;
  maxsilent?: number;
  timeout?: number;
  notificationPendingSince?: number | null;
  /** Output name -> path rows for BuildOutputs; default `{out: <random store path>}`. */
  outputs?: Record<string, string | null>;
}

/** Inserts a Builds row (plus its BuildOutputs); returns the build id. */
export async function insertBuild(db: Db, f: BuildFixture = {}): Promise<number> {
  const jobsetId = f.jobsetId ?? (await insertJobset(db)).id;
  const finished = f.finished ?? 0;
  const now = nowSeconds();
  const job = f.job ?? uniqueName('job');
  const nixName = f.nixName === undefined ? job : f.nixName;
  const {rows} = await db.query<{id: number}>(
    `INSERT INTO builds (finished, timestamp, jobset_id, job, nixname, description, drvpath, system, maxsilent,
                         timeout, iscurrent, priority, globalpriority, starttime, stoptime, iscachedbuild,
                         buildstatus, keep, notificationpendingsince)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) RETURNING id`,
    [
      finished,
      f.timestamp ?? now,
      jobsetId,
      job,
      nixName,
      f.description ?? null,
      f.drvPath ?? storePath(`${nixName ?? 'build'}.drv`),
      f.system ?? 'x86_64-linux',
      f.maxsilent ?? 7200,
      f.timeout ?? 36000,
      f.isCurrent ?? 1,
      f.priority ?? 100,
      f.globalPriority ?? 0,
      f.startTime !== undefined ? f.startTime : finished ? now : null,
      f.stopTime !== undefined ? f.stopTime : finished ? now : null,
      f.isCachedBuild !== undefined ? f.isCachedBuild : finished ? 0 : null,
      f.buildStatus !== undefined ? f.buildStatus : finished ? 0 : null,
      f.keep ?? 0,
      f.notificationPendingSince ?? null,
    ],
  );
  const id = rows[0]!.id;
  const outputs = f.outputs ?? {out: storePath(nixName ?? 'out')};
  for (const [name, path] of Object.entries(outputs)) {
    await db.query('INSERT INTO buildoutputs (build, name, path) VALUES ($1, $2, $3)', [id, name, path]);
  }
  return id;
}

export interface BuildStepFixture {
  build: number;
  /** Default: max(stepnr) + 1 for the build. */
  stepnr?: number;
  /** 0 build (default), 1 substitution. */
  type?: number;
  drvPath?: string;
  /** 0 not running (default), else a phase (1, 10, 20, 30, 35, 40, 50). */
  busy?: number;
  /** Default: null when busy, 0 when not. */
  status?: number | null;
  errorMsg?: string | null;
  startTime?: number | null;
  /** Default: null when busy, now when not. */
  stopTime?: number | null;
  machine?: string;
  system?: string | null;
  propagatedFrom?: number | null;
  overhead?: number | null;
  timesBuilt?: number | null;
  isNonDeterministic?: boolean | null;
  /** Required by the schema exactly when status = 13. */
  resolvedDrvPath?: string | null;
  /** Output name -> path rows for BuildStepOutputs; default `{out: null}`. */
  outputs?: Record<string, string | null>;
}

/** Inserts a BuildSteps row (plus its BuildStepOutputs); returns the step number. */
export async function insertBuildStep(db: Db, f: BuildStepFixture): Promise<number> {
  const busy = f.busy ?? 0;
  const now = nowSeconds();
  let stepnr = f.stepnr;
  if (stepnr === undefined) {
    const {rows} = await db.query<{n: number}>(
      'SELECT coalesce(max(stepnr), 0)::int + 1 AS n FROM buildsteps WHERE build = $1',
      [f.build],
    );
    stepnr = rows[0]!.n;
  }
  await db.query(
    `INSERT INTO buildsteps (build, stepnr, type, drvpath, busy, status, errormsg, starttime, stoptime, machine,
                             system, propagatedfrom, overhead, timesbuilt, isnondeterministic, resolveddrvpath)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
    [
      f.build,
      stepnr,
      f.type ?? 0,
      f.drvPath ?? storePath('step.drv'),
      busy,
      f.status !== undefined ? f.status : busy ? null : 0,
      f.errorMsg ?? null,
      f.startTime !== undefined ? f.startTime : now,
      f.stopTime !== undefined ? f.stopTime : busy ? null : now,
      f.machine ?? '',
      f.system !== undefined ? f.system : 'x86_64-linux',
      f.propagatedFrom ?? null,
      f.overhead ?? null,
      f.timesBuilt ?? null,
      f.isNonDeterministic ?? null,
      f.resolvedDrvPath ?? null,
    ],
  );
  for (const [name, path] of Object.entries(f.outputs ?? {out: null})) {
    await db.query('INSERT INTO buildstepoutputs (build, stepnr, name, path) VALUES ($1, $2, $3, $4)', [
      f.build,
      stepnr,
      name,
      path,
    ]);
  }
  return stepnr;
}
