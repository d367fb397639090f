// Cancel queued builds exactly as Hydra's web app does (`cancelBuilds`; docs/hydra-compat.md, "Operator actions and roles"): in one
// statement `finished = 1, isCachedBuild = 0, buildStatus = 4, startTime = stopTime = now` on the
// unfinished ones. The BuildCancelled trigger sends `builds_cancelled`; the runner then stops the
// steps no remaining build needs. notificationPendingSince is not set (hydra-notify never hears of it).
import type pg from 'pg';
import type {Queryable} from '../db/queryable.js';
import type {Actor} from './actor.js';
import {performAction, type ActionOptions, type ActionResult} from './perform.js';
import {describeSelection, selectBuilds, type BuildSelection} from './selection.js';

export type CancelResult = ActionResult & {
  /** The Unix time written to startTime and stopTime. */
  time: number;
};

export async function cancelBuildsSql(db: Queryable, ids: readonly number[], now = Math.floor(Date.now() / 1000)): Promise<{changed: number[]; time: number}> {
  if (ids.length === 0) return {changed: [], time: now};
  const {rows} = await db.query<{id: number}>(
    `UPDATE Builds SET finished = 1, isCachedBuild = 0, buildStatus = 4, startTime = $2, stopTime = $2
      WHERE id = ANY($1::int[]) AND finished = 0 RETURNING id`,
    [[...ids], now],
  );
  return {changed: rows.map((r) => r.id), time: now};
}

export function cancelPlan(action: string, scope: string, select: (c: pg.PoolClient) => ReturnType<typeof selectBuilds>, privilege: 'cancel' | 'admin' = 'cancel') {
  return {
    action,
    privilege,
    scope,
    select,
    apply: (client: pg.PoolClient, targets: number[]) => cancelBuildsSql(client, targets),
  };
}

/** `cancel` of the given builds; finished targets are reported as unchanged. */
export function cancelBuilds(pool: pg.Pool, actor: Actor, selection: BuildSelection, opts: ActionOptions = {}): Promise<CancelResult> {
  return performAction(pool, actor, cancelPlan('cancel', describeSelection(selection), (c) => selectBuilds(c, selection)), opts);
}
