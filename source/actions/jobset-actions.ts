// Project create, jobset create (and --replace), eval and enqueue as operator actions: each checks Hydra's
// privilege for it and is audited like every other mutation (actions/perform.ts).
//
//   project create   admin ∨ role create-projects          (Hydra: Project.pm requires "create-projects")
//                    (the demo's project, on a database with no Hydra user yet: the acting user, as its first
//                    user; permissions.ts create-first-project)
//   jobset create    admin ∨ owner/member of the project    (--replace redefines what the project evaluates)
//   enqueue          admin ∨ owner/member of the project
//   eval             admin ∨ role eval-jobset ∨ owner/member (Hydra's requireEvalJobsetPrivileges)
import type pg from 'pg';
import type {Actor} from './actor.js';
import {authorizeAction, performGuarded} from './perform.js';
import {writeAudit, tryWriteAudit} from './audit.js';
import {createJobset, createProject, type CreateJobsetOptions, type CreateProjectOptions, type JobsetResult, type ProjectResult} from './jobsets.js';
import {enqueueDerivations, type EnqueuedBuild, type EnqueueOptions} from './enqueue.js';
import {evaluateJobset, type EvaluateOptions, type EvaluateResult} from './evaluate.js';

export async function createProjectAs(
  pool: pg.Pool,
  actor: Actor,
  o: CreateProjectOptions,
  privilege: 'create-project' | 'create-first-project' = 'create-project',
): Promise<ProjectResult & {auditId: number}> {
  const {result, auditId} = await performGuarded(pool, actor, {
    action: 'project-create',
    privilege,
    scope: `project ${o.name}`,
    projects: [o.name],
    run: (c) => createProject(c, o),
    outcome: () => ({resultCount: 1}),
  });
  return {...result, auditId};
}

export async function createJobsetAs(pool: pg.Pool, actor: Actor, o: CreateJobsetOptions): Promise<JobsetResult & {auditId: number}> {
  const {result, auditId} = await performGuarded(pool, actor, {
    action: o.replace ? 'jobset-create-replace' : 'jobset-create',
    privilege: 'project-owner',
    scope: `jobset ${o.project}/${o.name}`,
    projects: [o.project],
    run: (c) => createJobset(c, o),
    outcome: () => ({resultCount: 1}),
  });
  return {...result, auditId};
}

export async function enqueueAs(pool: pg.Pool, actor: Actor, o: EnqueueOptions): Promise<{builds: EnqueuedBuild[]; auditId: number}> {
  const {result, auditId} = await performGuarded(pool, actor, {
    action: 'enqueue',
    privilege: 'project-owner',
    scope: `jobset ${o.project}/${o.jobset}: ${o.drvPaths.length} derivation(s)`,
    projects: [o.project],
    run: (c) => enqueueDerivations(c, o),
    outcome: (r) => ({targetIds: r.map((b) => b.id), resultCount: r.filter((b) => b.isNew).length}),
  });
  return {builds: result, auditId};
}

/** Checks the privilege before Nix runs; the 'ok' audit row is written in the transaction recording the eval. */
export async function evaluateAs(pool: pg.Pool, actor: Actor, project: string, jobset: string, opts: EvaluateOptions = {}): Promise<EvaluateResult> {
  const started = Date.now();
  const plan = {action: 'eval', privilege: 'eval' as const, scope: `jobset ${project}/${jobset}`, projects: [project]};
  await authorizeAction(pool, actor, plan);
  try {
    return await evaluateJobset(pool, project, jobset, {
      ...opts,
      record: async (c, evalId) => {
        await writeAudit(c, actor, {action: plan.action, scope: `${plan.scope}: eval ${evalId}`, resultCount: 1, outcome: 'ok', durationMs: Date.now() - started});
      },
    });
  } catch (e) {
    await tryWriteAudit(pool, actor, {action: plan.action, scope: plan.scope, outcome: 'failed', message: e instanceof Error ? e.message : String(e), durationMs: Date.now() - started});
    throw e;
  }
}
