// Hydra's permission model (Hydra's src/lib/Hydra/Helper/CatalystUtils.pm; docs/hydra-compat.md, "Operator actions and roles"), evaluated for the acting user before every mutation.
//
//   restart  admin ∨ role restart-jobs  ∨ owner/member of every affected project
//   cancel   admin ∨ role cancel-build  ∨ owner/member of every affected project
//   bump     admin ∨ role bump-to-front ∨ owner/member of every affected project
//   admin    admin only (clear-failed-cache, clear-queue-non-current, unlock, machine drain/enable)
//   create-project  admin ∨ role create-projects (Hydra's Project.pm `create`: requireRole "create-projects")
//   project-owner   admin ∨ owner/member of the project (jobset create / --replace, enqueue; Hydra's
//                   requireProjectOwner for jobset edits)
//   eval     admin ∨ role eval-jobset ∨ owner/member (Hydra's requireEvalJobsetPrivileges)
//   create-first-project  create-project ∨ the database has no Hydra user at all: `hydra-ops demo` on a fresh
//                   database, where the acting user becomes the first user (a minimal Users row owning the project,
//                   no role). There is nobody yet whose rights it could take; once Users has a row, it is
//                   create-project.
//
// A project owner is Projects.owner or a ProjectMembers row. Bulk actions are checked per project:
// one project the user may not act on refuses the whole action, naming it.
//
// Decisions for hydra-ops:
// - A user that does not exist in Users is read-only: every mutation is refused (permission denied),
//   with a message explaining how to name the right user or declare a trusted local admin.
// - localAdmin = true (setting or --local-admin) is an explicit, local trust decision: the operator is
//   treated as a Hydra admin whether or not the user exists in Users. It is never implied.
// - Read-only mode refuses every mutation before anything else is looked at.
import type {Queryable} from '../db/queryable.js';
import {ActionError} from './errors.js';
import type {Actor} from './actor.js';

export type Privilege = 'restart' | 'cancel' | 'bump' | 'admin' | 'create-project' | 'create-first-project' | 'project-owner' | 'eval';

/** The UserRoles role that grants each privilege besides admin (null: only ownership does). */
export const PRIVILEGE_ROLES: Readonly<Record<Exclude<Privilege, 'admin'>, string | null>> = {
  restart: 'restart-jobs',
  cancel: 'cancel-build',
  bump: 'bump-to-front',
  'create-project': 'create-projects',
  'create-first-project': 'create-projects',
  'project-owner': null,
  eval: 'eval-jobset',
};

const VERB: Readonly<Record<Exclude<Privilege, 'admin' | 'create-project' | 'create-first-project'>, string>> = {
  restart: 'restart builds of',
  cancel: 'cancel builds of',
  bump: 'bump builds of',
  'project-owner': 'change the jobsets or queue of',
  eval: 'evaluate jobsets of',
};

export interface Authority {
  user: string;
  /** The user has a Users row. */
  exists: boolean;
  roles: string[];
  /** Hydra admin role, or the explicit local-admin setting. */
  admin: boolean;
  localAdmin: boolean;
}

export async function loadAuthority(db: Queryable, actor: Actor): Promise<Authority> {
  const {rows} = await db.query<{username: string; roles: string[] | null}>(
    `SELECT u.username, array_remove(array_agg(r.role ORDER BY r.role), NULL) AS roles
       FROM Users u LEFT JOIN UserRoles r ON r.username = u.username
      WHERE u.username = $1 GROUP BY u.username`,
    [actor.hydraUser],
  );
  const exists = rows.length === 1;
  const roles = exists ? (rows[0]!.roles ?? []) : [];
  return {user: actor.hydraUser, exists, roles, admin: actor.localAdmin || roles.includes('admin'), localAdmin: actor.localAdmin};
}

/** Projects among `projects` the user owns or is a member of. */
export async function ownedProjects(db: Queryable, user: string, projects: readonly string[]): Promise<Set<string>> {
  if (projects.length === 0) return new Set();
  const {rows} = await db.query<{name: string}>(
    `SELECT p.name FROM Projects p
      WHERE p.name = ANY($1::text[])
        AND (p.owner = $2 OR EXISTS (SELECT 1 FROM ProjectMembers m WHERE m.project = p.name AND m.username = $2))`,
    [[...projects], user],
  );
  return new Set(rows.map((r) => r.name));
}

/** Whether the database has any Hydra user (a fresh one has none). */
async function anyHydraUser(db: Queryable): Promise<boolean> {
  const {rows} = await db.query<{any: boolean}>('SELECT EXISTS (SELECT 1 FROM Users) AS any');
  return rows[0]!.any;
}

export function readonlyError(actor: Actor): ActionError {
  const from = actor.readonlySource ? ` (from ${actor.readonlySource})` : '';
  return new ActionError('readonly', `read-only mode${from}: mutations are disabled`, {reason: 'readonly'});
}

export function unknownUserMessage(actor: Actor): string {
  return (
    `Hydra user "${actor.hydraUser}" (from ${actor.hydraUserSource}) does not exist in the database, so hydra-ops is ` +
    'read-only for it. Name an existing Hydra user with --user NAME, HYDRA_OPS_USER=NAME or ' +
    '`hydra-ops config set hydraUser NAME`, or declare this operator a trusted local admin with ' +
    '`hydra-ops config set localAdmin true` (or --local-admin)'
  );
}

/**
 * Throws ActionError('readonly' | 'permission') unless the actor may exercise `privilege` on every
 * project in `projects`. Returns the authority that allowed it.
 */
export async function requirePrivilege(db: Queryable, actor: Actor, privilege: Privilege, projects: readonly string[]): Promise<Authority> {
  if (actor.readonly) throw readonlyError(actor);
  const auth = await loadAuthority(db, actor);
  if (auth.admin) return auth;
  if (privilege === 'create-first-project' && !auth.exists && !(await anyHydraUser(db))) return auth;
  if (!auth.exists) throw new ActionError('permission', unknownUserMessage(actor), {reason: 'unknown-user', user: actor.hydraUser});
  if (privilege === 'admin') {
    throw new ActionError('permission', `Hydra user "${auth.user}" is not an admin (role "admin" required)`, {
      reason: 'not-admin',
      user: auth.user,
      required: 'admin',
    });
  }
  const role = PRIVILEGE_ROLES[privilege];
  if (role !== null && auth.roles.includes(role)) return auth;
  if (privilege === 'create-project' || privilege === 'create-first-project') {
    throw new ActionError('permission', `Hydra user "${auth.user}" may not create projects (needs role "admin" or "create-projects")`, {
      reason: 'missing-privilege',
      user: auth.user,
      required: role,
    });
  }
  const owned = await ownedProjects(db, auth.user, projects);
  const denied = projects.filter((p) => !owned.has(p));
  if (denied.length === 0) return auth;
  throw new ActionError(
    'permission',
    `Hydra user "${auth.user}" may not ${VERB[privilege]} project${denied.length > 1 ? 's' : ''} ${denied.map((p) => `"${p}"`).join(', ')} ` +
      `(needs role "admin"${role ? ` or "${role}"` : ''}, or to own or be a member of the project)`,
    {reason: 'missing-privilege', user: auth.user, required: role ?? 'project-owner', deniedProjects: denied},
  );
}
