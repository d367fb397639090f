// Projects and jobsets the way Hydra stores them (the Projects and Jobsets tables of Hydra's src/sql/hydra.sql), for farms and tests that queue builds
// without Hydra's web app:
//
// - a project needs an owner that exists in Users; a missing owner is an error unless the caller explicitly asks
//   for it to be created as a minimal row (emailAddress '', password '!': it cannot log in to Hydra's web app);
// - a jobset is a legacy (type 0) jobset: the expression file's directory is a `path` input (named `src` unless
//   told otherwise) that is the jobset's nixExprInput, and nixExprPath is the file name inside it, which is
//   exactly what Hydra's own evaluator would use (`<src/release.nix>`); further inputs are JobsetInputs rows with
//   one JobsetInputAlts row (altnr 0) each, of type string, boolean or path.
import {inFrame, transactionOn, withTransaction} from '../db/transaction.js';
import {existsSync, statSync} from 'node:fs';
import {basename, dirname, isAbsolute, resolve} from 'node:path';
import type pg from 'pg';
import type {EvalInput, InputType} from '../nix/eval-jobs.js';
import {JobsetError} from './jobset-errors.js';

type Db = pg.Pool | pg.ClientBase;

/** Hydra's projectNameRE and jobsetNameRE. */
export const PROJECT_NAME_RE = /^[A-Za-z_][A-Za-z0-9_-]*$/;
export const JOBSET_NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
/** Input names are Nix identifiers (they become function arguments). */
export const INPUT_NAME_RE = /^[A-Za-z_][A-Za-z0-9_'-]*$/;
export const DEFAULT_EXPR_INPUT = 'src';

export interface JobsetRef {
  project: string;
  jobset: string;
}

/** `PROJECT/JOBSET` (also `PROJECT:JOBSET`, Hydra's display form). */
export function parseJobsetRef(text: string): JobsetRef {
  const m = /^([^/:]+)[/:]([^/:]+)$/.exec(text);
  if (!m) throw new JobsetError('usage', `'${text}' is not PROJECT/JOBSET (for example demo/main)`);
  const ref = {project: m[1]!, jobset: m[2]!};
  checkProjectName(ref.project);
  checkJobsetName(ref.jobset);
  return ref;
}

export function checkProjectName(name: string): void {
  if (!PROJECT_NAME_RE.test(name)) {
    throw new JobsetError('usage', `invalid project name '${name}': use letters, digits, '_' and '-', starting with a letter or '_'`);
  }
}

export function checkJobsetName(name: string): void {
  if (!JOBSET_NAME_RE.test(name)) {
    throw new JobsetError('usage', `invalid jobset name '${name}': use letters, digits, '_', '-' and '.', starting with a letter or '_'`);
  }
}

/**
 * One `--input` argument: `NAME=VALUE`, or `NAME:TYPE=VALUE` with TYPE string, boolean or path.
 * Without a type: `true`/`false` are booleans; a value containing `/` that names an existing file or directory
 * is a path (made absolute against `cwd`); anything else is a string. Paths must exist.
 */
export function parseInputArg(arg: string, cwd: string = process.cwd()): EvalInput {
  const eq = arg.indexOf('=');
  if (eq <= 0) throw new JobsetError('usage', `--input '${arg}': expected NAME=VALUE or NAME:TYPE=VALUE`);
  const left = arg.slice(0, eq);
  const value = arg.slice(eq + 1);
  const colon = left.indexOf(':');
  const name = colon < 0 ? left : left.slice(0, colon);
  const typeText = colon < 0 ? null : left.slice(colon + 1);
  if (!INPUT_NAME_RE.test(name)) throw new JobsetError('usage', `--input '${arg}': '${name}' is not a valid input name (a Nix identifier)`);
  let type: InputType;
  if (typeText !== null) {
    if (typeText !== 'string' && typeText !== 'boolean' && typeText !== 'path') {
      throw new JobsetError('usage', `--input '${arg}': unknown input type '${typeText}' (string, boolean or path)`);
    }
    type = typeText;
  } else if (value === 'true' || value === 'false') {
    type = 'boolean';
  } else if (value.includes('/') && existsSync(resolve(cwd, value))) {
    type = 'path';
  } else {
    type = 'string';
  }
  if (type === 'boolean' && value !== 'true' && value !== 'false') {
    throw new JobsetError('usage', `--input '${arg}': a boolean input is 'true' or 'false'`);
  }
  if (type === 'path') {
    const abs = resolve(cwd, value);
    if (!existsSync(abs)) throw new JobsetError('usage', `--input '${arg}': path '${abs}' does not exist`);
    return {name, type, value: abs};
  }
  return {name, type, value};
}

export interface CreateProjectOptions {
  name: string;
  displayName?: string;
  description?: string | null;
  homepage?: string | null;
  owner: string;
  /** Create the owner as a minimal Users row when it does not exist. */
  createOwner?: boolean;
  /** An existing project is updated (display name, description, homepage, owner) instead of refused. */
  replace?: boolean;
}

export interface ProjectResult {
  name: string;
  owner: string;
  created: boolean;
  ownerCreated: boolean;
}

export async function createProject(db: Db, o: CreateProjectOptions): Promise<ProjectResult> {
  checkProjectName(o.name);
  if (o.owner.trim() === '') throw new JobsetError('usage', 'the project owner must be a Hydra user name');
  return inTransaction(db, async (c) => {
    const existing = await c.query('SELECT 1 FROM projects WHERE name = $1 FOR UPDATE', [o.name]);
    if (existing.rowCount && !o.replace) throw new JobsetError('conflict', `project '${o.name}' already exists`);
    let ownerCreated = false;
    const user = await c.query('SELECT 1 FROM users WHERE username = $1', [o.owner]);
    if (!user.rowCount) {
      if (!o.createOwner) {
        throw new JobsetError(
          'not-found',
          `user '${o.owner}' does not exist in Users; name an existing user with --owner, or pass --create-owner to create it as a minimal user (no e-mail, no password)`,
        );
      }
      await c.query(`INSERT INTO users (username, fullname, emailaddress, password) VALUES ($1, NULL, '', '!')`, [o.owner]);
      ownerCreated = true;
    }
    if (existing.rowCount) {
      await c.query(
        `UPDATE projects SET displayname = $2, description = $3, homepage = $4, owner = $5 WHERE name = $1`,
        [o.name, o.displayName ?? o.name, o.description ?? null, o.homepage ?? null, o.owner],
      );
    } else {
      await c.query(
        `INSERT INTO projects (name, displayname, description, homepage, owner, enabled, hidden) VALUES ($1, $2, $3, $4, $5, 1, 0)`,
        [o.name, o.displayName ?? o.name, o.description ?? null, o.homepage ?? null, o.owner],
      );
    }
    return {name: o.name, owner: o.owner, created: !existing.rowCount, ownerCreated};
  });
}

export interface CreateJobsetOptions {
  project: string;
  name: string;
  /** The jobset expression file (made absolute against cwd). */
  exprFile: string;
  inputs?: readonly EvalInput[];
  /** Name of the path input holding the expression's directory (default `src`). */
  exprInput?: string;
  description?: string | null;
  /** schedulingShares, > 0 (default 100). */
  shares?: number;
  /** checkInterval in seconds, ≥ 0 (default 300; 0 = never evaluated periodically by Hydra). */
  checkInterval?: number;
  /** 0 disabled, 1 enabled, 2 one-shot, 3 one-at-a-time (default 1). */
  enabled?: number;
  /** An existing jobset gets the new definition (its inputs replaced) instead of being refused. */
  replace?: boolean;
  cwd?: string;
}

export interface JobsetResult {
  id: number;
  project: string;
  name: string;
  nixExprInput: string;
  nixExprPath: string;
  inputs: EvalInput[];
  created: boolean;
}

export function checkPositiveInt(value: number, what: string, min: number): void {
  if (!Number.isInteger(value) || value < min || value > 2_147_483_647) {
    throw new JobsetError('usage', `${what} must be an integer ≥ ${min} (got ${value})`);
  }
}

export async function createJobset(db: Db, o: CreateJobsetOptions): Promise<JobsetResult> {
  checkProjectName(o.project);
  checkJobsetName(o.name);
  const exprInput = o.exprInput ?? DEFAULT_EXPR_INPUT;
  if (!INPUT_NAME_RE.test(exprInput)) throw new JobsetError('usage', `'${exprInput}' is not a valid input name`);
  const shares = o.shares ?? 100;
  checkPositiveInt(shares, 'the scheduling shares (--shares)', 1);
  const checkInterval = o.checkInterval ?? 300;
  checkPositiveInt(checkInterval, 'the check interval (--check-interval)', 0);
  const enabled = o.enabled ?? 1;
  if (![0, 1, 2, 3].includes(enabled)) throw new JobsetError('usage', `enabled must be 0, 1, 2 or 3 (got ${enabled})`);
  const file = isAbsolute(o.exprFile) ? o.exprFile : resolve(o.cwd ?? process.cwd(), o.exprFile);
  let st;
  try {
    st = statSync(file);
  } catch {
    throw new JobsetError('usage', `expression file '${file}' does not exist`);
  }
  if (!st.isFile()) throw new JobsetError('usage', `expression '${file}' is not a file`);
  const inputs: EvalInput[] = [{name: exprInput, type: 'path', value: dirname(file)}];
  for (const i of o.inputs ?? []) {
    if (inputs.some((x) => x.name === i.name)) {
      throw new JobsetError('usage', i.name === exprInput
        ? `input name '${i.name}' is taken by the expression's directory; choose another name`
        : `input '${i.name}' is given twice`);
    }
    inputs.push(i);
  }
  const nixExprPath = basename(file);

  return inTransaction(db, async (c) => {
    const project = await c.query('SELECT 1 FROM projects WHERE name = $1', [o.project]);
    if (!project.rowCount) throw new JobsetError('not-found', `project '${o.project}' does not exist (create it with hydra-ops project create ${o.project})`);
    const existing = await c.query<{id: number}>('SELECT id FROM jobsets WHERE project = $1 AND name = $2 FOR UPDATE', [o.project, o.name]);
    let id: number;
    if (existing.rowCount) {
      if (!o.replace) throw new JobsetError('conflict', `jobset '${o.project}/${o.name}' already exists`);
      id = existing.rows[0]!.id;
      await c.query(
        `UPDATE jobsets SET description = $3, nixexprinput = $4, nixexprpath = $5, schedulingshares = $6,
           checkinterval = $7, enabled = $8, type = 0, flake = NULL
         WHERE project = $1 AND name = $2`,
        [o.project, o.name, o.description ?? null, exprInput, nixExprPath, shares, checkInterval, enabled],
      );
      await c.query('DELETE FROM jobsetinputs WHERE project = $1 AND jobset = $2', [o.project, o.name]);
    } else {
      const r = await c.query<{id: number}>(
        `INSERT INTO jobsets (project, name, description, nixexprinput, nixexprpath, enabled, emailoverride,
           checkinterval, schedulingshares, type)
         VALUES ($1, $2, $3, $4, $5, $6, '', $7, $8, 0) RETURNING id`,
        [o.project, o.name, o.description ?? null, exprInput, nixExprPath, enabled, checkInterval, shares],
      );
      id = r.rows[0]!.id;
    }
    for (const i of inputs) {
      await c.query('INSERT INTO jobsetinputs (project, jobset, name, type) VALUES ($1, $2, $3, $4)', [o.project, o.name, i.name, i.type]);
      await c.query('INSERT INTO jobsetinputalts (project, jobset, input, altnr, value) VALUES ($1, $2, $3, 0, $4)', [
        o.project,
        o.name,
        i.name,
        i.value,
      ]);
    }
    return {id, project: o.project, name: o.name, nixExprInput: exprInput, nixExprPath, inputs, created: !existing.rowCount};
  });
}

export interface JobsetDefinition {
  id: number;
  project: string;
  name: string;
  enabled: number;
  nixExprInput: string;
  nixExprPath: string;
  /** Absolute path of the expression file: the nixExprInput path input joined with nixExprPath. */
  exprFile: string;
  inputs: EvalInput[];
}

/** The jobset row and its inputs, checked to be evaluable by hydra-ops (legacy jobset, supported input types). */
export async function loadJobsetDefinition(db: Db, project: string, jobset: string): Promise<JobsetDefinition> {
  const r = await db.query<{id: number; enabled: number; type: number; nixexprinput: string | null; nixexprpath: string | null}>(
    'SELECT id, enabled, type, nixexprinput, nixexprpath FROM jobsets WHERE project = $1 AND name = $2',
    [project, jobset],
  );
  const row = r.rows[0];
  if (!row) {
    const p = await db.query('SELECT 1 FROM projects WHERE name = $1', [project]);
    throw new JobsetError('not-found', p.rowCount ? `jobset '${project}/${jobset}' does not exist` : `project '${project}' does not exist`);
  }
  if (row.type !== 0 || !row.nixexprinput || !row.nixexprpath) {
    throw new JobsetError('usage', `jobset '${project}/${jobset}' is a flake jobset; hydra-ops evaluates legacy (Nix expression) jobsets only`);
  }
  const ins = await db.query<{name: string; type: string; altnr: number | null; value: string | null}>(
    `SELECT i.name, i.type, a.altnr, a.value FROM jobsetinputs i
       LEFT JOIN jobsetinputalts a ON a.project = i.project AND a.jobset = i.jobset AND a.input = i.name
     WHERE i.project = $1 AND i.jobset = $2 ORDER BY i.name, a.altnr`,
    [project, jobset],
  );
  const inputs: EvalInput[] = [];
  for (const i of ins.rows) {
    if (inputs.some((x) => x.name === i.name)) {
      throw new JobsetError('usage', `input '${i.name}' of ${project}/${jobset} has several alternatives; only one is supported`);
    }
    if (i.type !== 'string' && i.type !== 'boolean' && i.type !== 'path') {
      throw new JobsetError('usage', `input '${i.name}' of ${project}/${jobset} has type '${i.type}'; hydra-ops evaluates string, boolean and path inputs only`);
    }
    if (i.value === null) throw new JobsetError('usage', `input '${i.name}' of ${project}/${jobset} has no value`);
    inputs.push({name: i.name, type: i.type, value: i.value});
  }
  const exprIn = inputs.find((i) => i.name === row.nixexprinput);
  if (!exprIn || exprIn.type !== 'path') {
    throw new JobsetError('usage', `jobset '${project}/${jobset}': its expression input '${row.nixexprinput}' is missing or not a path input`);
  }
  return {
    id: row.id,
    project,
    name: jobset,
    enabled: row.enabled,
    nixExprInput: row.nixexprinput,
    nixExprPath: row.nixexprpath,
    exprFile: resolve(exprIn.value, row.nixexprpath),
    inputs,
  };
}

/** Runs fn in a transaction on a dedicated client (a pool is checked out from; a client must be idle). */
export async function inTransaction<T>(db: Db, fn: (c: pg.ClientBase) => Promise<T>): Promise<T> {
  // Already inside an action frame's transaction (actions/perform.ts): run there, it commits with the audit row.
  if (inFrame(db)) return fn(db as pg.ClientBase);
  return isPool(db) ? withTransaction(db, fn) : transactionOn(db as pg.ClientBase, fn);
}

function isPool(db: Db): db is pg.Pool {
  return typeof (db as pg.Pool).totalCount === 'number';
}
