// The frame every mutating action runs in: read-only check (read-only mode writes nothing, not even an audit row), one transaction (select targets → check
// the Hydra permission → apply Hydra's statements), an audit row for every attempt, and dry runs that
// execute the real statements and roll them back, so they report exactly the rows they would touch
// while no trigger fires (NOTIFY is delivered only at COMMIT).
import type pg from 'pg';
import {ActionError} from './errors.js';
import type {Actor} from './actor.js';
import {requirePrivilege, readonlyError, type Privilege} from './permissions.js';
import {tryWriteAudit, writeAudit} from './audit.js';
import {enterFrame, leaveFrame} from '../db/transaction.js';

export interface ActionOptions {
  /** Run the statements, report what they changed, roll back. */
  dryRun?: boolean;
}

/** Fields every action result has. */
export interface ActionResult {
  action: string;
  /** The selection as the operator gave it (`builds 1, 2`, `filter status:failed`, `eval 7`, `all`). */
  scope: string;
  dryRun: boolean;
  /** Build ids selected (empty for actions that are not about builds). */
  targets: number[];
  /** Targets the statements changed (or would change, in a dry run). */
  changed: number[];
  /** Targets left as they were (already in the wanted state). */
  unchanged: number[];
  /** hydra_ops.audit_log id of this attempt (null if it could not be written). */
  auditId: number | null;
}

export interface Selected {
  targets: number[];
  projects: string[];
}

export interface Applied {
  changed: number[];
  /** Rows the action changed, for the audit log (default: changed.length). */
  resultCount?: number;
}

export interface ActionPlan<E extends object> {
  action: string;
  privilege: Privilege;
  scope: string;
  /** Inside the transaction, before the permission check. */
  select(client: pg.PoolClient): Promise<Selected>;
  /** Inside the transaction, after the permission check. */
  apply(client: pg.PoolClient, targets: number[]): Promise<Applied & E>;
}

const UNDEFINED_TABLE = '42P01';
const INSUFFICIENT_PRIVILEGE = '42501';

function dbErrorToAction(e: unknown): unknown {
  const code = (e as {code?: string}).code;
  const msg = e instanceof Error ? e.message : String(e);
  if (code === UNDEFINED_TABLE && /hydra_ops|audit_log|machine_state/.test(msg)) {
    return new ActionError('refused', `hydra-ops' own tables are missing (${msg}); run \`hydra-ops db init\` first`);
  }
  if (code === INSUFFICIENT_PRIVILEGE) {
    return new ActionError('permission', `the database role may not do this: ${msg}`, {reason: 'database-privilege'});
  }
  return e;
}

export async function performAction<E extends object>(
  pool: pg.Pool,
  actor: Actor,
  plan: ActionPlan<E>,
  opts: ActionOptions = {},
): Promise<ActionResult & Omit<E, keyof Applied>> {
  const started = Date.now();
  const dryRun = opts.dryRun === true;
  const audit = (outcome: 'refused' | 'failed', message: string, targets?: number[]) =>
    tryWriteAudit(pool, actor, {
      action: plan.action,
      scope: plan.scope,
      targetIds: targets,
      outcome,
      message,
      durationMs: Date.now() - started,
    });

  // Read-only mode writes nothing, not even an audit row.
  if (actor.readonly) throw readonlyError(actor);
  const client = await pool.connect();
  let targets: number[] | undefined;
  let open = false;
  try {
    await client.query('BEGIN');
    open = true;
    const selected = await plan.select(client);
    targets = selected.targets;
    await requirePrivilege(client, actor, plan.privilege, selected.projects);
    const applied = await plan.apply(client, selected.targets);
    const changedSet = new Set(applied.changed);
    const {changed, resultCount, ...extra} = applied;
    const base = {
      action: plan.action,
      scope: plan.scope,
      dryRun,
      targets: selected.targets,
      changed: [...changed].sort((a, b) => a - b),
      unchanged: selected.targets.filter((id) => !changedSet.has(id)),
    };
    const entry = {
      action: plan.action,
      scope: plan.scope,
      targetIds: selected.targets,
      resultCount: resultCount ?? changed.length,
      durationMs: Date.now() - started,
    };
    let auditId: number | null;
    if (dryRun) {
      await client.query('ROLLBACK');
      open = false;
      auditId = await writeAudit(pool, actor, {...entry, outcome: 'dry-run'});
    } else {
      auditId = await writeAudit(client, actor, {...entry, outcome: 'ok'});
      await client.query('COMMIT');
      open = false;
    }
    return {...base, ...(extra as Omit<E, keyof Applied>), auditId};
  } catch (e) {
    if (open) await client.query('ROLLBACK').catch(() => {});
    open = false;
    const err = dbErrorToAction(e);
    const refused = err instanceof ActionError;
    await audit(refused ? 'refused' : 'failed', err instanceof Error ? err.message : String(err), targets);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * The frame for actions that are not about a selection of builds (project create, jobset create, enqueue):
 * read-only refusal, one transaction (permission check on `projects` → `run` → the audit row), refusals and
 * failures audited like performAction's (outcome 'refused' / 'failed', written after the rollback).
 * Helpers calling jobsets.inTransaction on the frame's client run inside the frame's transaction.
 */
export interface GuardedPlan<T> {
  action: string;
  privilege: Privilege;
  scope: string;
  /** The projects the privilege is checked on. */
  projects: readonly string[];
  run(client: pg.PoolClient): Promise<T>;
  /** Build ids the action made or touched, and the rows it changed (for the audit row). */
  outcome?(result: T): {targetIds?: number[]; resultCount?: number};
}

export async function performGuarded<T>(pool: pg.Pool, actor: Actor, plan: GuardedPlan<T>): Promise<{result: T; auditId: number}> {
  const started = Date.now();
  const refuse = async (outcome: 'refused' | 'failed', message: string) =>
    tryWriteAudit(pool, actor, {action: plan.action, scope: plan.scope, outcome, message, durationMs: Date.now() - started});
  if (actor.readonly) throw readonlyError(actor);
  const client = await pool.connect();
  let open = false;
  try {
    await client.query('BEGIN');
    open = true;
    await requirePrivilege(client, actor, plan.privilege, plan.projects);
    enterFrame(client);
    const result = await plan.run(client);
    leaveFrame(client);
    const o = plan.outcome?.(result) ?? {};
    const auditId = await writeAudit(client, actor, {
      action: plan.action,
      scope: plan.scope,
      targetIds: o.targetIds,
      resultCount: o.resultCount ?? null,
      outcome: 'ok',
      durationMs: Date.now() - started,
    });
    await client.query('COMMIT');
    open = false;
    return {result, auditId};
  } catch (e) {
    leaveFrame(client);
    if (open) await client.query('ROLLBACK').catch(() => {});
    const err = dbErrorToAction(e);
    const refused = err instanceof ActionError || (err instanceof Error && err.name === 'JobsetError');
    await refuse(refused ? 'refused' : 'failed', err instanceof Error ? err.message : String(err));
    throw err;
  } finally {
    client.release();
  }
}

/**
 * For an action whose work runs outside one transaction (eval: Nix runs for minutes before anything is written):
 * the read-only and permission checks, a refusal audited as in performAction. The caller writes the 'ok' audit
 * row inside its own recording transaction (auditOk).
 */
export async function authorizeAction(pool: pg.Pool, actor: Actor, plan: {action: string; privilege: Privilege; scope: string; projects: readonly string[]}): Promise<void> {
  const started = Date.now();
  if (actor.readonly) throw readonlyError(actor);
  try {
    await requirePrivilege(pool, actor, plan.privilege, plan.projects);
  } catch (e) {
    const err = dbErrorToAction(e);
    await tryWriteAudit(pool, actor, {action: plan.action, scope: plan.scope, outcome: 'refused', message: err instanceof Error ? err.message : String(err), durationMs: Date.now() - started});
    throw err;
  }
}
