// The REST status documents against the Rust queue runner's serde types (test/support/rust-status-schema.ts)
// on the real parts: a scheduler on a fresh database building on a real sshd builder, its status
// server asked while one step builds (held by a file in the fleet's shared directory) and after it
// finished; `/metrics` is parsed by the reference Prometheus text parser (python3-prometheus-client). The
// substitution counters come from a build whose input is substituted from a signed file:// cache.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {execFile} from 'node:child_process';
import {readFileSync, rmSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {Ajv, type ValidateFunction} from 'ajv';
import {runnerRig, mkPrelude} from './support/runner-rig.js';
import {rustRoutes, buildActiveResponse, errorResponse} from './support/rust-status-schema.js';
import {startStatusServer} from '../source/daemon/http.js';
import {defaultRunnerSettings} from '../source/config/hydra-conf.js';
import {readDrv, outputPathMap} from '../source/nix/drv.js';
import {execa} from 'execa';

const ajv = new Ajv({allErrors: true, strict: true, allowUnionTypes: true});
const compiled = new Map<object, ValidateFunction>();
function assertRust(schema: Record<string, unknown>, doc: unknown, what: string): void {
  let v = compiled.get(schema);
  if (!v) compiled.set(schema, (v = ajv.compile(schema)));
  if (!v(doc)) assert.fail(`${what} does not match the Rust runner's type:\n  ${(v.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`).join('\n  ')}`);
}

// Debian's python3 (the one python3-prometheus-client installs into), not a user's python3 earlier in PATH.
const PY = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    out[fam.name] = {"type": fam.type, "samples": [[s.name, s.labels, s.value] for s in fam.samples]}
print(json.dumps(out))
`;
function parsePrometheus(text: string): Promise<Record<string, {type: string; samples: Array<[string, Record<string, string>, number]>}>> {
  return new Promise((resolve, reject) => {
    const child = execFile('/usr/bin/python3', ['-c', PY], {timeout: 30_000, maxBuffer: 64 << 20}, (error, stdout, stderr) => {
      if (error) reject(new Error(`the Prometheus parser rejected /metrics: ${stderr || error.message}`));
      else resolve(JSON.parse(stdout));
    });
    child.stdin!.end(text);
  });
}

test('REST status documents match the Rust runner types field by field, /metrics parses, active means unfinished', {timeout: 240_000}, async () => {
  const rig = await runnerRig({builders: 1, maxJobs: 2, label: 'status_contract'});
  const server = {current: null as Awaited<ReturnType<typeof startStatusServer>> | null};
  const hold = join(rig.fleet!.sharedDir, 'contract-hold');
  writeFileSync(hold, '');
  try {
    const [quick, held] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      [ (mk "contract-quick" [] "echo quick > $out")
        (mk "contract-held" [] "while [ -e ${hold} ]; do sleep 0.2; done; echo held > $out") ]`);
    const [quickId] = await rig.queue([quick!]);
    const s = rig.scheduler();
    await s.start();
    s.setMachines(rig.machines);
    s.requestScan();
    await rig.waitFinished([quickId!]);
    const [heldId] = await rig.queue([held!]);
    s.requestScan();
    server.current = await startStatusServer(s, {host: '127.0.0.1', port: 0});
    const base = `http://127.0.0.1:${server.current.port}`;
    const get = async (path: string, status = 200): Promise<any> => {
      const r = await fetch(base + path);
      const body = await r.text();
      assert.equal(r.status, status, `${path}: ${body}`);
      return JSON.parse(body);
    };
    // Wait until the held step is on the builder.
    const deadline = Date.now() + 60_000;
    while ((await get('/status/queues/scheduled')).stepCount === 0) {
      assert.ok(Date.now() < deadline, 'the held step never started');
      await new Promise((r) => setTimeout(r, 200));
    }

    for (const [path, schema] of Object.entries(rustRoutes)) {
      const doc = await get(path);
      assertRust(schema, doc, path);
      assertRust(schema, await get(`${path}/`), `${path}/`);
    }
    const status = await get('/status');
    const host = rig.machines[0]!.host;
    assert.deepEqual(Object.keys(status.machines), [host], 'machines keyed by host name');
    const m = status.machines[host];
    assert.equal(m.stats.currentJobs, 1);
    assert.equal(m.stats.idleSince, 0, 'busy: not idle');
    assert.equal(m.stats.succeededBuilds, 1);
    assert.equal(m.stats.failedBuilds, 0);
    assert.equal(m.stats.nrStepsDone, 1);
    assert.ok(m.stats.jobsInLast30sStart > 0 && m.stats.jobsInLast30sStart <= Math.floor(Date.now() / 1000));
    assert.ok(m.stats.jobsInLast30sCount >= 1 && m.stats.jobsInLast30sCount <= 2, `jobsInLast30sCount ${m.stats.jobsInLast30sCount}`);
    assert.deepEqual(m.jobs, [held]);
    assert.deepEqual(Object.keys(status.queueRunner.queueStats), [rig.localSystem], 'queue statistics keyed by platform');
    assert.equal(status.queueRunner.queueStats[rig.localSystem].activeRunnable, 1);
    assert.deepEqual(Object.keys((await get('/status/queues')).queues), [rig.localSystem], 'queues keyed by platform');
    const jobsets = await get('/status/jobsets');
    assert.equal(jobsets.jobsetCount, Object.keys(jobsets.jobsets).length);
    for (const [key, j] of Object.entries<any>(jobsets.jobsets)) assert.equal(key, `${j.projectName}:${j.name}`);

    // active = the build's row is unfinished (Rust), whether or not this runner holds it.
    assertRust(buildActiveResponse, await get(`/status/build/${heldId}/active`), 'active');
    assert.deepEqual(await get(`/status/build/${heldId}/active`), {active: true, queued: true, steps: [held]});
    assert.equal((await get(`/status/build/${quickId}/active`)).active, false, 'finished build');
    assert.equal((await get('/status/build/987654/active')).active, false, 'no such build');
    assertRust(errorResponse, await get('/status/build/x/active', 400), 'bad id');

    // The Rust runner's write routes are refused with the hydra-ops command to use.
    for (const [method, path, hint] of [['PUT', '/build', /hydra-ops eval/], ['POST', '/build_one', /--build-one/]] as const) {
      const r = await fetch(base + path, {method, body: '{}'});
      assert.equal(r.status, 501, `${method} ${path}`);
      const err = await r.json();
      assertRust(errorResponse, err, `${method} ${path}`);
      assert.match(err.error, hint);
    }

    // /metrics through the reference parser.
    const r = await fetch(base + '/metrics');
    assert.match(String(r.headers.get('content-type')), /^text\/plain; version=0\.0\.4/);
    const families = await parsePrometheus(await r.text());
    const sample = (family: string, labels: Record<string, string> = {}) =>
      families[family]?.samples.find(([, l]) => Object.entries(labels).every(([k, v]) => l[k] === v))?.[2];
    // The parser strips `_total` from counter family names.
    assert.equal(families['hydraqueuerunner_queue_checks_started']?.type, 'counter');
    assert.equal(sample('hydraqueuerunner_machine_current_jobs', {hostname: host}), 1);
    assert.equal(sample('hydraqueuerunner_steps_building'), 1);
    assert.equal(sample('hydraqueuerunner_machine_steps_done', {hostname: host}), 1);
    assert.ok(Object.keys(families).length >= 60, `${Object.keys(families).length} families`);

    // After the held step: idle again, two successes, nothing active.
    rmSync(hold);
    await rig.waitFinished([heldId!]);
    const after = (await get('/status/machines')).machines[host];
    assertRust(rustRoutes['/status/machines']!, await get('/status/machines'), 'machines after');
    assert.equal(after.stats.succeededBuilds, 2);
    assert.equal(after.stats.currentJobs, 0);
    assert.ok(after.stats.idleSince > 0, 'idle since a Unix time');
    assert.equal((await get(`/status/build/${heldId}/active`)).active, false);
    // With the runner stopped (so nothing loads it), a new unfinished row is active though no runner holds it.
    await s.stop(5000);
    const {rows} = await rig.pool.query(
      `INSERT INTO Builds (finished, timestamp, jobset_id, job, nixName, drvPath, system, isCurrent, priority, globalPriority)
       SELECT 0, timestamp, jobset_id, 'not-loaded', 'not-loaded', drvPath, system, 1, 100, 0 FROM Builds WHERE id = $1 RETURNING id`,
      [quickId],
    );
    assert.deepEqual(await get(`/status/build/${rows[0].id}/active`), {active: true, queued: false, steps: []}, 'unfinished but not loaded');
  } finally {
    rmSync(hold, {force: true});
    await server.current?.close();
    await rig.close();
  }
});

test('substitution counters: /status nrSubstitutes* and /metrics hydraqueuerunner_substitutes_* count output paths as the Rust runner does', {timeout: 120_000}, async () => {
  const rig = await runnerRig({label: 'status_substitutes'});
  let server: Awaited<ReturnType<typeof startStatusServer>> | null = null;
  try {
    const secret = join(rig.nix.dir, 'subst.sec');
    const pub = join(rig.nix.dir, 'subst.pub');
    await execa('nix-store', ['--generate-binary-cache-key', 'hydra-ops-status-subst', secret, pub]);
    const cache = join(rig.nix.dir, 'subst-cache');
    const [libDrv, appDrv] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      let lib = mk "status-subst-lib" [] "echo lib > $out";
      in [ lib (mk "status-subst-app" [lib] "cat \${lib} > $out") ]`);
    const libOut = outputPathMap(await readDrv(libDrv!)).get('out')!;
    await execa('nix-store', ['--realise', libDrv!, '--option', 'build-users-group', '', '--option', 'substituters', '']);
    await execa('nix', ['--extra-experimental-features', 'nix-command', 'copy', '--to', `file://${cache}?secret-key=${secret}`, libOut]);
    await execa('nix-store', ['--delete', libOut]);
    // The app's output is asked of the substituter and is not there (failed); the lib's is (succeeded).
    const [id] = await rig.queue([appDrv!]);
    const s = rig.scheduler({
      runner: {...defaultRunnerSettings(), useSubstitutes: true, gcRootsDir: join(rig.dataDir, 'gcroots')},
      nix: {options: [['substituters', `file://${cache}`], ['trusted-public-keys', readFileSync(pub, 'utf8').trim()]]},
    });
    await s.start();
    s.setMachines([rig.localhost()]);
    s.requestScan();
    assert.equal((await rig.waitFinished([id!])).get(id!)!.buildstatus, 0);
    server = await startStatusServer(s, {host: '127.0.0.1', port: 0});
    const base = `http://127.0.0.1:${server.port}`;
    const status = await (await fetch(`${base}/status`)).json();
    assertRust(rustRoutes['/status']!, status, '/status');
    const q = status.queueRunner;
    assert.deepEqual([q.nrSubstitutesStarted, q.nrSubstitutesSucceeded, q.nrSubstitutesFailed], [2, 1, 1]);
    const families = await parsePrometheus(await (await fetch(`${base}/metrics`)).text());
    const value = (f: string) => families[f]?.samples[0]?.[2];
    assert.deepEqual(
      ['started', 'succeeded', 'failed'].map((k) => value(`hydraqueuerunner_substitutes_${k}`)),
      [2, 1, 1],
    );
  } finally {
    await server?.close();
    await rig.close();
  }
});
