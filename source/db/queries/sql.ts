// Shared plumbing for the typed queries: bind-parameter bookkeeping, filter compilation into a
// query, keyset cursors, and turning PostgreSQL's regex errors back into positioned FilterErrors.
import {compileFilter, filterRegexes, parseFilter, FilterError, type FilterAst, type FilterTarget} from '../filter.js';
import type {Queryable} from '../queryable.js';

/** A filter as typed by the user, already parsed, or absent. */
export type FilterInput = string | FilterAst | null | undefined;

/** A page of rows plus the cursor for the next page (null on the last page). */
export interface Page<T> {
  rows: T[];
  nextCursor: string | null;
}

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 10_000;

export function toAst(filter: FilterInput): FilterAst | null {
  if (filter === null || filter === undefined) return null;
  return typeof filter === 'string' ? parseFilter(filter) : filter;
}

export function checkLimit(limit: number | undefined): number {
  const n = limit ?? DEFAULT_LIMIT;
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIMIT) throw new RangeError(`limit must be an integer from 1 to ${MAX_LIMIT}, got ${limit}`);
  return n;
}

/** Collects WHERE conditions and their bind parameters. */
export class QueryBuilder {
  readonly params: unknown[] = [];
  private readonly conds: string[] = [];
  ast: FilterAst | null = null;

  param(value: unknown): string {
    this.params.push(value);
    return `$${this.params.length}`;
  }

  where(cond: string): this {
    this.conds.push(cond);
    return this;
  }

  filter(filter: FilterInput, target: FilterTarget, now?: number): this {
    const ast = toAst(filter);
    if (!ast) return this;
    this.ast = ast;
    const compiled = compileFilter(ast, target, {now, paramOffset: this.params.length});
    this.params.push(...compiled.params);
    if (compiled.where) this.conds.push(compiled.where);
    return this;
  }

  /** `WHERE a AND b` or ''. */
  whereClause(): string {
    return this.conds.length ? `WHERE ${this.conds.join(' AND ')}` : '';
  }
}

/**
 * One newest-first page of a table keyed by `id` (keyset paging): rows with id below `before`, matching the
 * conditions `where` adds to the builder, at most `limit` of them (default 50), and the `before` of the next page
 * (null on the last). `columns` must select `id` as a number.
 */
export async function newestFirstPage<R extends {id: number}>(
  db: Queryable,
  table: string,
  columns: string,
  o: {limit?: number; before?: number},
  where: (q: QueryBuilder) => void,
): Promise<{rows: R[]; nextBefore: number | null}> {
  const limit = o.limit ?? 50;
  const q = new QueryBuilder();
  if (o.before !== undefined) q.where(`id < ${q.param(o.before)}`);
  where(q);
  const {rows} = await db.query(`SELECT ${columns} FROM ${table} ${q.whereClause()} ORDER BY id DESC LIMIT ${q.param(limit + 1)}`, q.params);
  const page = rows.slice(0, limit) as R[];
  return {rows: page, nextBefore: rows.length > limit ? Number(page[page.length - 1]!.id) : null};
}

/** SQLSTATE invalid_regular_expression. */
const INVALID_REGEX = '2201B';

/**
 * Runs a query built from a filter. PostgreSQL's regex dialect rejects some patterns JavaScript
 * accepts (`a{1000}`, `\8`, `[a-\d]` …); when that happens the offending regex is found and
 * reported as a FilterError at its column instead of a bare database error.
 */
export async function runQuery<R extends object>(db: Queryable, q: QueryBuilder, sql: string): Promise<R[]> {
  // Checked up front: PostgreSQL compiles a regex only when a row reaches it, so a bad pattern behind
  // a selective condition would otherwise silently match nothing.
  if (q.ast) await checkRegexes(db, q.ast);
  try {
    const result = await db.query(sql, q.params);
    return result.rows as R[];
  } catch (e) {
    if ((e as {code?: string}).code === INVALID_REGEX && q.ast) throw await locateRegexError(db, q.ast, e as Error);
    throw e;
  }
}

/** Throws a positioned FilterError when PostgreSQL rejects one of the filter's regexes. */
export async function checkRegexes(db: Queryable, ast: FilterAst): Promise<void> {
  const regexes = filterRegexes(ast);
  if (regexes.length === 0) return;
  const tests = regexes.map((_, k) => `'' ~ $${k + 1}`).join(', ');
  try {
    await db.query(`SELECT ${tests}`, regexes.map((r) => r.regex.sql));
  } catch (e) {
    if ((e as {code?: string}).code === INVALID_REGEX) throw await locateRegexError(db, ast, e as Error);
    throw e;
  }
}

async function locateRegexError(db: Queryable, ast: FilterAst, original: Error): Promise<Error> {
  for (const r of filterRegexes(ast)) {
    try {
      await db.query(`SELECT '' ~ $1`, [r.regex.sql]);
    } catch (e) {
      const why = (e as Error).message.replace(/^invalid regular expression: /, '');
      return new FilterError(
        `regular expression "${r.regex.source}" is not valid in PostgreSQL at column ${r.position + 1}: ${why}`,
        r.position,
        r.length,
        r.regex.source,
      );
    }
  }
  return original;
}

/** Encodes a keyset position as `a:b:c`. */
export function encodeCursor(kind: string, parts: number[]): string {
  return `${kind}:${parts.join(':')}`;
}

/** Decodes a cursor made by encodeCursor; throws a clear error for anything else. */
export function decodeCursor(cursor: string, kind: string, count: number): number[] {
  const parts = cursor.split(':');
  const nums = parts.slice(1).map(Number);
  if (parts[0] !== kind || nums.length !== count || !nums.every((n) => Number.isSafeInteger(n))) {
    throw new RangeError(`bad cursor "${cursor}" (expected a "${kind}" cursor from the previous page)`);
  }
  return nums;
}

/** Splits one row too many off the end and returns the page. */
export function pageOf<T>(rows: T[], limit: number, cursorOf: (row: T) => string): Page<T> {
  if (rows.length <= limit) return {rows, nextCursor: null};
  const page = rows.slice(0, limit);
  return {rows: page, nextCursor: cursorOf(page[page.length - 1]!)};
}
