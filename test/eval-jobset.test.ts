// Evaluating jobsets with the real Nix CLI into a real PostgreSQL database: the rows Hydra's evaluator writes
// (JobsetEvals, JobsetEvalMembers, Builds, BuildOutputs, EvaluationErrors, JobsetEvalInputs), re-use of unchanged
// builds, evaluation errors, the NOTIFY sequence, and a 1,000-job expression.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtemp, rm, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {execa} from 'execa';
import pg from 'pg';
import {freshDatabase, type TestDatabase} from './support/pg.js';
import {initSchema} from '../source/db/schema.js';
import {createJobset, createProject} from '../source/actions/jobsets.js';
import {evaluateJobset} from '../source/actions/evaluate.js';
import {demoExpressionPath} from '../source/actions/demo.js';
import {readDrv, requiredSystemFeatures} from '../source/nix/drv.js';

let db: TestDatabase;
let pool: pg.Pool;
let dir: string;
let system: string;

before(async () => {
  db = await freshDatabase('eval');
  pool = new pg.Pool({connectionString: db.url, max: 4});
  await initSchema(pool);
  await createProject(pool, {name: 'acme', owner: 'alice', createOwner: true});
  dir = await mkdtemp(join(tmpdir(), 'hydra-ops-eval-'));
  system = JSON.parse((await execa('nix-instantiate', ['--eval', '--json', '-E', 'builtins.currentSystem'])).stdout) as string;
});

after(async () => {
  await pool.end();
  await db.drop();
  await rm(dir, {recursive: true, force: true});
});

/** Collects notifications on the given channels until stop(). */
async function listen(channels: string[]) {
  const client = new pg.Client({connectionString: db.url});
  await client.connect();
  const got: Array<{channel: string; payload: string}> = [];
  client.on('notification', (n) => got.push({channel: n.channel, payload: n.payload ?? ''}));
  for (const c of channels) await client.query(`LISTEN ${c}`);
  return {
    got,
    async stop() {
      // A round trip after the last commit makes sure every notification has arrived.
      await client.query('SELECT 1');
      await client.end();
      return got;
    },
  };
}

const CHANNELS = ['eval_started', 'eval_added', 'eval_failed', 'build_queued', 'builds_added', 'cached_build_queued', 'cached_build_finished'];

const DEMO_JOBS = [
  'app-server', 'benchmarks', 'build-info', 'cli-tool', 'config-parser', 'container-image', 'core-runtime', 'db-driver',
  'docs', 'expat-mini', 'http-parser', 'installer', 'json-c', 'legacy-compat', 'libbar', 'libevent-lite', 'libffi-mini',
  'libfoo', 'libxml-lite', 'libyaml', 'ml-inference', 'net-stack', 'openssl-lite', 'pcre-tiny', 'plugins.auth',
  'plugins.metrics-exporter', 'plugins.rate-limit', 'release-tarball', 'sdk', 'sqlite-mini', 'tests.integration',
  'tests.legacy', 'tests.unit', 'worker', 'zlib-lite',
];

/** Everything that depends on core-runtime, plus the jobs whose duration is slowSeconds. */
const SLOW_AFFECTED = [
  'app-server', 'benchmarks', 'build-info', 'cli-tool', 'container-image', 'core-runtime', 'docs', 'installer',
  'ml-inference', 'plugins.auth', 'plugins.metrics-exporter', 'plugins.rate-limit', 'release-tarball', 'sdk',
  'tests.integration', 'tests.unit', 'worker',
];

test('evaluating the demo expression writes the eval, its builds, outputs and members, and notifies', {timeout: 120_000}, async () => {
  const js = await createJobset(pool, {
    project: 'acme',
    name: 'demo',
    exprFile: demoExpressionPath(),
    inputs: [{name: 'slowSeconds', type: 'string', value: '1'}],
  });
  const l = await listen(CHANNELS);
  const r = await evaluateJobset(pool, 'acme', 'demo', {traceId: 'trace-1'});
  const notes = await l.stop();

  assert.equal(r.evalError, null);
  assert.deepEqual(r.jobErrors, []);
  assert.equal(r.hasNewBuilds, true);
  assert.equal(r.nrBuilds, DEMO_JOBS.length);
  assert.deepEqual(r.builds.map((b) => b.job), DEMO_JOBS);

  const ev = (await pool.query('SELECT * FROM jobsetevals WHERE id = $1', [r.evalId])).rows[0];
  assert.equal(ev.jobset_id, js.id);
  assert.equal(ev.hasnewbuilds, 1);
  assert.equal(ev.nrbuilds, DEMO_JOBS.length);
  assert.equal(ev.nixexprinput, 'src');
  assert.equal(ev.nixexprpath, 'release.nix');
  assert.match(ev.hash, /^[0-9a-f]{64}$/);
  const evErr = (await pool.query('SELECT errormsg FROM evaluationerrors WHERE id = $1', [ev.evaluationerror_id])).rows[0];
  assert.equal(evErr.errormsg, '');

  const builds = (await pool.query('SELECT * FROM builds WHERE jobset_id = $1 ORDER BY job', [js.id])).rows;
  assert.deepEqual(builds.map((b) => b.job), DEMO_JOBS);
  for (const b of builds) {
    assert.equal(b.finished, 0);
    assert.equal(b.iscurrent, 1);
    assert.equal(b.system, system);
    assert.equal(b.globalpriority, 0);
    assert.match(b.drvpath, /^\/nix\/store\/[0-9a-z]{32}-.*\.drv$/);
  }
  const byJob = new Map(builds.map((b) => [b.job as string, b]));
  const appServer = byJob.get('app-server')!;
  assert.equal(appServer.nixname, 'app-server-1.4.2');
  assert.equal(appServer.description, 'The application server');
  assert.equal(appServer.license, 'mit');
  assert.equal(appServer.maintainers, 'alice@example.org, bob@example.org');
  assert.equal(appServer.homepage, 'https://example.org/demo');
  assert.equal(appServer.priority, 150);
  assert.equal(appServer.maxsilent, 7200);
  assert.equal(appServer.timeout, 36000);
  const core = byJob.get('core-runtime')!;
  assert.deepEqual([core.maxsilent, core.timeout, core.priority], [600, 7200, 150]);
  assert.equal(byJob.get('libfoo')!.license, 'mit, bsd3');
  assert.equal(byJob.get('release-tarball')!.priority, 200);
  assert.equal(byJob.get('zlib-lite')!.license, 'zlib');
  assert.equal(byJob.get('sdk')!.description, `Developer kit for ${system}`);

  // The .drv files are in the store, and BuildOutputs match what Nix says the outputs are.
  const libfoo = byJob.get('libfoo')!;
  const outs = (await pool.query('SELECT name, path FROM buildoutputs WHERE build = $1 ORDER BY name', [libfoo.id])).rows;
  const nixOuts = (await execa('nix-store', ['--query', '--outputs', libfoo.drvpath])).stdout.split('\n').sort();
  assert.deepEqual(outs.map((o) => o.name), ['dev', 'out']);
  assert.deepEqual(outs.map((o) => o.path).sort(), nixOuts);
  const nOutputs = (await pool.query('SELECT count(*)::int AS n FROM buildoutputs o JOIN builds b ON b.id = o.build WHERE b.jobset_id = $1', [js.id])).rows[0].n;
  assert.equal(nOutputs, DEMO_JOBS.length + 1);
  const gpu = await readDrv(byJob.get('ml-inference')!.drvpath);
  assert.deepEqual(requiredSystemFeatures(gpu), ['gpu-a100']);

  const members = (await pool.query('SELECT build, isnew FROM jobsetevalmembers WHERE eval = $1 ORDER BY build', [r.evalId])).rows;
  assert.deepEqual(members.map((m) => m.build), builds.map((b) => b.id).sort((a, b) => a - b));
  assert.ok(members.every((m) => m.isnew === 1));
  const inputs = (await pool.query('SELECT name, type, uri, value FROM jobsetevalinputs WHERE eval = $1 ORDER BY name', [r.evalId])).rows;
  assert.deepEqual(inputs, [
    {name: 'slowSeconds', type: 'string', uri: null, value: '1'},
    {name: 'src', type: 'path', uri: js.inputs[0]!.value, value: null},
  ]);
  const jobset = (await pool.query('SELECT errormsg, lastcheckedtime FROM jobsets WHERE id = $1', [js.id])).rows[0];
  assert.equal(jobset.errormsg, '');
  assert.ok(jobset.lastcheckedtime > 0);

  // eval_started first, then (at commit) one build_queued per build, eval_added and builds_added with the lowest id.
  assert.deepEqual(notes[0], {channel: 'eval_started', payload: `trace-1\t${js.id}`});
  const queued = notes.filter((n) => n.channel === 'build_queued').map((n) => Number(n.payload)).sort((a, b) => a - b);
  assert.deepEqual(queued, r.newBuilds);
  assert.equal(queued.length, DEMO_JOBS.length);
  assert.deepEqual(notes.filter((n) => n.channel === 'eval_added'), [{channel: 'eval_added', payload: `trace-1\t${js.id}\t${r.evalId}`}]);
  assert.deepEqual(notes.filter((n) => n.channel === 'builds_added'), [{channel: 'builds_added', payload: String(Math.min(...queued))}]);
  assert.equal(notes.filter((n) => n.channel.startsWith('cached_')).length, 0);

  // Unchanged: a cached eval (hasNewBuilds 0, nrBuilds NULL, no members), no new builds, all still current.
  const l2 = await listen(CHANNELS);
  const again = await evaluateJobset(pool, 'acme', 'demo');
  const notes2 = await l2.stop();
  assert.equal(again.hasNewBuilds, false);
  assert.deepEqual(again.newBuilds, []);
  assert.equal(again.reusedBuilds.length, DEMO_JOBS.length);
  const ev2 = (await pool.query('SELECT hasnewbuilds, nrbuilds FROM jobsetevals WHERE id = $1', [again.evalId])).rows[0];
  assert.deepEqual(ev2, {hasnewbuilds: 0, nrbuilds: null});
  assert.equal((await pool.query('SELECT count(*)::int AS n FROM jobsetevalmembers WHERE eval = $1', [again.evalId])).rows[0].n, 0);
  assert.equal((await pool.query('SELECT count(*)::int AS n FROM builds WHERE jobset_id = $1', [js.id])).rows[0].n, DEMO_JOBS.length);
  assert.equal((await pool.query('SELECT count(*)::int AS n FROM builds WHERE jobset_id = $1 AND iscurrent = 1', [js.id])).rows[0].n, DEMO_JOBS.length);
  assert.equal(notes2.filter((n) => n.channel === 'build_queued' || n.channel === 'builds_added').length, 0);
  assert.equal(notes2.filter((n) => n.channel === 'cached_build_queued').length, DEMO_JOBS.length);
  assert.ok(notes2.some((n) => n.channel === 'cached_build_queued' && n.payload === `${again.evalId}\t${appServer.id}`));

  // A different slowSeconds changes the slow jobs and everything that depends on core-runtime — only those are new.
  await createJobset(pool, {
    project: 'acme',
    name: 'demo',
    exprFile: demoExpressionPath(),
    inputs: [{name: 'slowSeconds', type: 'string', value: '2'}],
    replace: true,
  });
  const changed = await evaluateJobset(pool, 'acme', 'demo');
  assert.equal(changed.hasNewBuilds, true);
  assert.deepEqual(changed.builds.filter((b) => b.isNew).map((b) => b.job), SLOW_AFFECTED);
  const reusedJobs = changed.builds.filter((b) => !b.isNew);
  assert.deepEqual(reusedJobs.map((b) => b.job), DEMO_JOBS.filter((j) => !SLOW_AFFECTED.includes(j)));
  for (const b of reusedJobs) assert.equal(b.id, byJob.get(b.job)!.id);
  const current = (await pool.query('SELECT count(*)::int AS n FROM builds WHERE jobset_id = $1 AND iscurrent = 1', [js.id])).rows[0].n;
  assert.equal(current, DEMO_JOBS.length);
  assert.equal((await pool.query('SELECT isnew FROM jobsetevalmembers WHERE eval = $1 AND build = $2', [changed.evalId, appServer.id])).rowCount, 0);
});

test('changing one job queues only that job and its dependents', {timeout: 60_000}, async () => {
  const file = join(dir, 'chain.nix');
  const expr = (bText: string) => `{ system }:
let mk = name: deps: text: derivation { inherit name system; builder = "/bin/sh"; args = [ "-c" "echo \${text} $deps > $out" ]; deps = deps; };
    a = mk "a" [ ] "a"; b = mk "b" [ ] "${bText}"; c = mk "c" [ b ] "c"; d = mk "d" [ a ] "d";
in { inherit a b c d; }`;
  await writeFile(file, expr('b-one'));
  await createJobset(pool, {project: 'acme', name: 'chain', exprFile: file});
  const first = await evaluateJobset(pool, 'acme', 'chain');
  assert.deepEqual(first.builds.map((b) => [b.job, b.isNew]), [['a', true], ['b', true], ['c', true], ['d', true]]);

  await writeFile(file, expr('b-two'));
  const second = await evaluateJobset(pool, 'acme', 'chain');
  assert.equal(second.hasNewBuilds, true);
  assert.deepEqual(second.builds.map((b) => [b.job, b.isNew]), [['a', false], ['b', true], ['c', true], ['d', false]]);
  const ids = new Map(first.builds.map((b) => [b.job, b.id]));
  assert.equal(second.builds[0]!.id, ids.get('a'));
  assert.equal(second.builds[3]!.id, ids.get('d'));
  const members = (await pool.query('SELECT b.job, m.isnew FROM jobsetevalmembers m JOIN builds b ON b.id = m.build WHERE m.eval = $1 ORDER BY b.job', [second.evalId])).rows;
  assert.deepEqual(members, [{job: 'a', isnew: 0}, {job: 'b', isnew: 1}, {job: 'c', isnew: 1}, {job: 'd', isnew: 0}]);
  // The builds of the first eval that were replaced are no longer current.
  const stale = (await pool.query('SELECT iscurrent FROM builds WHERE id = ANY($1::int[])', [[ids.get('b'), ids.get('c')]])).rows;
  assert.deepEqual(stale, [{iscurrent: 0}, {iscurrent: 0}]);
});

test('an expression that does not evaluate is recorded as an error with no builds', {timeout: 60_000}, async () => {
  const file = join(dir, 'broken.nix');
  await writeFile(file, '{ system }: {\n  a = derivation { name = "a"; builder = "/bin/sh"; inherit system; }\n'); // missing ';' and '}'
  const js = await createJobset(pool, {project: 'acme', name: 'broken', exprFile: file});
  const l = await listen(CHANNELS);
  const r = await evaluateJobset(pool, 'acme', 'broken', {traceId: 't-broken'});
  const notes = await l.stop();
  assert.ok(r.evalError);
  assert.match(r.evalError, /syntax error/);
  assert.match(r.evalError, /broken\.nix:2:\d+/);
  assert.deepEqual(r.builds, []);
  assert.equal((await pool.query('SELECT count(*)::int AS n FROM builds WHERE jobset_id = $1', [js.id])).rows[0].n, 0);
  const ev = (await pool.query('SELECT e.hasnewbuilds, e.nrbuilds, x.errormsg FROM jobsetevals e JOIN evaluationerrors x ON x.id = e.evaluationerror_id WHERE e.id = $1', [r.evalId])).rows[0];
  assert.equal(ev.hasnewbuilds, 0);
  assert.equal(ev.nrbuilds, 0);
  assert.equal(ev.errormsg, r.evalError);
  const jobset = (await pool.query('SELECT errormsg, errortime FROM jobsets WHERE id = $1', [js.id])).rows[0];
  assert.equal(jobset.errormsg, r.evalError);
  assert.ok(jobset.errortime > 0);
  assert.deepEqual(notes.map((n) => n.channel), ['eval_started', 'eval_failed']);
  assert.equal(notes[1]!.payload, `t-broken\t${js.id}`);

  // Fixed, evaluated, broken again: the good eval's builds stay current.
  await writeFile(file, '{ system }: { a = derivation { name = "a"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; inherit system; }; }\n');
  const good = await evaluateJobset(pool, 'acme', 'broken');
  assert.equal(good.evalError, null);
  await writeFile(file, '{ system }: throw "release.nix: refusing to evaluate"\n');
  const bad = await evaluateJobset(pool, 'acme', 'broken');
  assert.match(bad.evalError ?? '', /refusing to evaluate/);
  const cur = (await pool.query('SELECT id, iscurrent FROM builds WHERE jobset_id = $1', [js.id])).rows;
  assert.deepEqual(cur, [{id: good.builds[0]!.id, iscurrent: 1}]);
});

test('jobs that fail to evaluate are reported per job; the others are queued', {timeout: 60_000}, async () => {
  const file = join(dir, 'partly.nix');
  await writeFile(
    file,
    `{ system }:
let mk = n: derivation { name = n; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; inherit system; }; in
{
  good = mk "good";
  thrower = throw "thrower is broken";
  aborter = abort "aborter gave up";
  missing = { }.nope;
  number = 42;
  nothing = null;
  nested = { ok = mk "nested-ok"; bad = assert system == "none"; mk "x"; recurseForDerivations = true; };
}
`,
  );
  await createJobset(pool, {project: 'acme', name: 'partly', exprFile: file});
  const r = await evaluateJobset(pool, 'acme', 'partly');
  assert.equal(r.evalError, null);
  assert.deepEqual(r.builds.map((b) => b.job), ['good', 'nested.ok']);
  assert.deepEqual(r.jobErrors.map((e) => e.name), ['aborter', 'missing', 'nested.bad', 'number', 'thrower']);
  const msg = new Map(r.jobErrors.map((e) => [e.name, e.message]));
  assert.match(msg.get('thrower')!, /thrower is broken/);
  assert.match(msg.get('aborter')!, /aborter gave up/);
  assert.match(msg.get('missing')!, /attribute 'nope' missing/);
  assert.match(msg.get('nested.bad')!, /assertion .* failed/);
  assert.match(msg.get('number')!, /attribute 'number' is a int, which is not supported/);
  const text = (await pool.query('SELECT x.errormsg FROM jobsetevals e JOIN evaluationerrors x ON x.id = e.evaluationerror_id WHERE e.id = $1', [r.evalId])).rows[0].errormsg as string;
  assert.match(text, /^in job ‘aborter’:\nerror: evaluation aborted/);
  assert.match(text, /in job ‘thrower’:\nerror: thrower is broken\n\n$/);
});

test('a generated 1,000-job expression evaluates and inserts in one pass', {timeout: 120_000}, async (t) => {
  const file = join(dir, 'thousand.nix');
  await writeFile(
    file,
    `{ system, n }:
let
  mk = i: deps: derivation { name = "gen-\${toString i}"; builder = "/bin/sh"; args = [ "-c" "echo $deps > $out" ]; inherit system deps; };
  base = builtins.genList (i: mk i [ ]) 10;
in builtins.listToAttrs (builtins.genList (i: { name = "job\${toString i}"; value = if i < 10 then builtins.elemAt base i else mk i [ (builtins.elemAt base (i - (i / 10) * 10)) ]; }) (builtins.fromJSON n))
`,
  );
  const js = await createJobset(pool, {project: 'acme', name: 'thousand', exprFile: file, inputs: [{name: 'n', type: 'string', value: '1000'}]});
  const started = performance.now();
  const r = await evaluateJobset(pool, 'acme', 'thousand');
  const seconds = (performance.now() - started) / 1000;
  t.diagnostic(`1,000 jobs: ${seconds.toFixed(2)} s in total (nix ${r.nixSeconds.toFixed(2)} s in ${r.nixProcesses} process, database ${r.dbSeconds.toFixed(2)} s)`);
  assert.equal(r.nixProcesses, 1);
  assert.equal(r.newBuilds.length, 1000);
  const counts = (
    await pool.query(
      `SELECT (SELECT count(*)::int FROM builds WHERE jobset_id = $1) AS builds,
              (SELECT count(*)::int FROM buildoutputs o JOIN builds b ON b.id = o.build WHERE b.jobset_id = $1) AS outputs,
              (SELECT count(*)::int FROM jobsetevalmembers WHERE eval = $2) AS members`,
      [js.id, r.evalId],
    )
  ).rows[0];
  assert.deepEqual(counts, {builds: 1000, outputs: 1000, members: 1000});
  assert.ok(seconds < 60, `1,000 jobs took ${seconds.toFixed(1)} s`);
});

test('inputs reach the expression as Hydra passes them; functions of system, nested sets and GC roots', {timeout: 60_000}, async () => {
  const data = join(dir, 'data');
  await import('node:fs/promises').then((fs) => fs.mkdir(data, {recursive: true}));
  await writeFile(join(data, 'greeting.nix'), '"hello from a path input"\n');
  const file = join(dir, 'inputs.nix');
  await writeFile(
    file,
    `{ system, flavour, official, data, unused ? "default", ... }:
let mk = name: text: derivation { inherit name system; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; inherit text; }; in
{
  flavoured = mk "flavour-\${flavour}" flavour;
  release = if official then mk "official" "yes" else null;
  fromPath = mk "from-path" (import (data + "/greeting.nix"));
  fromSearchPath = mk "from-search-path" (import <data/greeting.nix>);
  perSystem = { system }: mk "per-\${system}" system;
  nested = { deeper = { leaf = mk "leaf" "leaf"; }; "has space" = mk "skipped" "x"; recurseForDerivations = true; };
}
`,
  );
  await createJobset(pool, {
    project: 'acme',
    name: 'inputs',
    exprFile: file,
    inputs: [
      {name: 'flavour', type: 'string', value: 'spicy'},
      {name: 'official', type: 'boolean', value: 'true'},
      {name: 'data', type: 'path', value: data},
    ],
  });
  const roots = join(dir, 'roots');
  const r = await evaluateJobset(pool, 'acme', 'inputs', {gcRootsDir: roots});
  assert.deepEqual(r.jobErrors, []);
  const rows = (await pool.query('SELECT job, nixname FROM builds WHERE id = ANY($1::int[]) ORDER BY job', [r.newBuilds])).rows;
  assert.deepEqual(rows, [
    {job: 'flavoured', nixname: 'flavour-spicy'},
    {job: 'fromPath', nixname: 'from-path'},
    {job: 'fromSearchPath', nixname: 'from-search-path'},
    {job: 'nested.deeper.leaf', nixname: 'leaf'},
    {job: 'perSystem', nixname: `per-${system}`},
    {job: 'release', nixname: 'official'},
  ]);
  const drv = await readDrv(r.builds.find((b) => b.job === 'fromSearchPath')!.drvPath);
  assert.equal(drv.env.get('text'), 'hello from a path input');
  const {readdir} = await import('node:fs/promises');
  const rootFiles = (await readdir(roots)).sort();
  assert.deepEqual(rootFiles, r.builds.map((b) => b.drvPath.slice('/nix/store/'.length)).sort());

  // official = false: the release job is null, i.e. no job.
  await createJobset(pool, {
    project: 'acme',
    name: 'inputs',
    exprFile: file,
    inputs: [
      {name: 'flavour', type: 'string', value: 'spicy'},
      {name: 'official', type: 'boolean', value: 'false'},
      {name: 'data', type: 'path', value: data},
    ],
    replace: true,
  });
  const r2 = await evaluateJobset(pool, 'acme', 'inputs');
  assert.deepEqual(r2.builds.map((b) => b.job), ['flavoured', 'fromPath', 'fromSearchPath', 'nested.deeper.leaf', 'perSystem']);
  // One build fewer than the previous eval: changed, although nothing is new.
  assert.equal(r2.hasNewBuilds, true);
  assert.deepEqual(r2.newBuilds, []);
  assert.equal(r2.nrBuilds, 5);
});
