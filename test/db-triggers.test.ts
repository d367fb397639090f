// Hydra's triggers: each operation wakes exactly its NOTIFY channel, unrelated updates wake none, and
// NrBuilds('finished') follows the finished builds.
//
// Determinism: after the statement under test commits, the test sends a sentinel pg_notify of its own and waits
// for it. PostgreSQL delivers notifications in commit order, so when the sentinel arrives every notification the
// statement caused has arrived too; "none" is then an exact assertion, not a timing guess.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {randomBytes} from 'node:crypto';
import pg from 'pg';
import {freshDatabase, type TestDatabase} from './support/pg.js';
import {insertBuild, insertJobset, nowSeconds, type JobsetRow} from './support/fixtures.js';
import {initSchema} from '../source/db/schema.js';
import {HYDRA_TRIGGER_CHANNELS} from '../source/db/schema/hydra-sql.js';

const SENTINEL = 'hydra_ops_test_sentinel';

let db: TestDatabase;
let listener: pg.Client;
let writer: pg.Client;
let jobset: JobsetRow;
const received: string[] = [];
let sentinelWaiter: {token: string; resolve: () => void} | undefined;

before(async () => {
  db = await freshDatabase('triggers');
  writer = new pg.Client({connectionString: db.url});
  await writer.connect();
  await initSchema(writer);
  jobset = await insertJobset(writer);

  listener = new pg.Client({connectionString: db.url});
  await listener.connect();
  listener.on('notification', (msg) => {
    if (msg.channel === SENTINEL) {
      if (sentinelWaiter && msg.payload === sentinelWaiter.token) sentinelWaiter.resolve();
      return;
    }
    received.push(msg.channel);
  });
  for (const channel of [...HYDRA_TRIGGER_CHANNELS, SENTINEL]) await listener.query(`LISTEN ${channel}`);
});

after(async () => {
  await listener?.end().catch(() => {});
  await writer?.end().catch(() => {});
  await db?.drop();
});

/** Runs `action` (which must have committed when it resolves) and returns the trigger channels it woke. */
async function channelsOf(action: () => Promise<unknown>): Promise<string[]> {
  await flush();
  received.length = 0;
  await action();
  await flush();
  return [...received];
}

/** Sends a sentinel and waits until the listener has seen it (and so everything committed before it). */
async function flush(): Promise<void> {
  const token = randomBytes(6).toString('hex');
  let timer: NodeJS.Timeout | undefined;
  const arrived = new Promise<void>((resolve, reject) => {
    sentinelWaiter = {token, resolve};
    timer = setTimeout(() => reject(new Error('sentinel notification did not arrive within 5 s')), 5000);
  });
  try {
    await writer.query('SELECT pg_notify($1, $2)', [SENTINEL, token]);
    await arrived;
  } finally {
    clearTimeout(timer);
    sentinelWaiter = undefined;
  }
}

const finishSql = (status: number) =>
  `UPDATE builds SET finished = 1, buildstatus = ${status}, starttime = ${nowSeconds()}, stoptime = ${nowSeconds()},
          iscachedbuild = 0 WHERE id = ANY($1::int[])`;

test('restart (finished 1 -> 0) wakes builds_restarted only', async () => {
  const id = await insertBuild(writer, {jobsetId: jobset.id, finished: 1, buildStatus: 1});
  const got = await channelsOf(() => writer.query('UPDATE builds SET finished = 0 WHERE id = $1', [id]));
  assert.deepEqual(got, ['builds_restarted']);
});

test('cancel (0 -> 1 with status 4) wakes builds_cancelled only, once per statement', async () => {
  const one = await insertBuild(writer, {jobsetId: jobset.id});
  assert.deepEqual(await channelsOf(() => writer.query(finishSql(4), [[one]])), ['builds_cancelled']);

  const many: number[] = [];
  for (let i = 0; i < 3; i++) many.push(await insertBuild(writer, {jobsetId: jobset.id}));
  assert.deepEqual(await channelsOf(() => writer.query(finishSql(4), [many])), ['builds_cancelled']);
});

test('finishing a build normally wakes nothing', async () => {
  for (const status of [0, 1, 3]) {
    const id = await insertBuild(writer, {jobsetId: jobset.id});
    assert.deepEqual(await channelsOf(() => writer.query(finishSql(status), [[id]])), [], `status ${status}`);
  }
});

test('bump (globalPriority change) wakes builds_bumped only', async () => {
  const id = await insertBuild(writer, {jobsetId: jobset.id});
  const bump = 'UPDATE builds SET globalpriority = $2 WHERE id = $1';
  assert.deepEqual(await channelsOf(() => writer.query(bump, [id, 1_700_000_000])), ['builds_bumped']);
  assert.deepEqual(await channelsOf(() => writer.query(bump, [id, 1_700_000_000])), [], 'same value');
  assert.deepEqual(
    await channelsOf(() => writer.query('UPDATE builds SET priority = 500 WHERE id = $1', [id])),
    [],
    'local priority',
  );
});

test('deleting builds wakes builds_deleted once per statement', async () => {
  const ids: number[] = [];
  for (let i = 0; i < 3; i++) ids.push(await insertBuild(writer, {jobsetId: jobset.id, finished: i % 2}));
  const got = await channelsOf(() => writer.query('DELETE FROM builds WHERE id = ANY($1::int[])', [ids]));
  assert.deepEqual(got, ['builds_deleted']);
  // Statement level: it fires even when the statement deletes nothing.
  assert.deepEqual(await channelsOf(() => writer.query('DELETE FROM builds WHERE false')), ['builds_deleted']);
});

test('jobset shares change wakes jobset_shares_changed only', async () => {
  const js = await insertJobset(writer, {project: jobset.project});
  const set = 'UPDATE jobsets SET schedulingshares = $2 WHERE id = $1';
  assert.deepEqual(await channelsOf(() => writer.query(set, [js.id, 250])), ['jobset_shares_changed']);
  assert.deepEqual(await channelsOf(() => writer.query(set, [js.id, 250])), [], 'same value');
});

test('jobset insert wakes jobsets_added; delete wakes jobsets_deleted and builds_deleted (cascade)', async () => {
  let js: JobsetRow | undefined;
  assert.deepEqual(
    await channelsOf(async () => (js = await insertJobset(writer, {project: jobset.project}))),
    ['jobsets_added'],
  );
  // BuildsDeleted is statement-level, and the foreign-key cascade runs a DELETE on Builds even when the jobset
  // has no builds: deleting any jobset also wakes builds_deleted.
  assert.deepEqual(
    (await channelsOf(() => writer.query('DELETE FROM jobsets WHERE id = $1', [js!.id]))).sort(),
    ['builds_deleted', 'jobsets_deleted'],
  );

  const withBuilds = await insertJobset(writer, {project: jobset.project});
  await insertBuild(writer, {jobsetId: withBuilds.id});
  await insertBuild(writer, {jobsetId: withBuilds.id, finished: 1});
  const got = await channelsOf(() => writer.query('DELETE FROM jobsets WHERE id = $1', [withBuilds.id]));
  assert.deepEqual(got.sort(), ['builds_deleted', 'jobsets_deleted']);
});

test('scheduling changes wake jobset_scheduling_changed; clearing triggerTime does not', async () => {
  const js = await insertJobset(writer, {project: jobset.project});
  const upd = (set: string) => () => writer.query(`UPDATE jobsets SET ${set} WHERE id = $1`, [js.id]);
  assert.deepEqual(await channelsOf(upd(`triggertime = ${nowSeconds()}`)), ['jobset_scheduling_changed']);
  assert.deepEqual(await channelsOf(upd('triggertime = triggertime + 1')), ['jobset_scheduling_changed']);
  assert.deepEqual(await channelsOf(upd('triggertime = NULL')), [], 'triggerTime cleared');
  assert.deepEqual(await channelsOf(upd('checkinterval = 60')), ['jobset_scheduling_changed']);
  assert.deepEqual(await channelsOf(upd('enabled = 0')), ['jobset_scheduling_changed']);
  assert.deepEqual(await channelsOf(upd('enabled = 0')), [], 'enabled unchanged');
});

test('unrelated updates wake nothing', async () => {
  const id = await insertBuild(writer, {jobsetId: jobset.id});
  const cases: Array<[string, string, unknown[]]> = [
    ['build description', "UPDATE builds SET description = 'changed' WHERE id = $1", [id]],
    ['build keep', 'UPDATE builds SET keep = 1 WHERE id = $1', [id]],
    ['jobset description', "UPDATE jobsets SET description = 'changed' WHERE id = $1", [jobset.id]],
    ['jobset evaluator bookkeeping', 'UPDATE jobsets SET lastcheckedtime = 5, errormsg = NULL WHERE id = $1', [jobset.id]],
    ['project description', "UPDATE projects SET description = 'changed' WHERE name = $1", [jobset.project]],
  ];
  for (const [what, sql, params] of cases) {
    assert.deepEqual(await channelsOf(() => writer.query(sql, params)), [], what);
  }
  assert.deepEqual(await channelsOf(() => insertBuild(writer, {jobsetId: jobset.id})), [], 'inserting a build');
});

test('a notification raised in a rolled-back transaction is never delivered', async () => {
  const id = await insertBuild(writer, {jobsetId: jobset.id});
  const got = await channelsOf(async () => {
    await writer.query('BEGIN');
    await writer.query('UPDATE builds SET globalpriority = 42 WHERE id = $1', [id]);
    await writer.query('ROLLBACK');
  });
  assert.deepEqual(got, []);
});

test("NrBuilds('finished') follows inserts, finishes, restarts and deletes", async () => {
  const nr = async (): Promise<number> =>
    (await writer.query<{count: number}>("SELECT count FROM nrbuilds WHERE what = 'finished'")).rows[0]!.count;
  const exact = async (): Promise<number> =>
    (await writer.query<{n: number}>('SELECT count(*)::int AS n FROM builds WHERE finished = 1')).rows[0]!.n;
  assert.equal(await nr(), await exact(), 'in step with the table before this test');
  const start = await nr();

  const done = await insertBuild(writer, {jobsetId: jobset.id, finished: 1});
  assert.equal(await nr(), start + 1, 'insert finished');
  const queued = await insertBuild(writer, {jobsetId: jobset.id});
  assert.equal(await nr(), start + 1, 'insert queued');
  await writer.query(finishSql(0), [[queued]]);
  assert.equal(await nr(), start + 2, 'finish');
  await writer.query('UPDATE builds SET description = $2 WHERE id = $1', [queued, 'x']);
  assert.equal(await nr(), start + 2, 'unrelated update');
  await writer.query('UPDATE builds SET finished = 0 WHERE id = $1', [done]);
  assert.equal(await nr(), start + 1, 'restart');
  await writer.query('DELETE FROM builds WHERE id = $1', [queued]);
  assert.equal(await nr(), start, 'delete finished');
  await writer.query('DELETE FROM builds WHERE id = $1', [done]);
  assert.equal(await nr(), start, 'delete queued');
  assert.equal(await nr(), await exact());
});
