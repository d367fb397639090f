// Restart finished builds exactly as Hydra's web app does (`restartBuilds`; docs/hydra-compat.md, "Operator actions and roles"):
// in one transaction reset the evals' nrSucceeded cache, drop the FailedPaths entries of the builds'
// outputs and of their steps' outputs, then `finished = 0, isCachedBuild = 0` on the finished ones.
// buildStatus, times, old steps, products and metrics stay until the build finishes again. The
// BuildRestarted trigger sends `builds_restarted`. Before that, each restarted build's .drv that is
// still valid in the local store gets a GC root (so the runner can load it).
import type pg from 'pg';
import type {Queryable} from '../db/queryable.js';
import {addGcRoot, queryValidPaths} from '../nix/store.js';
import type {Actor} from './actor.js';
import {performAction, type ActionOptions, type ActionResult} from './perform.js';
import {describeSelection, selectBuilds, type BuildSelection} from './selection.js';

export interface RestartExtra {
  /** FailedPaths rows deleted. */
  failedPathsDeleted: number;
  /** JobsetEvals whose nrSucceeded was reset to NULL. */
  evalsReset: number[];
  /** GC roots registered for the restarted builds' .drv files (not in dry runs). */
  gcRoots: string[];
}

export type RestartResult = ActionResult & RestartExtra;

export interface RestartOptions extends ActionOptions {
  /** gc_roots_dir; when given, valid .drv files of restarted builds are rooted there. */
  gcRootsDir?: string;
}

/** Hydra's restartBuilds statements on `ids` (already restricted by the caller as Hydra does). */
export async function restartBuildsSql(db: Queryable, ids: readonly number[]): Promise<{changed: number[]} & Omit<RestartExtra, 'gcRoots'>> {
  if (ids.length === 0) return {changed: [], failedPathsDeleted: 0, evalsReset: []};
  const sel = [[...ids]];
  const finished = await db.query<{id: number}>('SELECT id FROM Builds WHERE id = ANY($1::int[]) AND finished = 1', sel);
  const restartable = finished.rows.map((r) => r.id);
  if (restartable.length === 0) return {changed: [], failedPathsDeleted: 0, evalsReset: []};
  const r = [restartable];
  const evals = await db.query<{id: number}>(
    `UPDATE JobsetEvals SET nrSucceeded = NULL
      WHERE id IN (SELECT DISTINCT eval FROM JobsetEvalMembers WHERE build = ANY($1::int[])) RETURNING id`,
    r,
  );
  const fp1 = await db.query(
    'DELETE FROM FailedPaths WHERE path IN (SELECT DISTINCT path FROM BuildOutputs WHERE build = ANY($1::int[]))',
    r,
  );
  const fp2 = await db.query(
    'DELETE FROM FailedPaths WHERE path IN (SELECT DISTINCT path FROM BuildStepOutputs WHERE build = ANY($1::int[]))',
    r,
  );
  const upd = await db.query<{id: number}>(
    'UPDATE Builds SET finished = 0, isCachedBuild = 0 WHERE id = ANY($1::int[]) AND finished = 1 RETURNING id',
    r,
  );
  return {
    changed: upd.rows.map((x) => x.id),
    failedPathsDeleted: (fp1.rowCount ?? 0) + (fp2.rowCount ?? 0),
    evalsReset: evals.rows.map((x) => x.id).sort((a, b) => a - b),
  };
}

async function rootDrvs(db: Queryable, ids: readonly number[], gcRootsDir: string): Promise<string[]> {
  if (ids.length === 0) return [];
  const {rows} = await db.query<{drvpath: string}>('SELECT DISTINCT drvpath FROM Builds WHERE id = ANY($1::int[])', [[...ids]]);
  let valid: Set<string>;
  try {
    valid = await queryValidPaths(rows.map((r) => r.drvpath));
  } catch {
    return [];
  }
  const roots: string[] = [];
  for (const drv of valid) roots.push(await addGcRoot(gcRootsDir, drv));
  return roots;
}

/** Shared by restart and the eval-level restarts: selection narrowed by `extra`, then restartBuilds. */
export function restartPlan(action: string, scope: string, select: (c: pg.PoolClient) => ReturnType<typeof selectBuilds>, opts: RestartOptions) {
  return {
    action,
    privilege: 'restart' as const,
    scope,
    select,
    async apply(client: pg.PoolClient, targets: number[]) {
      const res = await restartBuildsSql(client, targets);
      const gcRoots = !opts.dryRun && opts.gcRootsDir ? await rootDrvs(client, res.changed, opts.gcRootsDir) : [];
      return {...res, gcRoots};
    },
  };
}

/** `restart` of the given builds; targets that are not finished are reported as unchanged. */
export function restartBuilds(pool: pg.Pool, actor: Actor, selection: BuildSelection, opts: RestartOptions = {}): Promise<RestartResult> {
  return performAction(pool, actor, restartPlan('restart', describeSelection(selection), (c) => selectBuilds(c, selection), opts), opts);
}
