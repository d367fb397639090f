// FailedPaths: output paths of derivations that failed permanently (the cached-failure set).
import type {Queryable} from '../queryable.js';

export async function isFailedPath(db: Queryable, path: string): Promise<boolean> {
  const {rows} = await db.query('SELECT 1 FROM FailedPaths WHERE path = $1', [path]);
  return rows.length > 0;
}

/** The given paths that are in FailedPaths, in the order given (duplicates collapsed). */
export async function failedPathsAmong(db: Queryable, paths: readonly string[]): Promise<string[]> {
  if (paths.length === 0) return [];
  const {rows} = await db.query('SELECT path FROM FailedPaths WHERE path = ANY($1::text[])', [[...paths]]);
  const found = new Set(rows.map((r: {path: string}) => r.path));
  return [...new Set(paths)].filter((p) => found.has(p));
}

export async function countFailedPaths(db: Queryable): Promise<number> {
  const {rows} = await db.query('SELECT count(*)::int AS n FROM FailedPaths');
  return (rows[0] as {n: number}).n;
}
