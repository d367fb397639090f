// Admin-only actions (docs/hydra-compat.md, "Operator actions and roles"; Hydra's Controller/Admin.pm).
//   clear-failed-cache       DELETE FROM FailedPaths (all rows; no NOTIFY)
//   clear-queue-non-current  cancelBuilds on every queued build that is not a member of its jobset's latest
//                            eval with new builds (Hydra's exact query; it does not use Builds.isCurrent)
import type pg from 'pg';
import type {Actor} from './actor.js';
import {performAction, type ActionOptions, type ActionResult} from './perform.js';
import {cancelPlan, type CancelResult} from './cancel.js';
import {projectsOf} from './selection.js';

export type ClearFailedCacheResult = ActionResult & {
  /** FailedPaths rows deleted. */
  deleted: number;
};

export function clearFailedCache(pool: pg.Pool, actor: Actor, opts: ActionOptions = {}): Promise<ClearFailedCacheResult> {
  return performAction(
    pool,
    actor,
    {
      action: 'clear-failed-cache',
      privilege: 'admin',
      scope: 'all FailedPaths',
      select: async () => ({targets: [], projects: []}),
      async apply(client) {
        const res = await client.query('DELETE FROM FailedPaths');
        return {changed: [], resultCount: res.rowCount ?? 0, deleted: res.rowCount ?? 0};
      },
    },
    opts,
  );
}

export const NON_CURRENT_QUEUED_SQL = `SELECT id FROM Builds WHERE id IN (
    (SELECT id FROM Builds WHERE finished = 0)
    EXCEPT
    (SELECT build FROM JobsetEvalMembers WHERE eval IN (SELECT max(id) FROM JobsetEvals WHERE hasNewBuilds = 1 GROUP BY jobset_id))
  ) ORDER BY id`;

export function clearQueueNonCurrent(pool: pg.Pool, actor: Actor, opts: ActionOptions = {}): Promise<CancelResult> {
  return performAction(
    pool,
    actor,
    cancelPlan(
      'clear-queue-non-current',
      'queued builds not in their jobset\'s latest evaluation',
      async (c) => {
        const {rows} = await c.query<{id: number}>(NON_CURRENT_QUEUED_SQL);
        const targets = rows.map((r) => r.id);
        return {targets, projects: await projectsOf(c, targets)};
      },
      'admin',
    ),
    opts,
  );
}
