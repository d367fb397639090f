// The database's runner lock on a real PostgreSQL server: one holder per database, the holder named
// from pg_locks + pg_stat_activity, clearBusy refused without it, and re-acquisition after the lock
// connection is killed — unless another runner took the lock meanwhile.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {createHash} from 'node:crypto';
import {hostname} from 'node:os';
import pg from 'pg';
import {freshDatabase} from './support/pg.js';
import {initSchema} from '../source/db/schema.js';
import {
  RUNNER_LOCK_KEY,
  RunnerDbLock,
  RunnerDbLockBusyError,
  RunnerDbLockNotHeldError,
  runnerLockSession,
  runnerApplicationName,
  parseRunnerApplicationName,
} from '../source/db/runner-advisory-lock.js';
import {clearBusy, abortOrphanedStep} from '../source/db/runner-sql.js';
import {insertJobset, insertBuild, insertBuildStep} from './support/fixtures.js';
import {waitFor} from './support/wait.js';
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {observeRunners, decideConsoleRunner} from '../source/scheduler/runner-presence.js';

test('the lock key is derived from its documented name', () => {
  assert.equal(RUNNER_LOCK_KEY, createHash('sha256').update('hydra-ops queue runner').digest().readBigInt64BE(0));
  assert.equal(RUNNER_LOCK_KEY, 4691883269048081648n);
  assert.deepEqual(parseRunnerApplicationName(runnerApplicationName(1234, 'builder-host')), {pid: 1234, host: 'builder-host'});
  assert.ok(runnerApplicationName(1, 'x'.repeat(100)).length <= 63);
});

test('runner lock: one holder per database, named; clearBusy needs it; re-acquired after the connection dies unless taken', {timeout: 60_000}, async () => {
  const db = await freshDatabase('advisory');
  const pool = new pg.Pool({connectionString: db.url, max: 3});
  pool.on('error', () => {});
  const locks: RunnerDbLock[] = [];
  try {
    await initSchema(pool);
    assert.equal(await runnerLockSession(pool), null, 'free at first');
    const a = await RunnerDbLock.acquire({connectionString: db.url}, {applicationName: 'hydra-ops runner pid 1111 on host-a', checkMs: 200});
    locks.push(a);
    assert.equal(a.held, true);
    const holder = await runnerLockSession(pool);
    assert.ok(holder);
    assert.equal(holder.backendPid, a.backendPid);
    assert.equal(holder.applicationName, 'hydra-ops runner pid 1111 on host-a');
    assert.equal(holder.runnerPid, 1111);
    assert.equal(holder.runnerHost, 'host-a');
    const raw = await pool.query("SELECT classid::int8 AS c, objid::int8 AS o FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND pid = $1", [a.backendPid]);
    assert.deepEqual(raw.rows, [{c: '1092414201', o: '2067111152'}], 'pg_locks shows the documented classid/objid');
    assert.ok(holder.backendStart, 'backend start is reported');

    // A second runner on the same database is refused and told who holds it.
    await assert.rejects(RunnerDbLock.acquire({connectionString: db.url}), (e: unknown) => {
      assert.ok(e instanceof RunnerDbLockBusyError);
      assert.equal(e.holder?.backendPid, a.backendPid);
      assert.match(e.message, /hydra-ops runner pid 1111 on host-a/);
      assert.match(e.message, new RegExp(`database backend pid ${a.backendPid}`));
      return true;
    });
    // The default application_name names this process.
    assert.equal(runnerApplicationName(), `hydra-ops runner pid ${process.pid} on ${hostname()}`.slice(0, 63));

    // clearBusy with the lock works; the abort of an unrecorded step too.
    const js = await insertJobset(pool);
    const b = await insertBuild(pool, {jobsetId: js.id});
    const s1 = await insertBuildStep(pool, {build: b, busy: 30});
    const s2 = await insertBuildStep(pool, {build: b, busy: 30});
    await abortOrphanedStep(pool, a, b, s1);
    assert.equal((await pool.query('SELECT busy, status FROM BuildSteps WHERE build = $1 AND stepnr = $2', [b, s1])).rows[0].status, 3);
    assert.equal(await clearBusy(pool, a), 1);

    // The lock connection is killed: the lock is lost, then re-acquired.
    const lost = new Promise((r) => a.once('lost', r));
    const regained = new Promise((r) => a.once('regained', r));
    const oldPid = a.backendPid;
    await pool.query('SELECT pg_terminate_backend($1)', [oldPid]);
    await lost;
    await regained;
    assert.equal(a.held, true);
    assert.notEqual(a.backendPid, oldPid);
    assert.equal((await runnerLockSession(pool))?.backendPid, a.backendPid);

    // Killed again, and another runner grabs the lock first: 'taken', not held, runner-only statements refused.
    await insertBuildStep(pool, {build: b, busy: 20});
    const taken = new Promise((r) => a.once('taken', r));
    const client = new pg.Client({connectionString: db.url, application_name: 'intruder'});
    await client.connect();
    const killedPid = a.backendPid;
    await pool.query('SELECT pg_terminate_backend($1)', [killedPid]);
    await waitFor('the lock to be free', async () => (await runnerLockSession(pool))?.backendPid !== killedPid);
    assert.equal((await client.query('SELECT pg_try_advisory_lock($1::int8) AS ok', [RUNNER_LOCK_KEY.toString()])).rows[0].ok, true);
    const holderNow = await taken;
    assert.equal((holderNow as {applicationName: string} | null)?.applicationName, 'intruder');
    assert.equal(a.held, false);
    await assert.rejects(clearBusy(pool, a), RunnerDbLockNotHeldError);
    assert.equal((await pool.query('SELECT count(*)::int AS n FROM BuildSteps WHERE busy != 0')).rows[0].n, 1, 'the busy row is untouched');
    // A proof that claims to hold the lock for a backend that does not: the statement's own pg_locks check stops it.
    const fake = {held: true, backendPid: killedPid, assertHeld() {}};
    assert.equal(await clearBusy(pool, fake), 0);
    // The intruder goes away: ours is re-acquired.
    const back = new Promise((r) => a.once('regained', r));
    await client.end();
    await back;
    assert.equal(a.held, true);
    await a.release();
    assert.equal(a.held, false);
    assert.equal(await runnerLockSession(pool), null, 'released');
  } finally {
    for (const l of locks) await l.release().catch(() => {});
    await pool.end();
    await db.drop();
  }
});

test('observeRunners on a real database: nothing, recent busy steps, a SystemStatus row that answers dump_status, a lock holder', {timeout: 60_000}, async () => {
  const db = await freshDatabase('presence');
  const pool = new pg.Pool({connectionString: db.url, max: 3});
  pool.on('error', () => {});
  const dataDir = mkdtempSync(join(tmpdir(), 'hydra-ops-presence-'));
  const connection = {connectionString: db.url};
  const answerer = new pg.Client(connection);
  let lock: RunnerDbLock | null = null;
  try {
    await initSchema(pool);
    const observe = () => observeRunners({pool, connection, dataDir, dumpStatusWaitMs: 1000});
    const decide = async () => decideConsoleRunner({observations: await observe(), database: 'server', scheduler: true});
    assert.deepEqual(await decide(), {action: 'run'});

    // An old busy row (a crash leftover) does not count; a recent one does.
    const js = await insertJobset(pool);
    const b = await insertBuild(pool, {jobsetId: js.id});
    const s = await insertBuildStep(pool, {build: b, busy: 30});
    await pool.query('UPDATE BuildSteps SET startTime = extract(epoch from now())::int - 3600 WHERE build = $1 AND stepnr = $2', [b, s]);
    assert.deepEqual(await decide(), {action: 'run'});
    await pool.query('UPDATE BuildSteps SET startTime = extract(epoch from now())::int - 5 WHERE build = $1 AND stepnr = $2', [b, s]);
    const busy = await decide();
    assert.equal(busy.action, 'attach');
    assert.equal((busy as {runner: {kind: string}}).runner.kind, 'busy-steps');
    await pool.query('UPDATE BuildSteps SET busy = 0 WHERE build = $1', [b]);

    // A stale SystemStatus row: silent → not a runner; answering dump_status (like Hydra's C++ runner) → a runner.
    const stale = Math.floor(Date.now() / 1000) - 3600;
    await pool.query("INSERT INTO SystemStatus (what, status) VALUES ('queue-runner', $1)", [JSON.stringify({status: 'up', time: stale, pid: 4242})]);
    assert.deepEqual(await decide(), {action: 'run'});
    await answerer.connect();
    await answerer.query('LISTEN dump_status');
    answerer.on('notification', () => {
      void (async () => {
        await answerer.query('BEGIN');
        await answerer.query("DELETE FROM SystemStatus WHERE what = 'queue-runner'");
        await answerer.query("INSERT INTO SystemStatus (what, status) VALUES ('queue-runner', $1)", [JSON.stringify({status: 'up', time: Math.floor(Date.now() / 1000), pid: 4242})]);
        await answerer.query('NOTIFY status_dumped');
        await answerer.query('COMMIT');
      })();
    });
    const cpp = await decide();
    assert.equal(cpp.action, 'attach');
    assert.match((cpp as {note: string}).note, /^Hydra's queue runner pid 4242 \(SystemStatus \d s ago\)$/);

    // A hydra-ops runner's lock: named first.
    lock = await RunnerDbLock.acquire(connection, {applicationName: 'hydra-ops runner pid 99 on elsewhere'});
    const held = await decide();
    assert.deepEqual(held.action === 'attach' && held.note, 'hydra-ops runner pid 99 on elsewhere (lock holder)');
  } finally {
    await lock?.release();
    await answerer.end().catch(() => {});
    await pool.end();
    await db.drop();
    rmSync(dataDir, {recursive: true, force: true});
  }
});
