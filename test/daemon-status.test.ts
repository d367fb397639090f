import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {statusFixture, type StatusFixture} from './support/status-scheduler.js';
import {
  assertValid,
  buildActiveSchema,
  buildsSchema,
  cppStatusSchema,
  progressSchema,
  queuesSchema,
  restJobsetsSchema,
  restMachinesSchema,
  restStatusSchema,
  runnableListSchema,
  stepListSchema,
} from './support/status-schemas.js';
import {cppStatus} from '../source/daemon/status-cpp.js';
import {machineKeys} from '../source/daemon/status-common.js';
import {restProgress} from '../source/daemon/status-progress.js';
import {restBuildActive, restBuilds, restQueues, restRunnable, restSteps} from '../source/daemon/status-lists.js';
import {restJobsets, restMachines, restStatus} from '../source/daemon/status.js';
import {escapeLabelValue, renderMetrics} from '../source/daemon/metrics.js';
import {SystemStatusPublisher} from '../source/daemon/system-status.js';
import {Scheduler} from '../source/scheduler/scheduler.js';

let fx: StatusFixture;
before(async () => {
  fx = await statusFixture('status');
});
after(async () => {
  await fx?.close();
});

type Doc = Record<string, any>;

test('C++ status document (Hydra\'s State::dumpStatus): shape, keys and counts from the scheduler state', () => {
  const doc = cppStatus(fx.scheduler, fx.now) as Doc;
  assertValid(cppStatusSchema, doc, 'cppStatus');
  assert.equal(doc.status, 'up');
  assert.equal(doc.time, Math.floor(fx.now / 1000));
  assert.equal(doc.pid, process.pid);
  assert.equal(doc.nrQueuedBuilds, 6);
  assert.equal(doc.nrActiveSteps, 2);
  assert.equal(doc.nrStepsBuilding, 1);
  assert.equal(doc.nrStepsCopyingTo, 1);
  assert.equal(doc.nrStepsCopyingFrom, 0);
  assert.equal(doc.nrStepsWaitingForDownloadSlot, 0);
  assert.equal(doc.nrUnfinishedSteps, 7);
  assert.equal(doc.nrRunnableSteps, 4);
  assert.equal(doc.buildReadTimeAvgMs, 20);
  assert.equal(doc.totalStepTime, 405);
  assert.equal(doc.avgStepTime, 81);
  // Machines keyed by store URI; a machine dropped from the machines file stays, disabled.
  assert.deepEqual(Object.keys(doc.machines).sort(), [
    'localhost',
    'ssh://hydra@builder1',
    'ssh://hydra@builder2',
    'ssh://hydra@old-builder',
    'ssh://root@127.0.0.1:2201',
    'ssh://root@127.0.0.1:2202',
  ]);
  assert.equal(doc.machines['ssh://hydra@old-builder'].enabled, false);
  assert.equal(doc.machines['ssh://hydra@builder1'].enabled, true);
  assert.equal(doc.machines['ssh://hydra@builder1'].idleSince, undefined, 'idleSince only when idle');
  assert.equal(typeof doc.machines['localhost'].idleSince, 'number');
  assert.equal(doc.machines['ssh://hydra@builder1'].avgStepBuildTime, 75);
  assert.equal(doc.machines['localhost'].avgStepTime, undefined, 'averages only after a step');
  const b2 = doc.machines['ssh://hydra@builder2'];
  assert.equal(b2.consecutiveFailures, 2);
  assert.equal(b2.disabledUntil, Math.floor((fx.now + 170_000) / 1000));
  assert.match(b2.lastError, /Connection refused/);
  assert.equal(b2.sinceLastUsed, 90);
  // Jobsets keyed project:jobset.
  assert.deepEqual(doc.jobsets['nixpkgs:trunk'], {shareUsed: 36, seconds: 3600});
  assert.deepEqual(doc.jobsets['hydra:main"quoted\\'], {shareUsed: 0, seconds: 0});
  // Machine types keyed by system type: runnable = waiting for a machine, running = on one.
  assert.deepEqual(
    Object.fromEntries(Object.entries(doc.machineTypes as Doc).map(([k, v]) => [k, [v.runnable, v.running]])),
    {'x86_64-linux': [2, 1], 'x86_64-linux:big-parallel': [1, 0], 'aarch64-darwin': [1, 0], 'x86_64-linux:kvm': [0, 1]},
  );
  assert.ok(doc.machineTypes['x86_64-linux'].waitTime >= 240);
  // It must survive JSON (SystemStatus.status is json).
  assert.deepEqual(JSON.parse(JSON.stringify(doc)), doc);
});

test('a scheduler with nothing in it still gives valid documents (missing data is omitted or null)', () => {
  const empty = new Scheduler({...fx.scheduler.options});
  const cpp = cppStatus(empty) as Doc;
  assertValid(cppStatusSchema, cpp, 'empty cppStatus');
  assert.equal(cpp.avgStepTime, undefined);
  assert.deepEqual(cpp.machines, {});
  assertValid(restStatusSchema, restStatus(empty), 'empty restStatus');
  assertValid(restMachinesSchema, restMachines(empty), 'empty restMachines');
  assertValid(stepListSchema, restSteps(empty), 'empty restSteps');
  assertValid(runnableListSchema, restRunnable(empty), 'empty restRunnable');
  assertValid(queuesSchema, restQueues(empty), 'empty restQueues');
  const p = restProgress(empty);
  assertValid(progressSchema, p, 'empty progress');
  assert.equal(p.stalled, false);
  assert.deepEqual(restBuildActive(empty, 1, false), {active: false, queued: false, steps: []});
});

test('REST /status (the Rust runner\'s document) carries every field hydra-send-stats reads', () => {
  const doc = restStatus(fx.scheduler, fx.now) as Doc;
  assertValid(restStatusSchema, doc, 'restStatus');
  const q = doc.queueRunner;
  assert.equal(q.time, new Date(fx.now).toISOString());
  for (const f of ['status', 'nrStepsBuilding', 'nrStepsRunnable', 'nrStepsUnfinished', 'nrStepsDone', 'nrRetries', 'nrUnsupportedSteps', 'maxNrRetries', 'avgStepTimeMs', 'avgStepBuildTimeMs', 'nrBuildsRead', 'nrBuildsUnfinished', 'nrBuildsDone', 'nrQueueWakeups', 'machinesTotal', 'machinesInUse']) {
    assert.ok(f in q, `queueRunner.${f}`);
    assert.notEqual(q[f], null, `queueRunner.${f} is null`);
  }
  assert.equal(q.machinesTotal, 5, 'the unlisted machine is not counted');
  assert.equal(q.machinesInUse, 2);
  assert.equal(q.avgStepTimeMs, 81_000);
  // Keyed by platform: the x86_64-linux:kvm and :big-parallel steps count under x86_64-linux.
  assert.deepEqual(Object.keys(q.queueStats).sort(), ['aarch64-darwin', 'x86_64-linux']);
  assert.deepEqual(q.queueStats['x86_64-linux'], {activeRunnable: 2, totalRunnable: 5, nrRunnableWaiting: 2, nrRunnableDisabled: 1, avgRunnableTime: q.queueStats['x86_64-linux'].avgRunnableTime, waitTimeMs: q.queueStats['x86_64-linux'].waitTimeMs});
  assert.ok(q.queueStats['x86_64-linux'].avgRunnableTime >= 120);
  assert.deepEqual(q.supportedFeatures, ['kvm']);
  assert.equal(doc.store, null);
  assert.deepEqual(Object.keys(doc.jobsets).sort(), ['hydra:main"quoted\\', 'nixpkgs:trunk']);
});

test('REST /status/machines: keyed by host name, the fields Hydra\'s getMachines reads, last error and time since last use', () => {
  const doc = restMachines(fx.scheduler, fx.now) as Doc;
  assertValid(restMachinesSchema, doc, 'restMachines');
  assert.equal(doc.machinesCount, 6);
  assert.deepEqual(Object.keys(doc.machines).sort(), ['127.0.0.1:2201', '127.0.0.1:2202', 'builder1', 'builder2', 'localhost', 'old-builder']);
  const b1 = doc.machines.builder1;
  assert.equal(b1.hostname, 'builder1');
  assert.equal(b1.uri, 'ssh://hydra@builder1');
  assert.equal(b1.score, 1);
  assert.deepEqual([b1.hasCapacity, b1.hasDynamicCapacity, b1.hasStaticCapacity], [true, true, true]);
  assert.deepEqual(b1.jobs, [fx.steps.compiling.drvPath]);
  assert.equal(b1.stats.nrStepsDone, 4);
  assert.equal(b1.stats.avgStepBuildTimeMs, 75_000);
  assert.equal(b1.sinceLastUsed, 30);
  assert.equal(b1.lastError, null);
  const b2 = doc.machines.builder2;
  assert.deepEqual([b2.hasCapacity, b2.hasDynamicCapacity, b2.hasStaticCapacity], [false, false, false]);
  assert.equal(b2.backingOff, true);
  assert.equal(b2.lastError, 'ssh: connect to host builder2 port 22: Connection refused');
  assert.equal(b2.lastErrorAt, Math.floor((fx.now - 10_000) / 1000));
  assert.equal(b2.stats.consecutiveFailures, 2);
  assert.equal(b2.stats.currentUploadingPathCount, 1);
  const local = doc.machines.localhost;
  assert.equal(local.drained, true);
  assert.deepEqual([local.hasCapacity, local.hasDynamicCapacity, local.hasStaticCapacity], [false, false, true]);
  assert.equal(local.sinceLastUsed, null, 'never used');
  assert.equal(doc.machines['old-builder'].listed, false);
  assert.equal(doc.machines['old-builder'].sinceLastUsed, 7200);
});

test('machine keys fall back to host:port, then the URI, when host names collide', () => {
  const ms = [...fx.scheduler.machines.values()];
  const a = {...ms[0]!, spec: {...ms[0]!.spec, uri: 'ssh://a@h', host: 'h', port: undefined}};
  const b = {...ms[0]!, spec: {...ms[0]!.spec, uri: 'ssh://b@h', host: 'h', port: undefined}};
  const c = {...ms[0]!, spec: {...ms[0]!.spec, uri: 'ssh://c@h:22', host: 'h', port: 22}};
  const keys = machineKeys([a, b, c]);
  assert.deepEqual([keys.get(a), keys.get(b), keys.get(c)], ['ssh://a@h', 'ssh://b@h', 'h:22']);
});

test('REST /status/jobsets and /status/builds', () => {
  const j = restJobsets(fx.scheduler) as Doc;
  assertValid(restJobsetsSchema, j, 'restJobsets');
  assert.equal(j.jobsetCount, 2);
  assert.deepEqual(j.jobsets['nixpkgs:trunk'], {id: 1, projectName: 'nixpkgs', name: 'trunk', seconds: 3600, shares: 100, shareUsed: 36});
  const b = restBuilds(fx.scheduler, {limit: 4}) as Doc;
  assertValid(buildsSchema, b, 'restBuilds');
  assert.equal(b.buildCount, 6);
  assert.deepEqual(b.builds.map((x: Doc) => x.id), [101, 102, 103, 104]);
});

test('REST steps, runnable and queues: every waiting step says why (docs/hydra-compat.md, "Status documents and metrics")', () => {
  const steps = restSteps(fx.scheduler, undefined, fx.now) as Doc;
  assertValid(stepListSchema, steps, 'restSteps');
  assert.equal(steps.stepCount, 7);
  assert.equal(steps.limit, 1000);
  const reason = (drv: string) => steps.steps.find((s: Doc) => s.drvPath === drv).waitingReason as string;
  assert.match(reason(fx.steps.app.drvPath), /^waiting for 1 dependency: hello$/);
  assert.match(reason(fx.steps.kernel.drvPath), /no machine for system x86_64-linux supports the required features big-parallel/);
  assert.match(reason(fx.steps.darwin.drvPath), /no machine supports system aarch64-darwin/);
  assert.match(reason(fx.steps.retrying.drvPath), /waiting to retry at .* \(attempt 2\); last error: error: connection reset by peer/);
  assert.equal(reason(fx.steps.compiling.drvPath), 'running');
  assert.equal(reason(fx.steps.hello.drvPath), 'queued behind higher-priority steps');
  const kernel = steps.steps.find((s: Doc) => s.drvPath === fx.steps.kernel.drvPath);
  assert.deepEqual(kernel.requiredFeatures, ['big-parallel']);
  assert.equal(kernel.systemType, 'x86_64-linux:big-parallel');
  assert.equal(kernel.runnableSince, new Date(fx.now - 120_000).toISOString());
  const compiling = steps.steps.find((s: Doc) => s.drvPath === fx.steps.compiling.drvPath);
  assert.deepEqual([compiling.alreadyScheduled, compiling.machine, compiling.build], [true, 'ssh://hydra@builder1', 104]);

  const limited = restSteps(fx.scheduler, {limit: 2}, fx.now) as Doc;
  assertValid(stepListSchema, limited, 'restSteps limit 2');
  assert.equal(limited.steps.length, 2);
  assert.equal(limited.stepCount, 7);

  const runnable = restRunnable(fx.scheduler, undefined, fx.now) as Doc;
  assertValid(runnableListSchema, runnable, 'restRunnable');
  assert.equal(runnable.stepCount, 4);
  // Dispatch order: the priority-10 kernel first; positions count from 1.
  assert.equal(runnable.steps[0].drvPath, fx.steps.kernel.drvPath);
  assert.deepEqual(runnable.steps.map((s: Doc) => s.position), [1, 2, 3, 4]);

  const queues = restQueues(fx.scheduler, undefined, fx.now) as Doc;
  assertValid(queuesSchema, queues, 'restQueues');
  // Keyed by platform like the Rust runner; each step still names its system type.
  assert.deepEqual(Object.keys(queues.queues), ['aarch64-darwin', 'x86_64-linux']);
  assert.deepEqual([...new Set(queues.queues['x86_64-linux'].map((s: Doc) => s.systemType))].sort(), ['x86_64-linux', 'x86_64-linux:big-parallel', 'x86_64-linux:kvm']);
  assert.equal(queues.queues['x86_64-linux'][0].drvPath, fx.steps.compiling.drvPath, 'running steps first');
  assert.equal(queues.queueSizes['x86_64-linux'], 5);
  const one = restQueues(fx.scheduler, {limit: 1}, fx.now) as Doc;
  assert.equal(one.queues['x86_64-linux'].length, 1);
  assert.equal(one.queueSizes['x86_64-linux'], 5);
});

test('REST /status/build/<id>/active: active is the database answer (unfinished), queued and steps are this runner\'s', () => {
  for (const id of [104, 101, 999]) assertValid(buildActiveSchema, restBuildActive(fx.scheduler, id, id !== 999), `build ${id}`);
  assert.deepEqual(restBuildActive(fx.scheduler, 104, true), {active: true, queued: true, steps: [fx.steps.compiling.drvPath]});
  assert.deepEqual(restBuildActive(fx.scheduler, 101, true), {active: true, queued: true, steps: []});
  assert.deepEqual(restBuildActive(fx.scheduler, 999, false), {active: false, queued: false, steps: []});
});

test('progress indicator: stalled only with runnable work, free capable capacity and no recent progress', () => {
  const s = fx.scheduler;
  const p = restProgress(s, fx.now, 300);
  assertValid(progressSchema, p, 'progress');
  assert.equal(p.runnable, 4);
  assert.equal(p.running, 2);
  // builder1 1 free slot + two 127.0.0.1 machines × 2; builder2 backs off, localhost is drained.
  assert.equal(p.idleCapacity, 5);
  assert.equal(p.capacityForRunnable, true);
  assert.equal(p.stalledSeconds, 600);
  assert.equal(p.stalled, true);
  assert.equal(restProgress(s, fx.now, 900).stalled, false, 'below the threshold');

  const saved = s.stats.lastProgressAt;
  s.stats.lastProgressAt = fx.now - 5000;
  try {
    assert.deepEqual([restProgress(s, fx.now, 300).stalledSeconds, restProgress(s, fx.now, 300).stalled], [5, false]);
  } finally {
    s.stats.lastProgressAt = saved;
  }
  // No free machine that can take any waiting step: waiting is not a stall.
  const free = [...s.machines.values()].filter((m) => m.spec.host === '127.0.0.1' || m.spec.host === 'builder1');
  for (const m of free) m.rt.drained = true;
  try {
    const q = restProgress(s, fx.now, 300);
    assert.deepEqual([q.capacityForRunnable, q.stalledSeconds, q.stalled, q.idleCapacity], [false, 0, false, 0]);
  } finally {
    for (const m of free) m.rt.drained = false;
  }
});

// ------------------------------------------------------------------ Prometheus

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$/;

/** Parses the text format strictly: HELP/TYPE comments, then samples of the declared families. */
export function parseExposition(text: string): Map<string, {type: string; samples: Array<{labels: string; value: number}>}> {
  const families = new Map<string, {type: string; samples: Array<{labels: string; value: number}>}>();
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.startsWith('# HELP ')) continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      assert.ok(!families.has(type[1]!), `family ${type[1]} declared twice`);
      families.set(type[1]!, {type: type[2]!, samples: []});
      continue;
    }
    assert.ok(!line.startsWith('#'), `unexpected comment line: ${line}`);
    const m = SAMPLE.exec(line);
    assert.ok(m, `not a sample line: ${JSON.stringify(line)}`);
    const family = families.get(m[1]!);
    assert.ok(family, `sample ${m[1]} before its TYPE line`);
    const value = Number(m[3]);
    assert.ok(!Number.isNaN(value), `value of ${line}`);
    family.samples.push({labels: m[2] ?? '', value});
  }
  return families;
}

const RUST_NAMES = [
  'queue_checks_started_total', 'queue_build_loads_total', 'queue_steps_created_total', 'queue_checks_early_exits_total', 'queue_checks_finished_total',
  'dispatcher_time_spent_running_total', 'dispatcher_time_spent_waiting_total', 'monitor_time_spent_running_total', 'monitor_time_spent_waiting_total',
  'builds_read', 'builds_read_time_ms', 'builds_unfinished', 'builds_finished', 'builds_succeeded', 'builds_failed', 'steps_started', 'steps_finished',
  'steps_building', 'steps_waiting', 'steps_runnable', 'steps_unfinished', 'steps_unsupported', 'steps_unsupported_aborted', 'substitutes_started',
  'substitutes_failed', 'substitutes_succeeded', 'steps_retries', 'steps_max_retries', 'steps_copying_to', 'steps_copying_from', 'steps_avg_total_time_ms',
  'steps_avg_build_time_ms', 'steps_total_time_ms', 'steps_total_build_time_ms', 'monitor_checks', 'dispatch_wakeup', 'dispatch_time_ms', 'machines_total',
  'machines_in_use', 's3_uploads_pending', 'machine_type_runnable', 'machine_type_running', 'machine_type_waiting', 'machine_type_disabled',
  'machine_type_avg_runnable_time', 'machine_type_wait_time', 'machine_current_jobs', 'machine_steps_done', 'machine_total_step_time_ms',
  'machine_total_step_build_time_ms', 'machine_consecutive_failures', 'machine_idle_since_timestamp', 'jobset_share_used', 'jobset_seconds',
  'current_time_seconds', 'uptime_seconds',
].map((n) => `hydraqueuerunner_${n}`);

const CPP_COUNTERS = [
  'queue_checks_started_total', 'queue_build_loads_total', 'queue_steps_created_total', 'queue_checks_early_exits_total', 'queue_checks_finished_total',
  'dispatcher_time_spent_running', 'dispatcher_time_spent_waiting', 'queue_monitor_time_spent_running', 'queue_monitor_time_spent_waiting',
].map((n) => `hydraqueuerunner_${n}`);

test('Prometheus exposition parses, has the Rust names and the nine C++ counters, escapes labels', () => {
  const text = renderMetrics(fx.scheduler, {now: fx.now});
  const families = parseExposition(text);
  for (const name of [...RUST_NAMES, ...CPP_COUNTERS]) assert.ok(families.has(name), `missing ${name}`);
  for (const name of CPP_COUNTERS) assert.equal(families.get(name)!.type, 'counter', name);
  const value = (name: string, labels = '') => families.get(`hydraqueuerunner_${name}`)!.samples.find((s) => s.labels === labels)?.value;
  assert.equal(value('dispatcher_time_spent_running'), 6500);
  assert.equal(value('queue_monitor_time_spent_running'), 90_000);
  assert.equal(value('steps_runnable'), 4);
  assert.equal(value('steps_building'), 1);
  assert.equal(value('steps_copying_to'), 1);
  assert.equal(value('machines_total'), 5);
  assert.equal(value('machine_current_jobs', '{hostname="builder1"}'), 1);
  assert.equal(value('machine_consecutive_failures', '{hostname="builder2"}'), 2);
  assert.equal(value('machine_current_jobs', '{hostname="127.0.0.1:2201"}'), 0);
  assert.equal(value('machine_type_running', '{machine_type="x86_64-linux:kvm"}'), 1);
  assert.equal(value('jobset_share_used', '{jobset_name="nixpkgs:trunk"}'), 36);
  assert.equal(value('jobset_seconds', '{jobset_name="hydra:main\\"quoted\\\\"}'), 0, 'quote and backslash escaped');
  assert.equal(value('stalled_seconds'), 600);
  assert.equal(value('current_time_seconds'), Math.floor(fx.now / 1000));
  assert.ok(text.includes('# HELP hydraqueuerunner_steps_runnable '));
  assert.equal(escapeLabelValue('a\nb"c\\'), 'a\\nb\\"c\\\\');
});

// ------------------------------------------------------------------ SystemStatus and dump_status

async function waitForNotification(client: pg.Client, channel: string, ms: number): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('notification', on);
      reject(new Error(`no ${channel} within ${ms} ms`));
    }, ms);
    const on = (n: pg.Notification) => {
      if (n.channel !== channel) return;
      clearTimeout(timer);
      client.off('notification', on);
      resolve(performance.now() - t0);
    };
    client.on('notification', on);
  });
}

test('dump_status → status_dumped within 1 s with a fresh "up" row; stop() deletes the row', {timeout: 30_000}, async (t) => {
  const publisher = new SystemStatusPublisher(fx.scheduler, {refreshMs: 0});
  const client = new pg.Client({connectionString: fx.db.url});
  await client.connect();
  try {
    await publisher.start();
    const first = await client.query("SELECT status FROM SystemStatus WHERE what = 'queue-runner'");
    assert.equal(first.rowCount, 1, 'written on start');
    assertValid(cppStatusSchema, first.rows[0].status, 'SystemStatus row');

    await client.query('LISTEN status_dumped');
    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) {
      fx.scheduler.stats.nrBuildsDone = 1000 + i;
      const answered = waitForNotification(client, 'status_dumped', 1000);
      await client.query('NOTIFY dump_status');
      latencies.push(await answered);
      const {rows} = await client.query("SELECT status FROM SystemStatus WHERE what = 'queue-runner'");
      assert.equal(rows.length, 1);
      assert.equal(rows[0].status.status, 'up');
      assert.equal(rows[0].status.nrBuildsDone, 1000 + i, 'the row was rewritten after the request');
      assertValid(cppStatusSchema, rows[0].status, 'dumped row');
    }
    const shown = latencies.map((l) => l.toFixed(1)).join(', ');
    t.diagnostic(`dump_status → status_dumped latencies: ${shown} ms`);
    assert.ok(Math.max(...latencies) < 1000, `latencies ${shown} ms`);

    await publisher.stop();
    const gone = await client.query("SELECT 1 FROM SystemStatus WHERE what = 'queue-runner'");
    assert.equal(gone.rowCount, 0, 'stop() deletes the row');
    // A request after stop() gets no answer (nobody is running).
    const silent = waitForNotification(client, 'status_dumped', 500);
    await client.query('NOTIFY dump_status');
    await assert.rejects(silent, /no status_dumped/);
  } finally {
    await publisher.stop().catch(() => {});
    await client.end();
    fx.scheduler.stats.nrBuildsDone = 3;
  }
});

test('the publisher refreshes the row periodically', {timeout: 30_000}, async () => {
  const publisher = new SystemStatusPublisher(fx.scheduler, {refreshMs: 50});
  try {
    await publisher.start();
    const before = publisher.writes;
    const t0 = Date.now();
    while (publisher.writes < before + 3 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    assert.ok(publisher.writes >= before + 3, `only ${publisher.writes - before} refreshes`);
    const {rows} = await fx.pool.query("SELECT status FROM SystemStatus WHERE what = 'queue-runner'");
    assert.ok(rows[0].status.time >= Math.floor(t0 / 1000));
  } finally {
    await publisher.stop();
  }
});
