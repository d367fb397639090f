import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {statusFixture, type StatusFixture} from './support/status-scheduler.js';
import {
  assertValid,
  buildActiveSchema,
  buildsSchema,
  cppStatusSchema,
  errorSchema,
  progressSchema,
  queuesSchema,
  restJobsetsSchema,
  restMachinesSchema,
  restStatusSchema,
  runnableListSchema,
  stepListSchema,
} from './support/status-schemas.js';
import {parseStatusAddress, startStatusServer, StatusAddressError, type StatusServer} from '../source/daemon/http.js';

let fx: StatusFixture;
let server: StatusServer;
before(async () => {
  fx = await statusFixture('http');
  server = await startStatusServer(fx.scheduler, {host: '127.0.0.1', port: 0});
});
after(async () => {
  await server?.close();
  await fx?.close();
});

interface Reply {
  status: number;
  type: string;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** One request with node:http (so any method and raw path can be sent). */
function request(path: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({host: server.host, port: server.port, path, method, agent: false}, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({status: res.statusCode!, type: String(res.headers['content-type']), body: Buffer.concat(chunks).toString('utf8'), headers: res.headers}));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function getJson(path: string, status = 200): Promise<any> {
  const r = await request(path);
  assert.equal(r.status, status, `${path}: ${r.body}`);
  assert.match(r.type, /^application\/json/, path);
  return JSON.parse(r.body);
}

test('the server binds the requested address and reports the port it got', () => {
  assert.equal(server.host, '127.0.0.1');
  assert.ok(server.port > 0);
  assert.equal(server.address, `127.0.0.1:${server.port}`);
});

test('every REST endpoint answers with JSON matching its schema', async () => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['/status', restStatusSchema],
    ['/status/machines', restMachinesSchema],
    ['/status/jobsets', restJobsetsSchema],
    ['/status/builds', buildsSchema],
    ['/status/steps', stepListSchema],
    ['/status/runnable', runnableListSchema],
    ['/status/queues', queuesSchema],
    ['/status/queues/jobs', stepListSchema],
    ['/status/queues/scheduled', stepListSchema],
    ['/status/build/104/active', buildActiveSchema],
    ['/status/progress', progressSchema],
    ['/status/cpp', cppStatusSchema],
  ];
  for (const [path, schema] of cases) {
    const doc = await getJson(path);
    assertValid(schema, doc, path);
  }
  const machines = await getJson('/status/machines');
  assert.equal(machines.machinesCount, 6);
  assert.equal(machines.machines.builder2.lastError, 'ssh: connect to host builder2 port 22: Connection refused');
  assert.equal((await getJson('/status/steps')).stepCount, 7);
  assert.equal((await getJson('/status/queues/scheduled')).stepCount, 2);
  assert.equal((await getJson('/status/queues/jobs')).stepCount, 6);
  // The fixture's builds have no database rows: not active in the Rust sense, but 104 has a running step here.
  assert.deepEqual(await getJson('/status/build/104/active'), {active: false, queued: true, steps: [fx.steps.compiling.drvPath]});
  assert.equal((await getJson('/status/build/101/active')).steps.length, 0);
  assert.equal((await getJson('/status/build/424242/active')).queued, false);
  assert.equal((await getJson('/status/progress')).stalled, true);
  assert.equal((await getJson('/status')).queueRunner.status, 'up');
});

test('trailing slashes are accepted', async () => {
  assert.equal((await getJson('/status/')).queueRunner.status, 'up');
  assert.equal((await getJson('/status/machines/')).machinesCount, 6);
  assert.equal((await getJson('/status/build/104/active/')).queued, true);
  const r = await request('/metrics/');
  assert.equal(r.status, 200);
});

test('?limit= bounds the step lists and the total is still reported', async () => {
  const steps = await getJson('/status/steps?limit=3');
  assertValid(stepListSchema, steps, 'limited steps');
  assert.deepEqual([steps.steps.length, steps.stepCount, steps.limit], [3, 7, 3]);
  const runnable = await getJson('/status/runnable?limit=0');
  assert.deepEqual([runnable.steps.length, runnable.stepCount], [0, 4]);
  const queues = await getJson('/status/queues?limit=1');
  assert.equal(queues.queues['x86_64-linux'].length, 1);
  for (const bad of ['abc', '-1', '1.5', '99999999999']) {
    const err = await getJson(`/status/steps?limit=${bad}`, 400);
    assertValid(errorSchema, err, `limit=${bad}`);
    assert.match(err.error, /limit/);
  }
});

test('errors: 404 for unknown paths, 400 for a non-numeric build id, 405 for other methods', async () => {
  for (const path of ['/', '/nope', '/status/nope', '/status/build/104', '/status/build/104/other', '/status/build//active', '/statusx']) {
    const err = await getJson(path, 404);
    assertValid(errorSchema, err, path);
  }
  for (const path of ['/status/build/abc/active', '/status/build/-3/active', '/status/build/1e3/active']) {
    const err = await getJson(path, 400);
    assertValid(errorSchema, err, path);
    assert.match(err.error, /build id/);
  }
  for (const method of ['POST', 'PUT', 'DELETE']) {
    const r = await request('/status', method);
    assert.equal(r.status, 405, method);
    assert.equal(r.headers.allow, 'GET');
    assertValid(errorSchema, JSON.parse(r.body), `${method} /status`);
  }
  assert.equal((await request('/metrics', 'POST')).status, 405);
});

test('/metrics serves the Prometheus text format with the hydraqueuerunner_ names', async () => {
  const r = await request('/metrics');
  assert.equal(r.status, 200);
  assert.match(r.type, /^text\/plain; version=0\.0\.4/);
  const lines = r.body.trimEnd().split('\n');
  for (const line of lines) {
    if (line.startsWith('#')) assert.match(line, /^# (HELP|TYPE) hydraqueuerunner_[a-z0-9_]+ /);
    else assert.match(line, /^hydraqueuerunner_[a-z0-9_]+(\{[^}]*\})? -?[0-9.e+-]+$/, line);
  }
  for (const name of ['steps_runnable', 'machine_current_jobs', 'jobset_share_used', 'queue_monitor_time_spent_waiting', 'uptime_seconds']) {
    assert.ok(lines.some((l) => l.startsWith(`hydraqueuerunner_${name}`)), name);
  }
});

test('documents follow the live scheduler state', async () => {
  const saved = fx.scheduler.stats.nrStepsDone;
  fx.scheduler.stats.nrStepsDone = 77;
  try {
    assert.equal((await getJson('/status')).queueRunner.nrStepsDone, 77);
    assert.match((await request('/metrics')).body, /^hydraqueuerunner_steps_finished 77$/m);
  } finally {
    fx.scheduler.stats.nrStepsDone = saved;
  }
});

test('status addresses: parsing, a taken port is a clear error, close() releases the port', async () => {
  assert.deepEqual(parseStatusAddress('127.0.0.1:8081'), {host: '127.0.0.1', port: 8081});
  assert.deepEqual(parseStatusAddress('[::1]:8081'), {host: '::1', port: 8081});
  assert.deepEqual(parseStatusAddress('localhost:0'), {host: 'localhost', port: 0});
  for (const bad of ['8081', 'host:', 'host:port', '::1:8081', 'a b:1', 'h:70000']) {
    assert.throws(() => parseStatusAddress(bad), StatusAddressError, bad);
  }
  await assert.rejects(startStatusServer(fx.scheduler, {host: '127.0.0.1', port: server.port}), (e: Error) => {
    assert.ok(e instanceof StatusAddressError);
    assert.equal(e.message, `cannot listen on 127.0.0.1:${server.port}: the address is already in use`);
    return true;
  });
  const other = await startStatusServer(fx.scheduler, {host: '127.0.0.1', port: 0});
  const port = other.port;
  // A keep-alive connection must not hold close() up.
  const agent = new http.Agent({keepAlive: true});
  await new Promise<void>((resolve, reject) => {
    http.get({host: '127.0.0.1', port, path: '/status/progress', agent}, (res) => {
      res.resume();
      res.on('end', () => resolve());
    }).on('error', reject);
  });
  const t0 = Date.now();
  await other.close();
  assert.ok(Date.now() - t0 < 2000, 'close() does not wait for idle keep-alive connections');
  agent.destroy();
  await assert.rejects(
    new Promise((resolve, reject) => http.get({host: '127.0.0.1', port, path: '/status', agent: false}, resolve).on('error', reject)),
    /ECONNREFUSED/,
  );
  // The same port can be bound again.
  const again = await startStatusServer(fx.scheduler, {host: '127.0.0.1', port});
  assert.equal(again.port, port);
  await again.close();
});
