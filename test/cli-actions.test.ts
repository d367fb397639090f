// The scripting surface end to end: the real CLI against a real PostgreSQL. Every --json document is
// validated against its documented shape (see the JSON shapes documentation), and the exit codes for
// not-found (3), bad usage (2), permission (4) and refusal (1) are checked. `status` is checked against
// a hydra-ops-style REST server started here, a queue_runner_endpoint, and a SystemStatus row answered
// (or not) by a test LISTEN client.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, rmSync, writeFileSync, mkdirSync} from 'node:fs';
import {createServer, type Server} from 'node:http';
import type {AddressInfo} from 'node:net';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import pg from 'pg';
import {runCli, type CliResult} from './support/cli.js';
import {freshDatabase, type TestDatabase} from './support/pg.js';
import {insertBuild, insertBuildStep, insertJobset, insertUser, nowSeconds, storePath, type JobsetRow} from './support/fixtures.js';
import {shapeErrors, type Shape} from './support/json-shape.js';
import {initSchema} from '../source/db/schema.js';

const BUILD_ROW: Shape = {
  id: 'number', finished: 'number', timestamp: 'number', jobset_id: 'number', project: 'string', jobset: 'string', job: 'string',
  nixname: '?string', description: '?string', drvpath: 'string', system: 'string', license: '?string', homepage: '?string',
  maintainers: '?string', maxsilent: '?number', timeout: '?number', ischannel: 'number', iscurrent: '?number', priority: 'number',
  globalpriority: 'number', starttime: '?number', stoptime: '?number', iscachedbuild: '?number', buildstatus: '?number',
  size: '?number', closuresize: '?number', releasename: '?string', keep: 'number', notificationpendingsince: '?number',
};
const STEP_ROW: Shape = {
  build: 'number', stepnr: 'number', type: 'number', drvpath: '?string', busy: 'number', status: '?number', errormsg: '?string',
  starttime: '?number', stoptime: '?number', machine: 'string', system: '?string', propagatedfrom: '?number', overhead: '?number',
  timesbuilt: '?number', isnondeterministic: '?boolean', resolveddrvpath: '?string', project: 'string', jobset: 'string', job: 'string',
};
const ACTION: Record<string, Shape> = {
  action: 'string', scope: 'string', dryRun: 'boolean', targets: ['number'], changed: ['number'], unchanged: ['number'], auditId: '?number',
};
const RESTART: Shape = {...ACTION, failedPathsDeleted: 'number', evalsReset: ['number'], gcRoots: ['string']};
const CANCEL: Shape = {...ACTION, time: 'number'};
const BUMP: Shape = {...ACTION, globalPriority: 'number'};
const CLEAR_FAILED: Shape = {...ACTION, deleted: 'number'};
const DRAIN: Shape = {...ACTION, machine: 'string', drained: 'boolean', wasDrained: 'boolean'};
const UNLOCK: Shape = {...ACTION, steps: [{build: 'number', stepnr: 'number'}], systemStatusDeleted: 'boolean', databaseLock: 'string'};
const ERROR: Shape = {error: {code: 'string', message: 'string', details: 'any'}};
const ERROR_NO_DETAILS: Shape = {error: {code: 'string', message: 'string'}};
const AUDIT: Shape = {
  entries: [{
    id: 'number', at: 'string', unix_user: '?string', unix_uid: '?number', sudo_user: '?string', hydra_user: '?string', host: '?string', action: 'string', scope: '?string',
    target_count: '?number', target_ids: '?array', result_count: '?number', outcome: 'string', message: '?string', duration_ms: '?number', version: '?string',
  }],
  nextBefore: '?number',
};
const MACHINES: Shape = {
  source: 'string', files: ['string'], errors: ['string'],
  machines: [{
    name: 'string', host: '?string', systems: ['string'], maxJobs: '?number', speedFactor: '?number', supportedFeatures: ['string'],
    mandatoryFeatures: ['string'], inMachinesFile: 'boolean', drained: 'boolean', drainedBy: '?string', drainedAt: '?string', note: '?string',
    currentJobs: 'number', daemon: 'any',
    steps: [{build: 'number', stepnr: 'number', type: 'number', system: '?string', drvpath: '?string', machine: 'string', starttime: '?number', project: 'string', jobset: 'string', job: 'string', busy: 'number'}],
  }],
};
const STATUS: Shape = {status: 'string', source: '?string', url: '?string', fresh: 'boolean', document: 'any', tried: [{source: 'string', url: '?string', error: 'string'}]};

let tdb: TestDatabase;
let pool: pg.Pool;
let base: string;
let env: Record<string, string>;
let js: JobsetRow;

before(async () => {
  tdb = await freshDatabase('cli_actions');
  pool = new pg.Pool({connectionString: tdb.url, max: 4});
  await initSchema(pool);
  await insertUser(pool, {userName: 'admin', roles: ['admin']});
  await insertUser(pool, {userName: 'plain'});
  js = await insertJobset(pool);
  base = mkdtempSync(join(tmpdir(), 'hydra-ops-cli-actions-'));
  mkdirSync(join(base, 'data'));
  writeFileSync(join(base, 'machines'), 'ssh://hydra@builder1 x86_64-linux - 4 1 big-parallel\n');
  env = {
    HYDRA_DATABASE_URL: tdb.url,
    HYDRA_DATA: join(base, 'data'),
    HYDRA_OPS_CONFIG_DIR: join(base, 'settings'),
    HYDRA_CONFIG: '',
    NIX_REMOTE_SYSTEMS: join(base, 'machines'),
    HYDRA_OPS_USER: 'admin',
  };
  // Nothing listens on port 1: the daemon source is skipped unless a test points elsewhere.
  assert.equal((await runCli(['config', 'set', 'statusAddress', '127.0.0.1:1'], env)).code, 0);
});

after(async () => {
  await pool?.end().catch(() => {});
  await tdb?.drop();
  rmSync(base, {recursive: true, force: true});
});

function json(r: CliResult, shape: Shape, what: string): any {
  let doc: unknown;
  try {
    doc = JSON.parse(r.stdout);
  } catch {
    assert.fail(`${what}: stdout is not one JSON document (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
  assert.deepEqual(shapeErrors(doc, shape), [], `${what}: shape`);
  return doc;
}

const cli = (args: string[], extra: Record<string, string> = {}) => runCli(args, {...env, ...extra});

test('mutations: --json shapes, --dry-run, --yes, and the documented exit codes', {timeout: 120_000}, async () => {
  const failed = await insertBuild(pool, {jobsetId: js.id, finished: 1, buildStatus: 1, outputs: {out: storePath('x')}});
  const q1 = await insertBuild(pool, {jobsetId: js.id});
  const q2 = await insertBuild(pool, {jobsetId: js.id});
  const {rows} = await pool.query<{id: number}>(
    "INSERT INTO JobsetEvals (jobset_id, timestamp, checkouttime, evaltime, hasnewbuilds, hash) VALUES ($1, 1, 0, 0, 1, 'h') RETURNING id",
    [js.id],
  );
  const ev = rows[0]!.id;
  for (const b of [failed, q1, q2]) await pool.query('INSERT INTO JobsetEvalMembers (eval, build, isnew) VALUES ($1, $2, 1)', [ev, b]);

  const [restart, bulkNoYes, dry, bump, restartFailed, clearFailed, nonCurrent, drain, unlock] = await Promise.all([
    cli(['restart', String(failed), '--json']),
    cli(['cancel', String(q1), String(q2)]),
    cli(['cancel', String(q1), String(q2), '--dry-run', '--json']),
    cli(['bump', '--to-front', String(q1), '--json']),
    cli(['restart-failed', String(ev), '--dry-run', '--json']),
    cli(['clear-failed-cache', '--yes', '--json']),
    cli(['clear-queue-non-current', '--dry-run', '--json']),
    cli(['machine', 'drain', 'builder1', '--yes', '--json', '--note', 'disk']),
    cli(['unlock', '--dry-run', '--json']),
  ]);
  assert.equal(restart.code, 0, restart.stderr);
  assert.deepEqual(json(restart, RESTART, 'restart').changed, [failed]);
  assert.equal(bulkNoYes.code, 2, 'bulk without --yes on a non-terminal stdin is a usage error');
  assert.match(bulkNoYes.stderr, /--yes/);
  assert.equal(dry.code, 0, dry.stderr);
  assert.deepEqual(json(dry, CANCEL, 'cancel --dry-run').changed, [q1, q2]);
  assert.equal(bump.code, 0, bump.stderr);
  assert.ok(json(bump, BUMP, 'bump').globalPriority >= nowSeconds() - 60);
  assert.equal(restartFailed.code, 0, restartFailed.stderr);
  json(restartFailed, RESTART, 'restart-failed');
  assert.equal(clearFailed.code, 0, clearFailed.stderr);
  json(clearFailed, CLEAR_FAILED, 'clear-failed-cache');
  assert.equal(nonCurrent.code, 0, nonCurrent.stderr);
  json(nonCurrent, CANCEL, 'clear-queue-non-current');
  assert.equal(drain.code, 0, drain.stderr);
  assert.equal(json(drain, DRAIN, 'machine drain').machine, 'ssh://hydra@builder1');
  assert.equal(unlock.code, 0, unlock.stderr);
  json(unlock, UNLOCK, 'unlock --dry-run');
  const {rows: after} = await pool.query('SELECT id, finished FROM Builds WHERE id = ANY($1::int[]) ORDER BY id', [[q1, q2]]);
  assert.deepEqual(after.map((r) => r.finished), [0, 0], 'the dry run and the refused bulk cancel changed nothing');

  const cancel = await cli(['cancel', String(q1), String(q2), '--yes', '--json']);
  assert.equal(cancel.code, 0, cancel.stderr);
  assert.deepEqual(json(cancel, CANCEL, 'cancel --yes').changed, [q1, q2]);

  const [notFound, badId, badFilter, unknownUser, readonly, roleless, notRestartable, bothSel] = await Promise.all([
    cli(['restart', '999999', '--json']),
    cli(['restart', 'abc', '--json']),
    cli(['cancel', '--filter', 'status:nope', '--yes', '--json']),
    cli(['bump', String(q1), '--json'], {HYDRA_OPS_USER: 'nobody'}),
    cli(['bump', String(q1), '--readonly', '--json']),
    cli(['cancel', String(q1), '--json', '--user', 'plain']),
    cli(['cancel', String(q1), '--json']),
    cli(['cancel', String(q1), '--filter', 'status:queued']),
  ]);
  assert.equal(notFound.code, 3);
  assert.equal(json(notFound, ERROR, 'not found').error.code, 'not-found');
  assert.equal(badId.code, 2);
  json(badId, ERROR_NO_DETAILS, 'bad id');
  assert.equal(badFilter.code, 2);
  assert.match(json(badFilter, ERROR, 'bad filter').error.message, /status/);
  assert.equal(unknownUser.code, 4);
  assert.match(json(unknownUser, ERROR, 'unknown user').error.message, /localAdmin/);
  assert.equal(readonly.code, 4);
  assert.equal(json(readonly, ERROR, 'readonly').error.code, 'permission-denied');
  assert.equal(roleless.code, 4);
  assert.equal(notRestartable.code, 1, 'a single build that cannot change is a refusal');
  json(notRestartable, {error: {code: 'string', message: 'string', details: CANCEL}}, 'not cancellable');
  assert.equal(bothSel.code, 2);
  const local = await cli(['bump', String(q1), '--json', '--local-admin'], {HYDRA_OPS_USER: 'nobody'});
  assert.equal(local.code, 0, local.stderr);

  const audit = await cli(['audit', '--json', '--limit', '100']);
  assert.equal(audit.code, 0, audit.stderr);
  const entries = json(audit, AUDIT, 'audit').entries as {action: string; outcome: string; hydra_user: string}[];
  assert.ok(entries.some((e) => e.action === 'bump' && e.outcome === 'refused' && e.hydra_user === 'nobody'));
  assert.ok(entries.some((e) => e.action === 'cancel' && e.outcome === 'dry-run'));
  assert.ok(entries.some((e) => e.action === 'machine-drain' && e.outcome === 'ok'));
});

test('read commands: --json shapes and not-found', {timeout: 120_000}, async () => {
  const b = await insertBuild(pool, {jobsetId: js.id});
  await insertBuildStep(pool, {build: b, busy: 30, machine: 'ssh://hydra@builder1'});
  const [queue, builds, build, missing, steps, jobsets, evals, machines, helpText] = await Promise.all([
    cli(['queue', '--json']),
    cli(['builds', '--json', '--filter', `jobset:${js.project}:${js.name}`, '--count']),
    cli(['build', String(b), '--json']),
    cli(['build', '987654', '--json']),
    cli(['steps', '--running', '--json']),
    cli(['jobsets', '--json']),
    cli(['evals', '--json']),
    cli(['machines', '--json']),
    cli(['restart', '--help']),
  ]);
  for (const r of [queue, builds, build, steps, jobsets, evals, machines]) assert.equal(r.code, 0, r.stderr);
  json(queue, {
    queued: 'number', running: 'number', matching: '?number', builds: [BUILD_ROW], nextCursor: '?string',
    jobsets: [{jobset_id: 'number', project: 'string', jobset: 'string', queued: 'number', oldest: 'number', newest: 'number'}],
    systems: [{system: 'string', queued: 'number'}],
  }, 'queue');
  const list = json(builds, {builds: [BUILD_ROW], nextCursor: '?string', total: '?number'}, 'builds');
  assert.ok(list.total >= 1);
  const one = json(build, {
    build: BUILD_ROW, outputs: [{name: 'string', path: '?string'}], steps: [STEP_ROW],
    products: [{build: 'number', productnr: 'number', type: 'string', subtype: 'string', filesize: '?number', sha256hash: '?string', path: '?string', name: 'string', defaultpath: '?string'}],
    metrics: [{build: 'number', name: 'string', unit: '?string', value: 'number', project: 'string', jobset: 'string', job: 'string', timestamp: 'number'}],
    evals: ['number'],
    postBuild: [{
      id: 'number', build: 'number', build_stoptime: 'number', command_id: 'string', matcher: 'string', command: 'string',
      status: 'string', attempts: 'number', exit_code: '?number', signal: '?string', output: '?string', output_bytes: '?number',
      error: '?string', queued_at: 'string', started_at: '?string', finished_at: '?string',
    }],
  }, 'build');
  assert.equal(one.build.id, b);
  assert.equal(missing.code, 3);
  assert.ok(json(steps, {steps: [STEP_ROW], nextCursor: '?string'}, 'steps').steps.some((s: {build: number}) => s.build === b));
  json(jobsets, {jobsets: [{id: 'number', project: 'string', name: 'string', enabled: 'number', hidden: 'number', schedulingshares: 'number', lastcheckedtime: '?number', triggertime: '?number', starttime: '?number', errortime: '?number', nrqueued: 'number', nrrunning: 'number'}]}, 'jobsets');
  json(evals, {evals: [{id: 'number', jobset_id: 'number', project: 'string', jobset: 'string', timestamp: 'number', checkouttime: 'number', evaltime: 'number', hasnewbuilds: 'number', hash: 'string', nrbuilds: '?number', nrsucceeded: '?number', flake: '?string', evaluationerror_id: '?number', haserror: 'boolean'}], nextCursor: '?string'}, 'evals');
  const m = json(machines, MACHINES, 'machines');
  const b1 = m.machines.find((x: {name: string}) => x.name === 'ssh://hydra@builder1');
  assert.ok(b1.steps.some((s: {build: number}) => s.build === b), 'the running step is listed under its machine');
  assert.equal(helpText.code, 0);
  assert.match(helpText.stdout, /Examples:/);
  assert.match(helpText.stdout, /--dry-run/);
});

function serve(routes: Record<string, unknown>): Promise<{server: Server; address: string}> {
  const server = createServer((req, res) => {
    const body = routes[req.url ?? ''];
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify(body));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({server, address: `127.0.0.1:${(server.address() as AddressInfo).port}`})));
}

test('status: hydra-ops daemon REST, then queue_runner_endpoint', {timeout: 60_000}, async () => {
  const daemonDoc = {queueRunner: {status: 'up', buildCount: 3}, machines: {}, jobsets: {}, store: null, s3: {}};
  const {server, address} = await serve({'/status': daemonDoc});
  const rust = await serve({'/status': {queueRunner: {status: 'up', buildCount: 9}}});
  const conf = mkdtempSync(join(tmpdir(), 'hydra-ops-conf-'));
  try {
    const settingsDir = join(conf, 'settings');
    assert.equal((await runCli(['config', 'set', 'statusAddress', address], {...env, HYDRA_OPS_CONFIG_DIR: settingsDir})).code, 0);
    const fromDaemon = await cli(['status', '--json'], {HYDRA_OPS_CONFIG_DIR: settingsDir});
    assert.equal(fromDaemon.code, 0, fromDaemon.stderr);
    const d = json(fromDaemon, STATUS, 'status (daemon)');
    assert.equal(d.source, 'hydra-ops');
    assert.deepEqual(d.document, daemonDoc);

    writeFileSync(join(conf, 'hydra.conf'), `queue_runner_endpoint = http://${rust.address}\n`);
    const fromRust = await cli(['status', '--json'], {HYDRA_CONFIG: join(conf, 'hydra.conf')});
    assert.equal(fromRust.code, 0, fromRust.stderr);
    const r = json(fromRust, STATUS, 'status (endpoint)');
    assert.equal(r.source, 'queue-runner-endpoint');
    assert.equal(r.document.queueRunner.buildCount, 9);
    assert.equal(r.tried[0].source, 'hydra-ops');

    rust.server.close();
    const unreachable = await cli(['status', '--json'], {HYDRA_CONFIG: join(conf, 'hydra.conf')});
    assert.equal(unreachable.code, 1);
    assert.equal(json(unreachable, STATUS, 'status (unreachable)').status, 'unreachable');
  } finally {
    server.close();
    rust.server.close();
    rmSync(conf, {recursive: true, force: true});
  }
});

test('status: SystemStatus row refreshed through dump_status/status_dumped; stale → exit 1; none → down', {timeout: 60_000}, async () => {
  const none = await cli(['status', '--json']);
  assert.equal(none.code, 0, none.stderr);
  assert.equal(json(none, STATUS, 'status (none)').status, 'down');

  await pool.query(`INSERT INTO SystemStatus (what, status) VALUES ('queue-runner', '{"status":"up","pid":1,"nrQueuedBuilds":0}')`);
  const runner = new pg.Client({connectionString: tdb.url});
  await runner.connect();
  try {
    await runner.query('LISTEN dump_status');
    runner.on('notification', (n) => {
      if (n.channel !== 'dump_status') return;
      void (async () => {
        await runner.query('BEGIN');
        await runner.query("DELETE FROM SystemStatus WHERE what = 'queue-runner'");
        await runner.query(`INSERT INTO SystemStatus (what, status) VALUES ('queue-runner', '{"status":"up","pid":2,"nrQueuedBuilds":7}')`);
        await runner.query('NOTIFY status_dumped');
        await runner.query('COMMIT');
      })();
    });
    const fresh = await cli(['status', '--json']);
    assert.equal(fresh.code, 0, fresh.stderr);
    const f = json(fresh, STATUS, 'status (system-status)');
    assert.equal(f.source, 'system-status');
    assert.equal(f.fresh, true);
    assert.equal(f.document.nrQueuedBuilds, 7, 'the row as rewritten by the runner');
  } finally {
    await runner.end();
  }
  const stale = await cli(['status', '--json', '--timeout', '1']);
  assert.equal(stale.code, 1);
  assert.match(stale.stderr, /queue runner did not respond; status information may be wrong/);
  const s = json(stale, STATUS, 'status (stale)');
  assert.equal(s.fresh, false);
  assert.equal(s.document.pid, 2);
  await pool.query("DELETE FROM SystemStatus WHERE what = 'queue-runner'");
});
