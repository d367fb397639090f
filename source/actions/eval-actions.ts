// Evaluation-wide actions (Hydra's Controller/JobsetEval.pm; docs/hydra-compat.md, "Operator actions and roles"). The eval's builds are its JobsetEvalMembers.
//   restart-failed   restart privilege; restartBuilds on members with finished = 1 AND buildStatus NOT IN (0)
//   restart-aborted  restart privilege; the same with buildStatus IN (3, 4, 9)
//   cancel-eval      cancel privilege;  cancelBuilds on the members (only finished = 0 ones change,
//                    so only those are selected)
// An eval that does not exist is a not-found error.
import type pg from 'pg';
import type {Actor} from './actor.js';
import {performAction, type ActionOptions} from './perform.js';
import {selectBuilds} from './selection.js';
import {restartPlan, type RestartOptions, type RestartResult} from './restart.js';
import {cancelPlan, type CancelResult} from './cancel.js';

export function restartFailed(pool: pg.Pool, actor: Actor, evalId: number, opts: RestartOptions = {}): Promise<RestartResult> {
  return restartEvalBuilds(pool, actor, 'restart-failed', evalId, 'b.finished = 1 AND b.buildstatus NOT IN (0)', opts);
}

export function restartAborted(pool: pg.Pool, actor: Actor, evalId: number, opts: RestartOptions = {}): Promise<RestartResult> {
  return restartEvalBuilds(pool, actor, 'restart-aborted', evalId, 'b.finished = 1 AND b.buildstatus IN (3, 4, 9)', opts);
}

/** Restarts the builds of evaluation `evalId` that meet `condition` (SQL over Builds `b`). */
function restartEvalBuilds(
  pool: pg.Pool,
  actor: Actor,
  action: 'restart-failed' | 'restart-aborted',
  evalId: number,
  condition: string,
  opts: RestartOptions,
): Promise<RestartResult> {
  const sel = {kind: 'eval', eval: evalId} as const;
  return performAction(pool, actor, restartPlan(action, `eval ${evalId}`, (c) => selectBuilds(c, sel, condition), opts), opts);
}

export function cancelEval(pool: pg.Pool, actor: Actor, evalId: number, opts: ActionOptions = {}): Promise<CancelResult> {
  const sel = {kind: 'eval', eval: evalId} as const;
  return performAction(pool, actor, cancelPlan('cancel-eval', `eval ${evalId}`, (c) => selectBuilds(c, sel, 'b.finished = 0')), opts);
}
