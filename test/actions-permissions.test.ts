// Hydra's permission model for operator actions (docs/hydra-compat.md, "Operator actions and roles") on a real database: each role
// allows exactly its action, project owners and members may do everything on their project's builds
// (and nothing elsewhere), admin-only actions need admin, an unknown user is read-only unless the
// explicit local-admin setting is on, and read-only mode refuses every mutation. Refusals change nothing.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {freshDatabase, type TestDatabase} from './support/pg.js';
import {insertBuild, insertJobset, insertProject, insertUser, type JobsetRow} from './support/fixtures.js';
import {initSchema} from '../source/db/schema.js';
import {makeActor, type Actor} from '../source/actions/actor.js';
import {restartBuilds} from '../source/actions/restart.js';
import {cancelBuilds} from '../source/actions/cancel.js';
import {bumpBuilds} from '../source/actions/bump.js';
import {clearFailedCache, clearQueueNonCurrent} from '../source/actions/admin.js';
import {setMachineDrained} from '../source/actions/machine-drain.js';
import {ActionError} from '../source/actions/errors.js';
import {parseMachinesText} from '../source/fleet/machines-file.js';

let tdb: TestDatabase;
let pool: pg.Pool;
let js: JobsetRow;
let otherJs: JobsetRow;

before(async () => {
  tdb = await freshDatabase('perms');
  pool = new pg.Pool({connectionString: tdb.url, max: 4});
  await initSchema(pool);
  await insertUser(pool, {userName: 'owner'});
  await insertUser(pool, {userName: 'member'});
  await insertUser(pool, {userName: 'plain'});
  await insertUser(pool, {userName: 'admin', roles: ['admin']});
  for (const role of ['restart-jobs', 'cancel-build', 'bump-to-front', 'eval-jobset', 'create-projects']) await insertUser(pool, {userName: role, roles: [role]});
  const project = await insertProject(pool, {name: 'owned', owner: 'owner'});
  await pool.query("INSERT INTO ProjectMembers (project, username) VALUES ('owned', 'member')");
  js = await insertJobset(pool, {project});
  otherJs = await insertJobset(pool, {project: await insertProject(pool, {name: 'foreign'})});
});

after(async () => {
  await pool?.end().catch(() => {});
  await tdb?.drop();
});

const actor = (user: string, extra: Partial<Actor> = {}): Actor => ({...makeActor({hydraUser: user, version: 'test'}), ...extra});

type Kind = 'restart' | 'cancel' | 'bump';

/** Runs one build action on a fresh build of `jobset`; returns 'ok' or the refusal kind, and checks refusals changed nothing. */
async function attempt(kind: Kind, who: Actor, jobset = js): Promise<string> {
  const id = await insertBuild(pool, {jobsetId: jobset.id, finished: kind === 'restart' ? 1 : 0, buildStatus: kind === 'restart' ? 1 : null});
  const before = JSON.stringify((await pool.query('SELECT * FROM Builds WHERE id = $1', [id])).rows);
  const sel = {kind: 'ids', ids: [id]} as const;
  try {
    const r = kind === 'restart' ? await restartBuilds(pool, who, sel) : kind === 'cancel' ? await cancelBuilds(pool, who, sel) : await bumpBuilds(pool, who, sel);
    assert.deepEqual(r.changed, [id]);
    return 'ok';
  } catch (e) {
    if (!(e instanceof ActionError)) throw e;
    assert.equal(JSON.stringify((await pool.query('SELECT * FROM Builds WHERE id = $1', [id])).rows), before, `${kind} refused for ${who.hydraUser} changed nothing`);
    return e.kind;
  }
}

test('each role allows exactly its action', async () => {
  const table: Record<string, Record<Kind, string>> = {
    'restart-jobs': {restart: 'ok', cancel: 'permission', bump: 'permission'},
    'cancel-build': {restart: 'permission', cancel: 'ok', bump: 'permission'},
    'bump-to-front': {restart: 'permission', cancel: 'permission', bump: 'ok'},
    'eval-jobset': {restart: 'permission', cancel: 'permission', bump: 'permission'},
    'create-projects': {restart: 'permission', cancel: 'permission', bump: 'permission'},
    plain: {restart: 'permission', cancel: 'permission', bump: 'permission'},
    admin: {restart: 'ok', cancel: 'ok', bump: 'ok'},
  };
  for (const [user, expected] of Object.entries(table)) {
    for (const kind of ['restart', 'cancel', 'bump'] as const) {
      assert.equal(await attempt(kind, actor(user), otherJs), expected[kind], `${user} ${kind}`);
    }
  }
});

test('project owner and members may restart, cancel and bump their project only', async () => {
  for (const user of ['owner', 'member']) {
    for (const kind of ['restart', 'cancel', 'bump'] as const) {
      assert.equal(await attempt(kind, actor(user), js), 'ok', `${user} ${kind} own project`);
      assert.equal(await attempt(kind, actor(user), otherJs), 'permission', `${user} ${kind} foreign project`);
    }
  }
});

test('a bulk action spanning projects is refused as a whole, naming the project the user may not touch', async () => {
  const mine = await insertBuild(pool, {jobsetId: js.id});
  const theirs = await insertBuild(pool, {jobsetId: otherJs.id});
  await assert.rejects(cancelBuilds(pool, actor('owner'), {kind: 'ids', ids: [mine, theirs]}), (e: ActionError) => {
    assert.equal(e.kind, 'permission');
    assert.match(e.message, /"foreign"/);
    assert.deepEqual((e.details as {deniedProjects: string[]}).deniedProjects, ['foreign']);
    return true;
  });
  const {rows} = await pool.query('SELECT finished FROM Builds WHERE id = ANY($1::int[])', [[mine, theirs]]);
  assert.deepEqual(rows.map((r) => r.finished), [0, 0]);
});

test('admin-only actions need admin: role holders and project owners are refused', async () => {
  const machines = parseMachinesText('ssh://b1 x86_64-linux\n', 'machines').machines;
  const adminActions = [
    (a: Actor) => clearFailedCache(pool, a),
    (a: Actor) => clearQueueNonCurrent(pool, a, {dryRun: true}),
    (a: Actor) => setMachineDrained(pool, a, machines, 'b1', true),
  ];
  for (const user of ['owner', 'restart-jobs', 'cancel-build', 'plain']) {
    for (const run of adminActions) await assert.rejects(run(actor(user)), (e: ActionError) => e.kind === 'permission' && /admin/.test(e.message), user);
  }
  for (const run of adminActions) await run(actor('admin'));
});

test('an unknown user is read-only with an explanation; the explicit local-admin setting makes it an admin', async () => {
  const ghost = actor('ghost', {hydraUserSource: 'OS login name'});
  for (const kind of ['restart', 'cancel', 'bump'] as const) assert.equal(await attempt(kind, ghost), 'permission');
  await assert.rejects(cancelBuilds(pool, ghost, {kind: 'ids', ids: [await insertBuild(pool, {jobsetId: js.id})]}), (e: ActionError) => {
    assert.match(e.message, /"ghost" \(from OS login name\) does not exist/);
    assert.match(e.message, /--user/);
    assert.match(e.message, /HYDRA_OPS_USER/);
    assert.match(e.message, /config set hydraUser/);
    assert.match(e.message, /config set localAdmin true/);
    return true;
  });
  const trusted = actor('ghost', {localAdmin: true});
  for (const kind of ['restart', 'cancel', 'bump'] as const) assert.equal(await attempt(kind, trusted, otherJs), 'ok');
  await clearFailedCache(pool, trusted, {dryRun: true});
});

test('read-only mode refuses every mutation, even for an admin, and changes nothing', async () => {
  const ro = actor('admin', {readonly: true, readonlySource: '--readonly'});
  for (const kind of ['restart', 'cancel', 'bump'] as const) assert.equal(await attempt(kind, ro), 'readonly');
  await assert.rejects(clearFailedCache(pool, ro), (e: ActionError) => e.kind === 'readonly' && /--readonly/.test(e.message));
  await assert.rejects(cancelBuilds(pool, ro, {kind: 'filter', filter: 'status:queued'}, {dryRun: true}), (e: ActionError) => e.kind === 'readonly');
});
