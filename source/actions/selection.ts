// Resolving what an operator named — build ids, a --filter expression, an evaluation — into the exact
// set of build ids an action works on, plus the projects they belong to (for the permission check).
import type {Queryable} from '../db/queryable.js';
import {compileFilter, formatFilterError, parseFilter, FilterError, FILTER_FROM, type FilterAst} from '../db/filter.js';
import {checkRegexes} from '../db/queries/sql.js';
import {ActionError} from './errors.js';

export type BuildSelection =
  /** Explicit build ids; every one must exist. */
  | {kind: 'ids'; ids: readonly number[]; scope?: string}
  /** Every build the filter matches (README.md, "Filter expressions"). */
  | {kind: 'filter'; filter: string}
  /** The members of one evaluation (JobsetEvalMembers). */
  | {kind: 'eval'; eval: number};

export interface SelectedBuilds {
  /** Build ids, ascending. */
  targets: number[];
  /** Distinct projects of the targets, sorted. */
  projects: string[];
}

/** One line naming the selection, for confirmations and the audit log. */
export function describeSelection(sel: BuildSelection): string {
  switch (sel.kind) {
    case 'ids':
      if (sel.scope) return sel.scope;
      return sel.ids.length === 1 ? `build ${sel.ids[0]}` : `builds ${sel.ids.join(', ')}`;
    case 'filter':
      return `filter ${sel.filter}`;
    case 'eval':
      return `eval ${sel.eval}`;
  }
}

/** True when acting on this selection counts as a bulk action (needs --yes or a confirmation). */
export function isBulkSelection(sel: BuildSelection): boolean {
  return sel.kind !== 'ids' || sel.ids.length > 1;
}

/** Parses a filter, turning syntax errors into usage errors with a caret under the offending term. */
export function parseFilterOrThrow(filter: string): FilterAst {
  try {
    return parseFilter(filter);
  } catch (e) {
    if (e instanceof FilterError) throw new ActionError('usage', formatFilterError(filter, e), {position: e.position, token: e.token});
    throw e;
  }
}

export async function projectsOf(db: Queryable, ids: readonly number[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const {rows} = await db.query<{project: string}>(
    `SELECT DISTINCT j.project FROM Builds b JOIN Jobsets j ON j.id = b.jobset_id WHERE b.id = ANY($1::int[]) ORDER BY j.project`,
    [[...ids]],
  );
  return rows.map((r) => r.project);
}

export async function requireEval(db: Queryable, evalId: number): Promise<void> {
  const {rows} = await db.query('SELECT 1 FROM JobsetEvals WHERE id = $1', [evalId]);
  if (rows.length === 0) throw new ActionError('not-found', `no evaluation ${evalId}`, {eval: evalId});
}

/**
 * The builds a selection names, optionally narrowed by `extra` (a condition over alias `b`, e.g.
 * `b.finished = 1 AND b.buildstatus != 0`). Explicit ids that do not exist, and an eval that does not
 * exist, are not-found errors; a filter matching nothing is an empty set.
 */
export async function selectBuilds(db: Queryable, sel: BuildSelection, extra?: string): Promise<SelectedBuilds> {
  const and = extra ? ` AND (${extra})` : '';
  let targets: number[];
  switch (sel.kind) {
    case 'ids': {
      for (const id of sel.ids) {
        if (!Number.isSafeInteger(id) || id <= 0) throw new ActionError('usage', `bad build id ${JSON.stringify(id)}`);
      }
      const ids = [...new Set(sel.ids)].sort((a, b) => a - b);
      const {rows} = await db.query<{id: number}>('SELECT b.id FROM Builds b WHERE b.id = ANY($1::int[]) ORDER BY b.id', [ids]);
      const found = new Set(rows.map((r) => r.id));
      const missing = ids.filter((id) => !found.has(id));
      if (missing.length > 0) {
        throw new ActionError('not-found', `no build${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`, {missing});
      }
      if (!extra) {
        targets = ids;
        break;
      }
      const narrowed = await db.query<{id: number}>(`SELECT b.id FROM Builds b WHERE b.id = ANY($1::int[])${and} ORDER BY b.id`, [ids]);
      targets = narrowed.rows.map((r) => r.id);
      break;
    }
    case 'filter': {
      const ast = parseFilterOrThrow(sel.filter);
      let compiled;
      try {
        await checkRegexes(db, ast);
        compiled = compileFilter(ast, 'builds');
      } catch (e) {
        if (e instanceof FilterError) throw new ActionError('usage', formatFilterError(sel.filter, e), {position: e.position, token: e.token});
        throw e;
      }
      const where = compiled.where ? `WHERE (${compiled.where})${and}` : extra ? `WHERE ${extra}` : '';
      const {rows} = await db.query<{id: number}>(`SELECT b.id FROM ${FILTER_FROM.builds} ${where} ORDER BY b.id`, compiled.params);
      targets = rows.map((r) => r.id);
      break;
    }
    case 'eval': {
      await requireEval(db, sel.eval);
      const {rows} = await db.query<{id: number}>(
        `SELECT b.id FROM Builds b JOIN JobsetEvalMembers m ON m.build = b.id WHERE m.eval = $1${and} ORDER BY b.id`,
        [sel.eval],
      );
      targets = rows.map((r) => r.id);
      break;
    }
  }
  return {targets, projects: await projectsOf(db, targets)};
}
