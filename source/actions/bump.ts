// Bump builds to the front of the queue (docs/hydra-compat.md, "Operator actions and roles"): `globalPriority = now`. Hydra's
// single-build bump has no `finished` guard and hydra-ops keeps that for explicit ids; a --filter or
// eval-wide bump only touches unfinished builds (as Hydra's eval bump does). `toFront` goes above
// every existing bump: max(now, max(globalPriority of queued builds) + 1). The BuildBumped trigger
// sends `builds_bumped` for every row whose value changed.
import type pg from 'pg';
import type {Queryable} from '../db/queryable.js';
import type {Actor} from './actor.js';
import {performAction, type ActionOptions, type ActionResult} from './perform.js';
import {describeSelection, selectBuilds, type BuildSelection} from './selection.js';

export interface BumpOptions extends ActionOptions {
  /** Above every existing bump instead of Hydra's plain "now". */
  toFront?: boolean;
}

export type BumpResult = ActionResult & {
  /** The globalPriority written. */
  globalPriority: number;
};

export async function bumpValue(db: Queryable, toFront: boolean, now = Math.floor(Date.now() / 1000)): Promise<number> {
  if (!toFront) return now;
  const {rows} = await db.query<{m: number | null}>('SELECT max(globalPriority)::int AS m FROM Builds WHERE finished = 0');
  return Math.max(now, (rows[0]!.m ?? 0) + 1);
}

export async function bumpBuildsSql(db: Queryable, ids: readonly number[], value: number, onlyUnfinished: boolean): Promise<number[]> {
  if (ids.length === 0) return [];
  const {rows} = await db.query<{id: number}>(
    `UPDATE Builds SET globalPriority = $2 WHERE id = ANY($1::int[])${onlyUnfinished ? ' AND finished = 0' : ''}
        AND globalPriority IS DISTINCT FROM $2 RETURNING id`,
    [[...ids], value],
  );
  return rows.map((r) => r.id);
}

export function bumpBuilds(pool: pg.Pool, actor: Actor, selection: BuildSelection, opts: BumpOptions = {}): Promise<BumpResult> {
  const explicit = selection.kind === 'ids';
  return performAction(
    pool,
    actor,
    {
      action: opts.toFront ? 'bump-to-front' : 'bump',
      privilege: 'bump',
      scope: describeSelection(selection),
      select: (c) => selectBuilds(c, selection, explicit ? undefined : 'b.finished = 0'),
      async apply(client, targets) {
        const value = await bumpValue(client, opts.toFront === true);
        return {changed: await bumpBuildsSql(client, targets, value, !explicit), globalPriority: value};
      },
    },
    opts,
  );
}
