// The console's SQL-backed data source against a real PostgreSQL: keyset paging in both orders and
// directions, counts, filters, running steps, actions with permission refusals and audit rows,
// LISTEN-driven change events, logs (plain, .bz2, growth, truncation, a 1M-line file), and the runner
// status parsers (REST shape and SystemStatus).
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, mkdirSync, rmSync, writeFileSync, appendFileSync, truncateSync, createWriteStream} from 'node:fs';
import {tmpdir} from 'node:os';
import {dirname, join} from 'node:path';
import {execFileSync} from 'node:child_process';
import pg from 'pg';
import {freshDatabase, type TestDatabase} from './support/pg.js';
import {insertBuild, insertBuildStep, insertJobset, storePath} from './support/fixtures.js';
import {initSchema} from '../source/db/schema.js';
import {FilterError} from '../source/db/filter.js';
import {makeActor} from '../source/actions/actor.js';
import {drvLogBucketPath} from '../source/nix/store.js';
import {SqlConsoleData} from '../source/ui/state/sql-data.js';
import {LogFile} from '../source/ui/state/log-file.js';
import {externalSource, parseCppStatus, parseRestStatus, type RunnerSource} from '../source/ui/state/runner-source.js';
import {BUILD_SORT_CYCLE, pageEvals} from '../source/db/queries/windows.js';
import {markAllSelection} from '../source/ui/state/acting.js';
import {initialState} from '../source/ui/state/reducer.js';
import type {Queryable} from '../source/db/queryable.js';
import {buildKey, type Anchor, type BuildListRow, type BuildOrder, type WindowName} from '../source/ui/state/types.js';
import {VIEWS, type WindowSource} from '../source/ui/state/views.js';
import type {MachineSpec} from '../source/fleet/machines-file.js';

let db: TestDatabase;
let pool: pg.Pool;
let dataDir: string;
let jobsetId: number;
const N = 137;

const machine: MachineSpec = {
  uri: 'ssh://builder1',
  kind: 'ssh',
  host: 'builder1',
  port: undefined,
  user: undefined,
  systems: ['x86_64-linux'],
  maxJobs: 2,
  speedFactor: 1,
  supportedFeatures: [],
  mandatoryFeatures: [],
  file: '(test)',
  line: 1,
};

function source(o: {admin?: boolean; user?: string; readonly?: boolean; runner?: RunnerSource; now?: () => number; machines?: MachineSpec[]} = {}): SqlConsoleData {
  return new SqlConsoleData({
    pool,
    connection: {connectionString: db.url},
    describe: 'test database',
    dataDir,
    actor: makeActor({hydraUser: o.user ?? 'nobody', localAdmin: o.admin ?? false, readonly: o.readonly ?? false, readonlySource: '--readonly', version: 'test'}),
    runner: o.runner ?? null,
    mode: o.runner ? 'attached' : 'none',
    modeNote: o.runner ? 'attached' : '--no-scheduler',
    machineSpecs: async () => o.machines ?? [machine],
    stepsPollMs: 50,
    now: o.now,
  });
}

/** The views table's window reads (ConsoleData.query), under the names the assertions below use. */
function windows(d: SqlConsoleData) {
  const src = <V extends WindowName>(v: V) => VIEWS[v].source as WindowSource<V>;
  const at = (anchor: Anchor, limit: number) => ({filter: null, order: 'id-desc' as const, reverse: false, anchor, limit});
  return {
    pageBuilds: (q: {filter: string | null; order: BuildOrder; reverse?: boolean; anchor: Anchor; limit: number}) => d.query(src('builds').page, {reverse: false, ...q}),
    countBuilds: (q: {filter: string | null; order: BuildOrder}) => d.query(src('builds').count, q),
    pageAudit: (anchor: Anchor, limit: number) => d.query(src('audit').page, at(anchor, limit)),
    countAudit: () => d.query(src('audit').count, {filter: null, order: 'id-desc'}),
    pageChecks: (anchor: Anchor, limit: number) => d.query(src('checks').page, at(anchor, limit)),
    countChecks: () => d.query(src('checks').count, {filter: null, order: 'id-desc'}),
    pageEvals: (q: {filter: string | null; anchor: Anchor; limit: number}) => d.query(src('evals').page, {order: 'id-desc', reverse: false, ...q}),
    countEvals: (filter: string | null) => d.query(src('evals').count, {filter, order: 'id-desc'}),
  };
}

before(async () => {
  db = await freshDatabase('ui_sql');
  pool = new pg.Pool({connectionString: db.url, max: 5});
  await initSchema(pool);
  dataDir = mkdtempSync(join(tmpdir(), 'hydra-ops-ui-sql-'));
  const js = await insertJobset(pool, {name: 'main'});
  jobsetId = js.id;
  // N builds: odd ids finished, every 10th bumped.
  await pool.query(
    `INSERT INTO Builds (finished, timestamp, jobset_id, job, nixName, drvPath, system, maxsilent, timeout, isCurrent, priority, globalPriority,
                         startTime, stopTime, isCachedBuild, buildStatus, keep)
     SELECT i % 2, 1700000000 + i, $1, 'job' || i, 'job' || i, '/nix/store/' || lpad(i::text, 32, 'a') || '-job' || i || '.drv',
            CASE WHEN i % 3 = 0 THEN 'aarch64-linux' ELSE 'x86_64-linux' END, 7200, 36000, 1, 100,
            CASE WHEN i % 10 = 0 THEN 1700000500 + i ELSE 0 END,
            CASE WHEN i % 2 = 1 THEN 1700001000 END, CASE WHEN i % 2 = 1 THEN 1700001060 END,
            CASE WHEN i % 2 = 1 THEN 0 END, CASE WHEN i % 2 = 1 THEN 0 END, 0
       FROM generate_series(1, ${N}) AS i`,
    [jobsetId],
  );
});

after(async () => {
  await pool.end();
  await db.drop();
  rmSync(dataDir, {recursive: true, force: true});
});

async function walk(d: SqlConsoleData, order: BuildOrder, filter: string | null, dir: 'down' | 'up'): Promise<number[]> {
  const seen: number[] = [];
  let anchor: Anchor = {kind: dir === 'down' ? 'start' : 'end'};
  for (let i = 0; i < 100; i++) {
    const rows: BuildListRow[] = await windows(d).pageBuilds({filter, order, anchor, limit: 25});
    if (rows.length === 0) break;
    const key = (r: BuildListRow) => (order === 'queue' ? [r.globalpriority, r.id] : [r.id]);
    if (dir === 'down') {
      seen.push(...rows.map((r) => r.id));
      anchor = {kind: 'after', key: key(rows[rows.length - 1]!)};
    } else {
      seen.unshift(...rows.map((r) => r.id));
      anchor = {kind: 'before', key: key(rows[0]!)};
    }
    if (rows.length < 25) break;
  }
  return seen;
}

test('builds are keyset-paged both ways in both orders, and counts agree', async () => {
  const d = source();
  const down = await walk(d, 'id-desc', null, 'down');
  assert.equal(down.length, N);
  assert.deepEqual(down, [...down].sort((a, b) => b - a));
  assert.deepEqual(await walk(d, 'id-desc', null, 'up'), down);
  assert.equal(await windows(d).countBuilds({filter: null, order: 'id-desc'}), N);

  const queue = await walk(d, 'queue', null, 'down');
  const {rows} = await pool.query('SELECT id FROM Builds WHERE finished = 0 ORDER BY globalPriority DESC, id');
  assert.deepEqual(queue, rows.map((r) => r.id));
  assert.deepEqual(await walk(d, 'queue', null, 'up'), queue);
  assert.equal(await windows(d).countBuilds({filter: null, order: 'queue'}), rows.length);

  // 'from' is inclusive: a refresh in place starts at the same row.
  const page = await windows(d).pageBuilds({filter: null, order: 'id-desc', anchor: {kind: 'from', key: [100]}, limit: 3});
  assert.deepEqual(page.map((r) => r.id), [100, 99, 98]);
  const qp = await windows(d).pageBuilds({filter: null, order: 'queue', anchor: {kind: 'from', key: [queue.length ? (await windows(d).pageBuilds({filter: null, order: 'queue', anchor: {kind: 'start'}, limit: 1}))[0]!.globalpriority : 0, queue[0]!]}, limit: 2});
  assert.deepEqual(qp.map((r) => r.id), queue.slice(0, 2));

  const filtered = await walk(d, 'id-desc', 'system:aarch64-linux status:queued', 'down');
  const expected = Array.from({length: N}, (_, i) => i + 1).filter((i) => i % 3 === 0 && i % 2 === 0).reverse();
  assert.deepEqual(filtered, expected);
  assert.equal(await windows(d).countBuilds({filter: 'system:aarch64-linux status:queued', order: 'id-desc'}), expected.length);
  await assert.rejects(() => windows(d).pageBuilds({filter: 'colour:red', order: 'id-desc', anchor: {kind: 'start'}, limit: 5}), FilterError);
  await assert.rejects(() => windows(d).pageBuilds({filter: '/a{1000/', order: 'id-desc', anchor: {kind: 'start'}, limit: 5}), FilterError);
});

test('running steps: busy steps by machine with their phase; the observed phase age starts at a change', async () => {
  const d = source();
  const b1 = await insertBuild(pool, {jobsetId, job: 'run-a'});
  const b2 = await insertBuild(pool, {jobsetId, job: 'run-b'});
  await insertBuildStep(pool, {build: b1, busy: 30, machine: 'ssh://m2'});
  await insertBuildStep(pool, {build: b2, busy: 20, machine: 'ssh://m1'});
  let steps = await d.runningSteps(null);
  assert.deepEqual(steps.map((s) => [s.machine, s.build, s.busy]), [
    ['ssh://m1', b2, 20],
    ['ssh://m2', b1, 30],
  ]);
  assert.equal(steps[0]!.phaseSince, null);
  await pool.query('UPDATE BuildSteps SET busy = 30 WHERE build = $1', [b2]);
  steps = await d.runningSteps(null);
  assert.ok(steps[0]!.phaseSince !== null && Date.now() - steps[0]!.phaseSince < 5000);
  assert.deepEqual((await d.runningSteps('machine:ssh://m2')).map((s) => s.build), [b1]);
  // the builds list shows the running step's phase and machine
  const page = await windows(d).pageBuilds({filter: `id:${b1}`, order: 'id-desc', anchor: {kind: 'start'}, limit: 5});
  assert.equal(page[0]!.busy, 30);
  assert.equal(page[0]!.machine, 'ssh://m2');
  const detail = await d.buildDetail(b1);
  assert.equal(detail!.steps.length, 1);
  assert.deepEqual(detail!.why, []);
  const queued = await d.buildDetail(2);
  assert.match(queued!.why.join(' '), /no queue runner: --no-scheduler/);
  assert.equal(await d.buildDetail(99_999_999), null);
  await pool.query('UPDATE BuildSteps SET busy = 0, status = 0, stoptime = starttime WHERE build = ANY($1::int[])', [[b1, b2]]);
});

test('actions: an unknown user is read-only; a local admin cancels with a scoped preview; audit rows page newest first', async () => {
  const nobody = source();
  const caps = await nobody.capabilities();
  assert.match(caps.readonly!, /Hydra user "nobody" is unknown/);
  assert.equal(caps.checks, null);
  const refused = await nobody.act({kind: 'cancel', ids: [2]});
  assert.equal(refused.ok, false);
  assert.equal(refused.refusal, 'permission');

  const ro = source({readonly: true});
  assert.match((await ro.capabilities()).readonly!, /read-only mode \(from --readonly\)/);
  const roRefused = await ro.act({kind: 'restart', ids: [1]});
  assert.equal(roRefused.refusal, 'readonly');

  const admin = source({admin: true});
  const adminCaps = await admin.capabilities();
  assert.equal(adminCaps.readonly, null);
  assert.equal(adminCaps.admin, null);
  const preview = await admin.act({kind: 'cancel', ids: [2, 4, 5], dryRun: true});
  assert.equal(preview.ok, true);
  assert.deepEqual(preview.changed, [2, 4]);
  assert.match(preview.scope!, /in .*:main \(2 not running, 0 running\)/);
  assert.equal((await pool.query('SELECT buildstatus FROM Builds WHERE id = 2')).rows[0].buildstatus, null);
  const done = await admin.act({kind: 'cancel', ids: [2, 4]});
  assert.equal(done.ok, true);
  assert.match(done.message, /cancelled 2 of 2 build\(s\): 2, 4/);
  const {rows} = await pool.query('SELECT id, finished, buildstatus FROM Builds WHERE id = ANY($1::int[]) ORDER BY id', [[2, 4]]);
  assert.deepEqual(rows, [
    {id: 2, finished: 1, buildstatus: 4},
    {id: 4, finished: 1, buildstatus: 4},
  ]);
  const bump = await admin.act({kind: 'bump', ids: [6]});
  assert.equal(bump.ok, true);
  const drain = await admin.act({kind: 'drain', machine: 'builder1'});
  assert.match(drain.message, /ssh:\/\/builder1 drained/);
  const machines = await admin.machines(null);
  assert.equal(machines[0]!.state, 'drained');
  assert.deepEqual(await admin.machines('state:idle'), []);
  // build 1's derivation is not in the store: the check is refused with the reason, and audited
  const check = await admin.act({kind: 'check', ids: [1]});
  assert.equal(check.ok, false);
  assert.ok(check.message.length > 0);
  assert.equal((await admin.act({kind: 'check', ids: [1, 3]})).refusal, 'usage');

  const total = await windows(admin).countAudit();
  assert.ok(total >= 6, `audit rows: ${total}`);
  const first = await windows(admin).pageAudit({kind: 'start'}, 2);
  assert.equal(first[0]!.action, 'check');
  assert.equal(first[0]!.outcome, 'refused');
  assert.equal(first[1]!.action, 'machine-drain');
  assert.ok(first[0]!.id > first[1]!.id);
  const next = await windows(admin).pageAudit({kind: 'after', key: [first[1]!.id]}, 100);
  assert.equal(first.length + next.length, total);
  const last = await windows(admin).pageAudit({kind: 'end'}, 1);
  assert.equal(last[0]!.id, next[next.length - 1]!.id);
  assert.ok(next.some((e) => e.outcome === 'refused' && e.hydraUser === 'nobody'));
});

test('header and overview without a runner; jobsets with shares and queue counts', async () => {
  const d = source();
  const h = await d.header();
  const {rows} = await pool.query('SELECT count(*)::int AS n FROM Builds WHERE finished = 0');
  assert.equal(h.queued, rows[0].n);
  assert.equal(h.mode, 'none');
  assert.equal(h.runnerUp, false);
  assert.ok(h.systems.some((s) => s.system === 'aarch64-linux' && s.queued > 0));
  const o = await d.overview();
  assert.equal(o.throughput.length, 60);
  assert.deepEqual(o.queueHistory, [rows[0].n]);
  assert.ok(o.jobsets.some((j) => j.name === 'main' && j.queued === rows[0].n));
  const js = await d.jobsets();
  assert.equal(js.find((j) => j.name === 'main')!.shares, 100);
});

test('reproducibility checks page from hydra_ops.repro_checks', async () => {
  const d = source();
  assert.equal(await windows(d).countChecks(), 0);
  await pool.query(
    `INSERT INTO hydra_ops.repro_checks (build, drv_path, original_machine, check_machine, verdict, outputs, started_at)
     VALUES (1, '/nix/store/aaaa-x.drv', 'm1', 'm2', 'not-reproducible', '[{"name":"out","expected":"a","got":"b"},{"name":"doc","expected":"c","got":"c"}]', now())`,
  );
  const rows = await windows(d).pageChecks({kind: 'start'}, 10);
  assert.equal(rows.length, 1);
  assert.deepEqual(rows[0]!.differing, ['out']);
  assert.equal(rows[0]!.verdict, 'not-reproducible');
  // d: the latest check of a build (a second, newer one wins), null for a build never checked.
  await pool.query(
    `INSERT INTO hydra_ops.repro_checks (build, drv_path, original_machine, check_machine, verdict, outputs, diff_log_path, started_at)
     VALUES (1, '/nix/store/aaaa-x.drv', 'm1', 'm2', 'not-reproducible', '[]', '/var/lib/hydra/checks/2/diff.log', now())`,
  );
  const last = await d.lastCheck(1);
  assert.equal(last!.diffLogPath, '/var/lib/hydra/checks/2/diff.log');
  assert.ok(last!.id > rows[0]!.id);
  assert.equal(await d.lastCheck(2), null);
});

test('LISTEN: a queued build and a started step reach subscribers; busy-phase changes are found by polling', async () => {
  const d = source();
  const seen: string[] = [];
  const off = d.subscribe((w) => seen.push(w));
  const waitFor = async (what: string) => {
    const deadline = Date.now() + 5000;
    while (!seen.includes(what)) {
      if (Date.now() > deadline) throw new Error(`no ${what} event; got ${seen.join(',')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await new Promise((r) => setTimeout(r, 300));
  seen.length = 0;
  await pool.query("SELECT pg_notify('builds_added', '1')");
  await waitFor('queue');
  seen.length = 0;
  const b = await insertBuild(pool, {jobsetId});
  await insertBuildStep(pool, {build: b, busy: 10});
  await waitFor('steps');
  seen.length = 0;
  await pool.query('UPDATE BuildSteps SET busy = 30 WHERE build = $1', [b]);
  await waitFor('steps');
  off();
  await d.close();
  await pool.query('UPDATE BuildSteps SET busy = 0, status = 0, stoptime = starttime WHERE build = $1', [b]);
});

test('logs: the step log by derivation, plain and .bz2; missing logs explain themselves', async () => {
  const d = source();
  const drv = storePath('logged.drv');
  const b = await insertBuild(pool, {jobsetId, drvPath: drv});
  await insertBuildStep(pool, {build: b, drvPath: drv, busy: 30});
  await assert.rejects(() => d.openLog(b), /no log for .*logged\.drv \(looked for .*build-logs/);
  const path = drvLogBucketPath(dataDir, drv);
  mkdirSync(dirname(path), {recursive: true});
  writeFileSync(path, 'first\nsecond\nthird without newline');
  const log = await d.openLog(b);
  assert.equal(log.stepnr, 1);
  assert.equal(log.lineCount(), 3);
  assert.deepEqual(await log.lines(1, 5), ['second', 'third without newline']);
  appendFileSync(path, ' done\nfourth\n');
  assert.equal(await log.refresh(), true);
  assert.deepEqual(await log.lines(2, 5), ['third without newline done', 'fourth']);
  // truncation (a log is truncated once more after the input copy) re-indexes
  truncateSync(path, 0);
  writeFileSync(path, 'again\n');
  assert.equal(await log.refresh(), true);
  assert.deepEqual(await log.lines(0, 10), ['again']);
  await log.close();
  rmSync(path);
  writeFileSync(`${path}.src`, 'compressed one\ncompressed two\n');
  execFileSync('sh', ['-c', `bzip2 -c '${path}.src' > '${path}.bz2'`]);
  rmSync(`${path}.src`);
  const bz = await d.openLog(b, 1);
  assert.ok(bz.path.endsWith('.bz2'));
  assert.deepEqual(await bz.lines(0, 10), ['compressed one', 'compressed two']);
  await bz.close();
  await assert.rejects(() => d.openLog(b, 9), /build \d+ has no step 9/);
  const q = await insertBuild(pool, {jobsetId});
  await assert.rejects(() => d.openLog(q), /has not started yet/);
  await pool.query('UPDATE BuildSteps SET busy = 0, status = 0, stoptime = starttime WHERE build = $1', [b]);
});

test('a 1M-line log is indexed, not loaded: the last page and a search near the end stay fast', async () => {
  const file = join(dataDir, 'big.log');
  await new Promise<void>((resolve, reject) => {
    const out = createWriteStream(file);
    out.on('error', reject);
    const chunk: string[] = [];
    for (let i = 1; i <= 1_000_000; i++) {
      chunk.push(`building step output line ${i} ${i === 999_990 ? 'NEEDLE' : ''}`);
      if (chunk.length === 10_000) {
        out.write(chunk.join('\n') + '\n');
        chunk.length = 0;
      }
    }
    out.end(resolve);
  });
  const t0 = performance.now();
  const log = await LogFile.open(file);
  const openMs = performance.now() - t0;
  assert.equal(log.lineCount(), 1_000_000);
  const t1 = performance.now();
  const last = await log.lines(1_000_000 - 20, 20);
  const pageMs = performance.now() - t1;
  assert.equal(last.length, 20);
  assert.match(last[19]!, /line 1000000/);
  const t2 = performance.now();
  assert.equal(await log.search('needle', 999_000, false), 999_989);
  assert.equal(await log.search('needle', 999_999, true), 999_989);
  const searchMs = performance.now() - t2;
  await log.close();
  rmSync(file);
  process.stdout.write(`# 1M-line log: index ${openMs.toFixed(0)} ms, last page ${pageMs.toFixed(1)} ms, two searches ${searchMs.toFixed(0)} ms\n`);
  assert.ok(pageMs < 100, `last page took ${pageMs} ms`);
  assert.ok(openMs < 5000, `indexing took ${openMs} ms`);
});

test('runner status: REST and SystemStatus documents become one snapshot shape', async () => {
  const now = Date.now();
  const rest = parseRestStatus(
    {
      queueRunner: {
        status: 'up',
        uptime: 42.5,
        queueStats: {'x86_64-linux': {activeRunnable: 2, totalRunnable: 7, avgRunnableTime: 12}, 'x86_64-linux:kvm': {activeRunnable: 0, totalRunnable: 1}},
        nrActiveSteps: 2,
        dispatcherTimeSpentRunning: 100,
        dispatcherTimeSpentWaiting: 900,
        progress: {runnable: 6, stalled: true, stalledSeconds: 400, stallThresholdSeconds: 300, lastProgressAt: new Date(now - 400_000).toISOString()},
      },
      machines: {
        b1: {uri: 'ssh://b1', systems: ['x86_64-linux'], maxJobs: 2, speedFactor: 1, score: 1.5, supportedFeatures: ['kvm'], mandatoryFeatures: [], stats: {currentJobs: 2, consecutiveFailures: 0, disabledUntil: 0}, drained: false, listed: true, backingOff: false},
        b2: {uri: 'ssh://b2', systems: ['x86_64-linux'], maxJobs: 2, stats: {currentJobs: 0, consecutiveFailures: 2, disabledUntil: Math.floor(now / 1000) + 60}, backingOff: true, lastError: 'refused'},
      },
      jobsets: {'p:j': {shares: 100, shareUsed: 0.5}},
    },
    now,
    'rest',
  );
  assert.equal(rest.runnable, 6);
  assert.equal(rest.running, 2);
  assert.deepEqual(rest.machines.map((m) => m.state), ['full', 'backoff']);
  assert.equal(rest.machines[1]!.lastError, 'refused');
  assert.equal(rest.progress!.stalled, true);
  assert.equal(rest.dispatcherBusy, 0.1);
  assert.equal(rest.jobsets.get('p:j')!.shareUsed, 0.5);

  await pool.query("DELETE FROM SystemStatus WHERE what = 'queue-runner'");
  const ext = externalSource({address: '127.0.0.1:1', db: pool, timeoutMs: 300});
  assert.equal(await ext.snapshot(), null);
  const doc = {
    status: 'up',
    time: Math.floor(now / 1000),
    uptime: 99,
    nrRunnableSteps: 3,
    nrActiveSteps: 1,
    machines: {'ssh://root@b3': {enabled: true, systemTypes: ['aarch64-linux'], currentJobs: 1, consecutiveFailures: 0, disabledUntil: 0, drained: true}},
    jobsets: {'p:j': {shareUsed: 0.25, seconds: 10}},
    machineTypes: {'aarch64-linux': {runnable: 3, running: 1, waitTime: 30}},
  };
  await pool.query("INSERT INTO SystemStatus (what, status) VALUES ('queue-runner', $1)", [JSON.stringify(doc)]);
  const snap = await ext.snapshot();
  assert.equal(snap!.source, 'system-status');
  assert.equal(snap!.uptimeSec, 99);
  assert.equal(snap!.machines[0]!.name, 'b3');
  assert.equal(snap!.machines[0]!.state, 'drained');
  assert.deepEqual(parseCppStatus(doc, now).queueStats, [{systemType: 'aarch64-linux', runnable: 3, running: 1, avgWait: 10}]);
  await pool.query("DELETE FROM SystemStatus WHERE what = 'queue-runner'");
});

test('evals: keyset-paged newest first both ways with member counts, filtered, bounded per query; restart-failed and cancel-eval preview and act eval-wide', async () => {
  const js = await insertJobset(pool, {name: 'evs'});
  const other = await insertJobset(pool, {name: 'other-evs'});
  const {rows: err} = await pool.query(`INSERT INTO EvaluationErrors (errorMsg, errorTime) VALUES ('error: undefined variable ''foo''\nat line 3', 1) RETURNING id`);
  const ids: number[] = [];
  for (let i = 0; i < 60; i++) {
    const {rows} = await pool.query(
      `INSERT INTO JobsetEvals (jobset_id, evaluationerror_id, timestamp, checkoutTime, evalTime, hasNewBuilds, hash)
       VALUES ($1, $2, $3::int, 1, 2, $4, 'h' || $3::text) RETURNING id`,
      [i % 4 === 3 ? other.id : js.id, i === 5 ? err[0].id : null, 1700000000 + i, i < 3 ? 1 : 0],
    );
    ids.push(rows[0].id);
  }
  // The three newest-inserted-first evals get members: 1 succeeded, 2 failed, 3 queued (2 of them new).
  const member = async (e: number, f: {finished: number; buildStatus?: number}, isNew: number) => {
    const b = await insertBuild(pool, {jobsetId: js.id, finished: f.finished, buildStatus: f.buildStatus ?? null});
    await pool.query('INSERT INTO JobsetEvalMembers (eval, build, isNew) VALUES ($1, $2, $3)', [e, b, isNew]);
    return b;
  };
  const e0 = ids[0]!;
  await member(e0, {finished: 1, buildStatus: 0}, 1);
  const failed = [await member(e0, {finished: 1, buildStatus: 1}, 1), await member(e0, {finished: 1, buildStatus: 7}, 0)];
  const queued = [await member(e0, {finished: 0}, 0), await member(e0, {finished: 0}, 0), await member(e0, {finished: 0}, 0)];

  const d = source({admin: true});
  const walkEvals = async (filter: string | null, dir: 'down' | 'up') => {
    const seen: number[] = [];
    let anchor: Anchor = {kind: dir === 'down' ? 'start' : 'end'};
    for (let i = 0; i < 20; i++) {
      const rows = await windows(d).pageEvals({filter, anchor, limit: 25});
      if (dir === 'down') seen.push(...rows.map((r) => r.id));
      else seen.unshift(...rows.map((r) => r.id));
      if (rows.length < 25) break;
      anchor = dir === 'down' ? {kind: 'after', key: [rows.at(-1)!.id]} : {kind: 'before', key: [rows[0]!.id]};
    }
    return seen;
  };
  const all = await walkEvals(null, 'down');
  const inDb = (await pool.query('SELECT id FROM JobsetEvals ORDER BY id DESC')).rows.map((r) => r.id);
  assert.deepEqual(all, inDb);
  assert.deepEqual(await walkEvals(null, 'up'), inDb);
  assert.equal(await windows(d).countEvals(null), inDb.length);
  const mine = await walkEvals(`jobset:${js.project}:evs`, 'down');
  assert.deepEqual(mine, ids.filter((_, i) => i % 4 !== 3).reverse());
  assert.equal(await windows(d).countEvals(`jobset:${js.project}:evs`), mine.length);
  await assert.rejects(() => windows(d).pageEvals({filter: 'colour:red', anchor: {kind: 'start'}, limit: 5}), FilterError);

  const [row] = await windows(d).pageEvals({filter: null, anchor: {kind: 'from', key: [e0]}, limit: 1});
  assert.deepEqual(
    {id: row!.id, project: row!.project, jobset: row!.jobset, builds: row!.builds, new: row!.new, succeeded: row!.succeeded, failed: row!.failed, queued: row!.queued, error: row!.error},
    {id: e0, project: js.project, jobset: 'evs', builds: 6, new: 2, succeeded: 1, failed: 2, queued: 3, error: null},
  );
  const [withError] = await windows(d).pageEvals({filter: null, anchor: {kind: 'from', key: [ids[5]!]}, limit: 1});
  assert.equal(withError!.error, "error: undefined variable 'foo'");

  // Bounded: no query of a page returns more rows than the page holds.
  const sizes: number[] = [];
  const counting = {query: async (text: string, params?: unknown[]) => {
    const r = await pool.query(text, params);
    sizes.push(r.rows.length);
    return r;
  }} as unknown as Queryable;
  await pageEvals(counting, {filter: null, anchor: {kind: 'start'}, limit: 10});
  assert.ok(sizes.length >= 2 && Math.max(...sizes) <= 10, `rows per query: ${sizes.join(', ')}`);

  // Hydra's eval actions: the preview names exactly the failed (or queued) members; confirming acts on them.
  const preview = await d.act({kind: 'restart-failed', eval: e0, dryRun: true});
  assert.equal(preview.ok, true, preview.message);
  assert.deepEqual(preview.changed, failed);
  assert.match(preview.scope!, new RegExp(`in ${js.project}:evs \\(2 not running, 0 running\\)`));
  assert.equal((await pool.query('SELECT count(*)::int AS n FROM Builds WHERE id = ANY($1) AND finished = 1', [failed])).rows[0].n, 2);
  const cancel = await d.act({kind: 'cancel-eval', eval: e0, dryRun: false});
  assert.deepEqual(cancel.changed, queued);
  assert.match(cancel.message, new RegExp(`eval ${e0}: cancelled 3 of 3 queued build\\(s\\)`));
  assert.equal((await pool.query('SELECT count(*)::int AS n FROM Builds WHERE id = ANY($1) AND finished = 1 AND buildStatus = 4', [queued])).rows[0].n, 3);
  const restart = await d.act({kind: 'restart-failed', eval: e0});
  // Cancelled builds count as failed for Hydra's "restart failed" (buildStatus != 0): all five are restarted.
  assert.deepEqual(restart.changed!.sort((a, b) => a - b), [...failed, ...queued].sort((a, b) => a - b));
  const audit = await pool.query("SELECT action, scope, result_count FROM hydra_ops.audit_log WHERE action IN ('restart-failed', 'cancel-eval') ORDER BY id");
  // The preview is audited too (as Hydra-ops audits every dry run), then the two real actions.
  assert.deepEqual(audit.rows.map((r) => [r.action, r.scope, r.result_count]), [['restart-failed', `eval ${e0}`, 2], ['cancel-eval', `eval ${e0}`, 3], ['restart-failed', `eval ${e0}`, 5]]);
  // Read-only: refused with the reason, nothing changed.
  const ro = await source({readonly: true}).act({kind: 'cancel-eval', eval: e0});
  assert.equal(ro.ok, false);
  assert.equal(ro.refusal, 'readonly');
  await d.close();
});

test('runner internals: null without a runner; from a REST /status document with the ingestion rate between two reads', async () => {
  assert.equal(await source().runnerStats(), null);
  let read = 100;
  const doc = () => ({
    queueRunner: {status: 'up', uptime: 60, nrDispatcherWakeups: 10, dispatchTimeMs: 50, lastDispatchMs: 4, nrBuildsRead: read, buildReadTimeMs: 200, nrQueueWakeups: 7,
      dbPool: {total: 5, idle: 3, waiting: 1}, nrRetries: 2, maxNrRetries: 1, nrUnsupportedSteps: 4, nrUnsupportedStepsAborted: 1, nrActiveSteps: 2, dispatcherTimeSpentRunning: 25, dispatcherTimeSpentWaiting: 75},
    machines: {},
    jobsets: {},
  });
  const runner = externalSource({address: '127.0.0.1:1', db: pool, fetch: (async () => new Response(JSON.stringify(doc()), {status: 200})) as typeof fetch});
  const d = source({runner});
  const first = await d.runnerStats();
  assert.equal(first!.source, 'runner at 127.0.0.1:1 (REST /status)');
  assert.deepEqual(first!.dispatch, {rounds: 10, totalMs: 50, avgMs: 5, lastMs: 4, busyShare: 0.25});
  assert.deepEqual(first!.dbPool, {total: 5, idle: 3, waiting: 1});
  assert.equal(first!.queueWakeups, 7);
  assert.deepEqual(first!.retries, {count: 2, max: 1});
  assert.deepEqual(first!.unsupported, {steps: 4, aborted: 1});
  assert.equal(first!.ingest.perSec, null, 'no rate from a single reading');
  read = 160;
  await new Promise((r) => setTimeout(r, 1100)); // past the ~1 s snapshot cache
  const second = await d.runnerStats();
  assert.ok(second!.ingest.perSec! > 0 && second!.ingest.perSec! <= 60 / 1.1 + 1, String(second!.ingest.perSec));
  // The C++ SystemStatus shape carries the same counters under its own names.
  const cpp = parseCppStatus({status: 'up', time: 1, nrDispatcherWakeups: 3, dispatchTimeMs: 9, dispatchTimeAvgMs: 3, nrDbConnections: 4, nrActiveDbUpdates: 1, nrQueueWakeups: 2, nrRetries: 0, maxNrRetries: 0, nrUnsupportedSteps: 1}, 0);
  assert.deepEqual(cpp.stats.dispatch, {rounds: 3, totalMs: 9, avgMs: 3, lastMs: null, busyShare: null});
  assert.deepEqual(cpp.stats.dbPool, {total: 4, idle: 3, waiting: null});
  await d.close();
});

test('every sort column of the Builds view pages in SQL both ways, forwards and reversed, ties broken by id; mark-all counts are the action’s', async () => {
  // A jobset of its own with many ties: 3 priorities, 4 stop times, unfinished and finished rows.
  const js = await insertJobset(pool, {name: 'sorts'});
  const M = 61;
  await pool.query(
    `INSERT INTO Builds (finished, timestamp, jobset_id, job, nixName, drvPath, system, maxsilent, timeout, isCurrent, priority, globalPriority,
                         startTime, stopTime, isCachedBuild, buildStatus, keep)
     SELECT CASE WHEN i % 3 = 0 THEN 0 ELSE 1 END, 1700000000 + i, $1, 'sort' || i, 'sort' || i, '/nix/store/' || lpad(i::text, 32, 'c') || '-sort' || i || '.drv',
            'x86_64-linux', 7200, 36000, 1, 100, (i % 3) * 1000,
            CASE WHEN i % 3 != 0 THEN 1700001000 END, CASE WHEN i % 3 != 0 THEN 1700002000 + (i % 4) * 10 END,
            CASE WHEN i % 3 != 0 THEN 0 END, CASE WHEN i % 3 != 0 THEN i % 2 END, 0
       FROM generate_series(1, ${M}) AS i`,
    [js.id],
  );
  const d = source({admin: true});
  const filter = 'jobset:sorts';
  const reference: Record<BuildOrder, string> = {
    'id-desc': 'TRUE ORDER BY b.id DESC',
    queue: 'b.finished = 0 ORDER BY b.globalpriority DESC, b.id ASC',
    stoptime: 'b.finished = 1 AND b.stoptime IS NOT NULL ORDER BY b.stoptime DESC, b.id DESC',
  };
  const flip = (sql: string) => sql.replace(/\b(DESC|ASC)\b/g, (m) => (m === 'DESC' ? 'ASC' : 'DESC'));
  for (const order of BUILD_SORT_CYCLE) {
    for (const reverse of [false, true]) {
      const sql = reverse ? flip(reference[order]) : reference[order];
      const {rows} = await pool.query(`SELECT b.id FROM Builds b WHERE b.jobset_id = $1 AND ${sql}`, [js.id]);
      const want = rows.map((r) => r.id as number);
      assert.ok(want.length > 10, `${order}: enough rows`);
      for (const dir of ['down', 'up'] as const) {
        const seen: number[] = [];
        let anchor: Anchor = {kind: dir === 'down' ? 'start' : 'end'};
        for (let i = 0; i < 50; i++) {
          const page = await windows(d).pageBuilds({filter, order, reverse, anchor, limit: 7});
          assert.ok(page.length <= 7, 'a page is bounded');
          if (page.length === 0) break;
          if (dir === 'down') {
            seen.push(...page.map((r) => r.id));
            anchor = {kind: 'after', key: buildKey(page[page.length - 1]!, order)};
          } else {
            seen.unshift(...page.map((r) => r.id));
            anchor = {kind: 'before', key: buildKey(page[0]!, order)};
          }
          if (page.length < 7) break;
        }
        assert.deepEqual(seen, want, `${order}${reverse ? ' reversed' : ''} paged ${dir}`);
      }
      // A refresh in place ('from') starts at the same row, in the middle of a run of ties.
      const mid = await windows(d).pageBuilds({filter, order, reverse, anchor: {kind: 'start'}, limit: 12});
      const again = await windows(d).pageBuilds({filter, order, reverse, anchor: {kind: 'from', key: buildKey(mid[5]!, order)}, limit: 3});
      assert.deepEqual(again.map((r) => r.id), want.slice(5, 8), `${order}${reverse ? ' reversed' : ''} from`);
      assert.equal(await windows(d).countBuilds({filter, order}), want.length, `${order}: count`);
    }
  }
  // Mark-all: the selection is the filter plus the sort's scope; its SQL count is exactly what the action previews.
  for (const order of BUILD_SORT_CYCLE) {
    const selection = markAllSelection({...initialState({size: {columns: 80, rows: 24}}), order, filters: {builds: filter, steps: null, machines: null, evals: null}});
    const count = await windows(d).countBuilds({filter: selection, order: 'id-desc'});
    assert.equal(count, await windows(d).countBuilds({filter, order}), `${order}: the mark-all count is the view's`);
    // restart's targets are the whole selection (it changes the finished ones); bump's the unfinished ones.
    const restart = await d.act({kind: 'restart', filter: selection, dryRun: true});
    const bump = await d.act({kind: 'bump', filter: selection, dryRun: true});
    assert.ok(bump.ok && restart.ok, `${bump.message} / ${restart.message}`);
    assert.equal(restart.targets!.length, count, `${order}: restart dry run over the selection`);
    assert.equal(bump.targets!.length, await windows(d).countBuilds({filter: `${selection} status:queued`, order: 'id-desc'}), `${order}: bump dry run`);
  }
  const cancel = await d.act({kind: 'cancel', filter: `${filter} status:queued`, dryRun: true});
  assert.equal(cancel.changed!.length, Math.floor(M / 3));
  const {rows: still} = await pool.query('SELECT count(*)::int AS n FROM Builds WHERE jobset_id = $1 AND finished = 0', [js.id]);
  assert.equal(still[0].n, Math.floor(M / 3), 'a dry run changes nothing');
  await assert.rejects(() => windows(d).countBuilds({filter: 'jobset:sorts colour:red', order: 'id-desc'}), FilterError);
  await d.close();
});

test('the last hour by minute: each machine\'s jobs/maxJobs from the runner\'s reports, each system\'s queue from SQL; bounded to 60 minutes', async () => {
  let jobs = 0;
  const doc = () => ({
    queueRunner: {status: 'up'},
    machines: {
      b1: {uri: 'ssh://b1', systems: ['x86_64-linux'], maxJobs: 4, stats: {currentJobs: jobs, lastPing: 1700000000}},
      gone: {uri: 'ssh://gone', systems: ['x86_64-linux'], maxJobs: 2, listed: false, stats: {currentJobs: 1}},
    },
    jobsets: {},
  });
  const runner = externalSource({address: '127.0.0.1:1', db: pool, fetch: (async () => new Response(JSON.stringify(doc()), {status: 200})) as typeof fetch});
  const t0 = Math.floor(Date.now() / 3600_000) * 3600_000; // a minute boundary
  let now = t0;
  const d = source({runner, now: () => now});
  // Minute 0: 0 of 4 and 2 of 4 (mean 0.25); minute 1: 4 of 4.
  for (const [at, j] of [[0, 0], [20_000, 2], [60_000, 4]] as const) {
    now = t0 + at;
    jobs = j;
    await d.machines(null);
  }
  const [b1, gone] = await d.machines(null);
  assert.equal(b1!.usage!.length, 60);
  assert.deepEqual(b1!.usage!.slice(-2), [0.25, 1]);
  assert.deepEqual(b1!.usage!.slice(0, 58), Array(58).fill(null), 'minutes before the first report have no sample');
  assert.equal(gone!.usage, undefined, 'a machine the runner no longer lists is not sampled');
  assert.deepEqual(b1!.lastPing, {at: 1700000000_000, ok: null}, "the runner's last ping (the Rust runner's stats.lastPing)");
  // An hour later the old minutes have left the window.
  now = t0 + 3600_000 + 60_000;
  jobs = 1;
  const [later] = await d.machines(null);
  assert.deepEqual(later!.usage!.filter((v) => v !== null), [0.25], 'only this minute: the hour before is gone');

  // Queues per system, from SQL (re-read at most every 10 s), one value a minute.
  const {rows} = await pool.query<{system: string; n: number}>('SELECT system, count(*)::int AS n FROM Builds WHERE finished = 0 GROUP BY system');
  const q = source({now: () => now});
  await q.overview();
  now += 60_000;
  const o = await q.overview();
  for (const r of rows) {
    const s = o.systems.find((x) => x.system === r.system)!;
    assert.deepEqual(s.history!.slice(-2), [r.n, r.n], r.system);
    assert.equal(s.history!.length, 60);
  }
  await d.close();
  await q.close();
});

test('capabilities: checks need a machine to rebuild on; read-only and unknown users are refused with the reason', async () => {
  assert.deepEqual(await source({admin: true}).capabilities(), {readonly: null, admin: null, checks: null, user: 'nobody'});
  const none = await source({admin: true, machines: []}).capabilities();
  assert.equal(none.checks, 'no build machine to rebuild on: the machines files list none');
  const ro = await source({readonly: true}).capabilities();
  assert.match(ro.readonly!, /read-only/);
  const unknown = await source({user: 'nobody-here'}).capabilities();
  assert.match(unknown.readonly!, /Hydra user "nobody-here" is unknown/);
  assert.equal(unknown.checks, null);
});
