// The project, jobset, eval, enqueue and demo subcommands, run as the real command line against PostgreSQL and
// the installed Nix: rows written on success, clear errors with the documented exit codes and nothing written on
// bad input.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtemp, rm, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import pg from 'pg';
import {freshDatabase, type TestDatabase} from './support/pg.js';
import {runCli} from './support/cli.js';
import {nixFixture, type NixFixture} from './support/nix-fixtures.js';
import {createJobset, createProject, parseInputArg, parseJobsetRef} from '../source/actions/jobsets.js';
import {enqueueDerivations} from '../source/actions/enqueue.js';
import {intOption} from '../source/cli/commands/jobset-support.js';

let db: TestDatabase;
let empty: TestDatabase;
let pool: pg.Pool;
let dir: string;
let env: Record<string, string>;
let nix: NixFixture;

before(async () => {
  db = await freshDatabase('evalcli');
  empty = await freshDatabase('evalcli_empty');
  pool = new pg.Pool({connectionString: db.url, max: 2});
  dir = await mkdtemp(join(tmpdir(), 'hydra-ops-eval-cli-'));
  nix = await nixFixture('enqueue');
  env = {
    HYDRA_DATA: join(dir, 'data'),
    HYDRA_OPS_CONFIG_DIR: join(dir, 'settings'),
    HYDRA_OPS_USER: 'operator',
    HYDRA_DATABASE_URL: '',
    HYDRA_DBI: '',
    DATABASE_URL: '',
    NIX_REMOTE_SYSTEMS: '',
  };
  const init = await runCli(['--database-url', db.url, 'db', 'init'], env);
  assert.equal(init.code, 0, init.stderr);
  // The operator of these tests is a trusted local admin; the permission test below uses its own settings.
  assert.equal((await runCli(['config', 'set', 'localAdmin', 'true'], env)).code, 0);
});

after(async () => {
  await pool.end();
  await db.drop();
  await empty.drop();
  await nix.cleanup();
  await rm(dir, {recursive: true, force: true});
});

const cli = (args: string[], extraEnv: Record<string, string> = {}) => runCli(['--database-url', db.url, ...args], {...env, ...extraEnv});
const count = async (sql: string, params: unknown[] = []) => (await pool.query<{n: number}>(`SELECT count(*)::int AS n FROM ${sql}`, params)).rows[0]!.n;

test('project create: owner must exist unless --create-owner; bad names, duplicates and read-only mode are refused', {timeout: 120_000}, async () => {
  const [missing, ro] = await Promise.all([
    cli(['project', 'create', 'acme']),
    cli(['--readonly', 'project', 'create', 'acme', '--create-owner']),
  ]);
  assert.equal(missing.code, 3, missing.stderr);
  assert.match(missing.stderr, /user 'operator' does not exist in Users.*--create-owner/);
  assert.equal(await count('projects'), 0);
  assert.equal(await count('users'), 0);

  assert.equal(ro.code, 4);
  assert.match(ro.stderr, /read-only mode/);
  assert.equal(await count('projects'), 0);

  const ok = await cli(['project', 'create', 'acme', '--display-name', 'ACME Corp', '--create-owner', '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(JSON.parse(ok.stdout), {project: 'acme', owner: 'operator', ownerCreated: true});
  const row = (await pool.query('SELECT p.displayname, p.owner, p.enabled, u.emailaddress, u.password FROM projects p JOIN users u ON u.username = p.owner WHERE p.name = $1', ['acme'])).rows[0];
  assert.deepEqual(row, {displayname: 'ACME Corp', owner: 'operator', enabled: 1, emailaddress: '', password: '!'});

  const dup = await cli(['project', 'create', 'acme']);
  assert.equal(dup.code, 1);
  assert.match(dup.stderr, /project 'acme' already exists/);

});

test('jobset create: rows as Hydra stores a legacy jobset; bad input exits 2 or 3 and writes nothing', {timeout: 120_000}, async () => {
  await pool.query(`INSERT INTO users (username, emailaddress, password) VALUES ('jo', '', '!') ON CONFLICT DO NOTHING`);
  await pool.query(`INSERT INTO projects (name, displayname, owner) VALUES ('shop', 'Shop', 'jo') ON CONFLICT DO NOTHING`);
  const exprDir = join(dir, 'shop');
  await rm(exprDir, {recursive: true, force: true});
  await import('node:fs/promises').then((fs) => fs.mkdir(exprDir, {recursive: true}));
  const file = join(exprDir, 'release.nix');
  await writeFile(file, '{ system, flavour ? "plain", official ? false }: { }\n');
  const before = await count('jobsets');

  const cases: Array<[string[], number, RegExp]> = [
    [['jobset', 'create', 'nosuch/main', '--expr', file], 3, /project 'nosuch' does not exist/],
    [['jobset', 'create', 'shop-main', '--expr', file], 2, /'shop-main' is not PROJECT\/JOBSET/],
    [['jobset', 'create', 'shop/main', '--expr', join(exprDir, 'nope.nix')], 2, /expression file '.*nope\.nix' does not exist/],
    [['jobset', 'create', 'shop/main', '--expr', file, '--shares', '0'], 2, /scheduling shares \(--shares\) must be an integer ≥ 1 \(got 0\)/],
  ];
  // Independent and read-only: run them side by side.
  const results = await Promise.all(cases.map(([args]) => cli(args)));
  cases.forEach(([args, code, message], i) => {
    const r = results[i]!;
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
  });
  assert.equal(await count('jobsets'), before);

  const ok = await cli(['jobset', 'create', 'shop/main', '--expr', file, '--input', 'flavour=spicy', '--input', 'official=true', '--input', `data=${exprDir}`, '--shares', '250', '--check-interval', '60', '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  const doc = JSON.parse(ok.stdout);
  const js = (await pool.query('SELECT id, nixexprinput, nixexprpath, schedulingshares, checkinterval, enabled, type, emailoverride FROM jobsets WHERE project = $1 AND name = $2', ['shop', 'main'])).rows[0];
  assert.deepEqual(js, {id: doc.id, nixexprinput: 'src', nixexprpath: 'release.nix', schedulingshares: 250, checkinterval: 60, enabled: 1, type: 0, emailoverride: ''});
  const inputs = (await pool.query(
    `SELECT i.name, i.type, a.altnr, a.value FROM jobsetinputs i JOIN jobsetinputalts a ON a.project = i.project AND a.jobset = i.jobset AND a.input = i.name
      WHERE i.project = 'shop' AND i.jobset = 'main' ORDER BY i.name`,
  )).rows;
  assert.deepEqual(inputs, [
    {name: 'data', type: 'path', altnr: 0, value: exprDir},
    {name: 'flavour', type: 'string', altnr: 0, value: 'spicy'},
    {name: 'official', type: 'boolean', altnr: 0, value: 'true'},
    {name: 'src', type: 'path', altnr: 0, value: exprDir},
  ]);

  await assert.rejects(createJobset(pool, {project: 'shop', name: 'main', exprFile: file}), {kind: 'conflict', message: "jobset 'shop/main' already exists"});
});

test('eval: queues builds; an empty database and a broken expression are clear errors', {timeout: 120_000}, async () => {
  const [noSchema, unknown] = await Promise.all([runCli(['--database-url', empty.url, 'eval', 'shop/main'], env), cli(['eval', 'shop/nope'])]);
  assert.equal(noSchema.code, 1);
  assert.match(noSchema.stderr, /no Hydra schema yet: run `hydra-ops db init`/);

  assert.equal(unknown.code, 3);
  assert.match(unknown.stderr, /jobset 'shop\/nope' does not exist/);

  const file = join(dir, 'cli-jobs.nix');
  await writeFile(
    file,
    `{ system, greeting }:
{ hello = derivation { name = "cli-hello"; builder = "/bin/sh"; args = [ "-c" "echo \${greeting} > $out" ]; inherit system; }; }
`,
  );
  await createJobset(pool, {project: 'shop', name: 'cli', exprFile: file, inputs: [{name: 'greeting', type: 'string', value: 'hi'}]});
  const r = await cli(['eval', 'shop/cli', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.hasnewbuilds, 1);
  assert.equal(doc.builds.length, 1);
  assert.equal(doc.builds[0].job, 'hello');
  const b = (await pool.query('SELECT job, nixname, finished, drvpath FROM builds WHERE id = $1', [doc.builds[0].id])).rows[0];
  assert.deepEqual({...b, drvpath: undefined}, {job: 'hello', nixname: 'cli-hello', finished: 0, drvpath: undefined});
  assert.equal(b.drvpath, doc.builds[0].drvpath);

  await writeFile(file, '{ system, greeting }: { hello = ; }\n');
  const broken = await cli(['eval', 'shop/cli']);
  assert.equal(broken.code, 1);
  assert.match(broken.stderr, /evaluation of shop\/cli failed:\n\s+error: syntax error/);
  assert.match(broken.stdout, /failed; nothing was queued/);
  assert.equal(await count('builds b JOIN jobsets j ON j.id = b.jobset_id WHERE j.project = $1 AND j.name = $2', ['shop', 'cli']), 1);
});

test('enqueue: real .drv paths become queued builds; missing paths exit 3 and write nothing', {timeout: 120_000}, async () => {
  const drvs = await nix.instantiate(`let mk = n: derivation { name = n; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; system = builtins.currentSystem; outputs = [ "out" "doc" ]; }; in [ (mk "enq-a-${nix.nonce}") (mk "enq-b-${nix.nonce}") ]`);
  assert.equal(drvs.length, 2);
  const before = await count('builds');

  const missing = await cli(['enqueue', drvs[0]!, '/nix/store/00000000000000000000000000000000-absent.drv', '--jobset', 'shop/main']);
  assert.equal(missing.code, 3);
  assert.match(missing.stderr, /derivation '\/nix\/store\/0{32}-absent\.drv' does not exist/);
  const enqueue = (drvPaths: string[], jobset = 'main') => enqueueDerivations(pool, {project: 'shop', jobset, drvPaths});
  await assert.rejects(enqueue(['/etc/passwd']), {kind: 'usage', message: /not a store derivation path/});
  await assert.rejects(enqueue([drvs[0]!], 'absent'), {kind: 'not-found', message: "jobset 'shop/absent' does not exist"});
  assert.equal(await count('builds'), before);

  const ok = await cli(['enqueue', ...drvs, '--jobset', 'shop/main', '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  const doc = JSON.parse(ok.stdout);
  assert.deepEqual(doc.builds.map((b: {isnew: number}) => b.isnew), [1, 1]);
  const rows = (await pool.query('SELECT b.id, b.job, b.nixname, b.drvpath, b.finished, b.iscurrent, b.priority, b.maxsilent, b.timeout, b.system FROM builds b WHERE b.id = ANY($1::int[]) ORDER BY b.id', [doc.builds.map((b: {id: number}) => b.id)])).rows;
  assert.deepEqual(rows.map((r) => r.drvpath), drvs);
  assert.equal(rows[0].job, `enq-a-${nix.nonce}`);
  assert.deepEqual([rows[0].finished, rows[0].iscurrent, rows[0].priority, rows[0].maxsilent, rows[0].timeout], [0, 0, 100, 7200, 36000]);
  const outs = (await pool.query('SELECT name, path FROM buildoutputs WHERE build = $1 ORDER BY name', [rows[0].id])).rows;
  const {execa} = await import('execa');
  const nixOuts = (await execa('nix-store', ['--query', '--outputs', drvs[0]!])).stdout.split('\n').sort();
  assert.deepEqual(outs.map((o) => o.name), ['doc', 'out']);
  assert.deepEqual(outs.map((o) => o.path).sort(), nixOuts);

  const again = await cli(['enqueue', drvs[0]!, '--jobset', 'shop/main']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /already queued/);
  assert.equal(await count('builds'), before + 2);
});

test('demo --no-console sets up demo/main and queues the demo jobs; re-running queues nothing new', {timeout: 120_000}, async () => {
  const r = await cli(['demo', '--no-console', '--slow-seconds', '1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.jobset, 'demo/main');
  assert.match(doc.nix, /nix-instantiate \(Nix\)/);
  assert.equal(doc.eval.hasnewbuilds, 1);
  const jobs: string[] = doc.eval.builds.map((b: {job: string}) => b.job);
  assert.equal(jobs.length, 35);
  for (const j of ['core-runtime', 'legacy-compat', 'build-info', 'ml-inference', 'release-tarball', 'tests.integration', 'sdk']) assert.ok(jobs.includes(j), j);
  const input = (await pool.query(`SELECT a.value FROM jobsetinputalts a WHERE a.project = 'demo' AND a.jobset = 'main' AND a.input = 'slowSeconds'`)).rows[0];
  assert.equal(input.value, '1');
  assert.equal((await pool.query(`SELECT owner FROM projects WHERE name = 'demo'`)).rows[0].owner, 'operator');

  const again = await cli(['demo', '--no-console', '--slow-seconds', '1']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /unchanged \(hasNewBuilds = 0\)/);
  assert.equal(await count(`builds b JOIN jobsets j ON j.id = b.jobset_id WHERE j.project = 'demo'`), 35);
});

test('demo without Nix still sets up and says what to install and what works without it', {timeout: 120_000}, async () => {
  const fresh = await freshDatabase('evalcli_nonix');
  try {
    const r = await runCli(['--database-url', fresh.url, 'demo', '--no-console'], {...env, PATH: join(dir, 'no-such-bin')});
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Nix is not installed \(nix-instantiate is not on PATH\)/);
    assert.match(r.stderr, /apt-get install nix-bin/);
    assert.match(r.stderr, /Works without Nix: browsing an existing Hydra database/);
    const c = new pg.Client({connectionString: fresh.url});
    await c.connect();
    try {
      assert.equal((await c.query(`SELECT count(*)::int AS n FROM jobsets WHERE project = 'demo' AND name = 'main'`)).rows[0].n, 1);
      assert.equal((await c.query('SELECT count(*)::int AS n FROM builds')).rows[0].n, 0);
    } finally {
      await c.end();
    }
  } finally {
    await fresh.drop();
  }
});

test('argument validation: each bad value is named, and nothing is written', {timeout: 60_000}, async () => {
  const before = {projects: await count('projects'), jobsets: await count('jobsets'), users: await count('users')};
  assert.throws(() => parseJobsetRef('a/b/c'), {kind: 'usage', message: "'a/b/c' is not PROJECT/JOBSET (for example demo/main)"});
  assert.throws(() => parseJobsetRef('9x/main'), {kind: 'usage', message: /invalid project name '9x'/});
  assert.throws(() => parseJobsetRef('p/bad name'), {kind: 'usage', message: /invalid jobset name 'bad name'/});
  assert.deepEqual(parseJobsetRef('nixpkgs:trunk'), {project: 'nixpkgs', jobset: 'trunk'});
  assert.throws(() => intOption('lots', '--shares'), /--shares expects a whole number, got 'lots'/);
  assert.throws(() => parseInputArg('x:number=1'), {kind: 'usage', message: /unknown input type 'number'/});
  assert.throws(() => parseInputArg('=1'), {kind: 'usage', message: /expected NAME=VALUE/});
  assert.throws(() => parseInputArg('flag:boolean=yes'), {kind: 'usage', message: /'true' or 'false'/});
  assert.throws(() => parseInputArg(`p:path=${join(dir, 'absent')}`), {kind: 'usage', message: /does not exist/});
  assert.deepEqual(parseInputArg('official=false'), {name: 'official', type: 'boolean', value: 'false'});
  assert.deepEqual(parseInputArg('msg=a/b'), {name: 'msg', type: 'string', value: 'a/b'});
  assert.deepEqual(parseInputArg('here=./', dir), {name: 'here', type: 'path', value: dir});

  const file = join(dir, 'shop', 'release.nix');
  const jobset = (o: Partial<Parameters<typeof createJobset>[1]>) => createJobset(pool, {project: 'shop', name: 'v', exprFile: file, ...o});
  await assert.rejects(jobset({shares: -5}), {kind: 'usage', message: /scheduling shares .* ≥ 1 \(got -5\)/});
  await assert.rejects(jobset({checkInterval: -1}), {kind: 'usage', message: /check interval .* ≥ 0 \(got -1\)/});
  await assert.rejects(jobset({inputs: [{name: 'src', type: 'string', value: 'x'}]}), {kind: 'usage', message: /input name 'src' is taken/});
  await assert.rejects(jobset({inputs: [{name: 'a', type: 'string', value: 'x'}, {name: 'a', type: 'string', value: 'y'}]}), {kind: 'usage', message: /input 'a' is given twice/});
  await assert.rejects(jobset({exprFile: dir}), {kind: 'usage', message: /is not a file/});
  await assert.rejects(jobset({enabled: 7}), {kind: 'usage'});
  await assert.rejects(createProject(pool, {name: '9lives', owner: 'operator'}), {kind: 'usage', message: /invalid project name '9lives'/});
  await assert.rejects(createProject(pool, {name: 'other', owner: 'nobody'}), {kind: 'not-found', message: /user 'nobody' does not exist/});
  assert.deepEqual({projects: await count('projects'), jobsets: await count('jobsets'), users: await count('users')}, before);
});

test('a user with no roles (old behaviour: could redefine any project\'s jobset) gets exit 4 from jobset create --replace, eval, enqueue and project create; refusals are audited, the jobset is unchanged', {timeout: 120_000}, async () => {
  await pool.query(`INSERT INTO users (username, emailaddress, password) VALUES ('jo', '', '!'), ('mallory', '', '!') ON CONFLICT DO NOTHING`);
  await pool.query(`INSERT INTO projects (name, displayname, owner) VALUES ('otherproj', 'Other', 'jo') ON CONFLICT DO NOTHING`);
  const exprDir = join(dir, 'otherproj');
  await import('node:fs/promises').then((fs) => fs.mkdir(exprDir, {recursive: true}));
  const good = join(exprDir, 'release.nix');
  await writeFile(good, '{ }: { }\n');
  const evil = join(dir, 'evil.nix');
  await writeFile(evil, '{ }: { pwned = builtins.readFile /etc/passwd; }\n');
  assert.equal((await cli(['jobset', 'create', 'otherproj/main', '--expr', good])).code, 0);
  const snapshot = async () => (await pool.query(
    `SELECT j.nixexprinput, j.nixexprpath, j.schedulingshares, array_agg(a.value ORDER BY a.input) AS values
       FROM jobsets j JOIN jobsetinputalts a ON a.project = j.project AND a.jobset = j.name
      WHERE j.project = 'otherproj' AND j.name = 'main' GROUP BY j.nixexprinput, j.nixexprpath, j.schedulingshares`,
  )).rows[0];
  const before = await snapshot();
  const mallory = {HYDRA_OPS_USER: 'mallory', HYDRA_OPS_CONFIG_DIR: join(dir, 'settings-mallory')};
  const auditBefore = await count('hydra_ops.audit_log');

  const replace = await cli(['jobset', 'create', 'otherproj/main', '--replace', '--expr', evil], mallory);
  assert.equal(replace.code, 4, replace.stderr);
  assert.match(replace.stderr, /Hydra user "mallory" may not change the jobsets or queue of project "otherproj"/);
  assert.deepEqual(await snapshot(), before, 'the jobset is unchanged');
  const evalRun = await cli(['eval', 'otherproj/main'], mallory);
  assert.equal(evalRun.code, 4, evalRun.stderr);
  const evals = await count('jobsetevals j JOIN jobsets s ON s.id = j.jobset_id WHERE s.project = $1', ['otherproj']);
  assert.equal(evals, 0, 'no eval recorded');
  const [drv] = await nix.instantiate('derivation { name = "m"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "echo > $out"]; }');
  const enq = await cli(['enqueue', drv!, '--jobset', 'otherproj/main'], mallory);
  assert.equal(enq.code, 4, enq.stderr);
  const proj = await cli(['project', 'create', 'mallorys', '--create-owner'], mallory);
  assert.equal(proj.code, 4, proj.stderr);
  assert.match(proj.stderr, /may not create projects \(needs role "admin" or "create-projects"\)/);
  assert.equal(await count('projects WHERE name = $1', ['mallorys']), 0);

  // Refusals are audited as refused (like every other refused mutation), with the Unix user beside the Hydra user.
  const audit = (await pool.query(`SELECT action, outcome, hydra_user, unix_user, unix_uid FROM hydra_ops.audit_log ORDER BY id DESC LIMIT 4`)).rows.reverse();
  assert.equal(await count('hydra_ops.audit_log'), auditBefore + 4);
  assert.deepEqual(audit.map((a) => [a.action, a.outcome, a.hydra_user]), [
    ['jobset-create-replace', 'refused', 'mallory'],
    ['eval', 'refused', 'mallory'],
    ['enqueue', 'refused', 'mallory'],
    ['project-create', 'refused', 'mallory'],
  ]);
  assert.equal(audit[0].unix_uid, process.getuid!());
  assert.ok(audit[0].unix_user);

  // The project's owner may; the success is audited in the same transaction.
  const jo = await cli(['jobset', 'create', 'otherproj/main', '--replace', '--expr', good, '--shares', '7'], {...mallory, HYDRA_OPS_USER: 'jo', SUDO_USER: 'alice'});
  assert.equal(jo.code, 0, jo.stderr);
  const last = (await pool.query(`SELECT action, outcome, hydra_user, sudo_user FROM hydra_ops.audit_log ORDER BY id DESC LIMIT 1`)).rows[0];
  assert.deepEqual(last, {action: 'jobset-create-replace', outcome: 'ok', hydra_user: 'jo', sudo_user: 'alice'});
});

test('eval is restricted (old behaviour: an expression could read any file the operator can, e.g. ~/.ssh, and the environment): reading outside the inputs fails with Nix\'s error in the eval\'s errors', {timeout: 120_000}, async () => {
  await pool.query(`INSERT INTO users (username, emailaddress, password) VALUES ('jo', '', '!') ON CONFLICT DO NOTHING`);
  await pool.query(`INSERT INTO projects (name, displayname, owner) VALUES ('shop', 'Shop', 'jo') ON CONFLICT DO NOTHING`);
  const exprDir = join(dir, 'restricted');
  await import('node:fs/promises').then((fs) => fs.mkdir(exprDir, {recursive: true}));
  const secret = join(dir, 'secret.txt');
  await writeFile(secret, 'hunter2\n');
  const file = join(exprDir, 'release.nix');
  await writeFile(
    file,
    `{ system }:
{ leak = derivation { name = "leak-\${builtins.hashString "md5" (builtins.readFile ${secret})}"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; inherit system; }; }
`,
  );
  await createJobset(pool, {project: 'shop', name: 'restricted', exprFile: file});
  const r = await cli(['eval', 'shop/restricted', '--json'], {HYDRA_TEST_SECRET: 'hunter2'});
  const doc = JSON.parse(r.stdout);
  const messages = [doc.error ?? '', ...doc.jobErrors.map((e: {message: string}) => e.message)].join('\n');
  assert.match(messages, /forbidden in restricted mode|not allowed in restricted mode/, messages);
  assert.equal(doc.builds.length, 0, 'nothing was queued');
  const stored = await pool.query(
    `SELECT e.errormsg FROM jobsetevals v JOIN jobsets j ON j.id = v.jobset_id JOIN evaluationerrors e ON e.id = v.evaluationerror_id
      WHERE j.project = 'shop' AND j.name = 'restricted' ORDER BY v.id DESC LIMIT 1`,
  );
  assert.match(stored.rows[0].errormsg, /restricted mode/);

  // builtins.getEnv sees nothing.
  await writeFile(
    file,
    `{ system }:
{ env = derivation { name = "env-\${builtins.getEnv "HYDRA_TEST_SECRET"}x"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; inherit system; }; }
`,
  );
  const e = await cli(['eval', 'shop/restricted', '--json'], {HYDRA_TEST_SECRET: 'hunter2'});
  assert.equal(e.code, 0, e.stderr);
  const b = (await pool.query('SELECT nixname FROM builds WHERE id = $1', [JSON.parse(e.stdout).builds[0].id])).rows[0];
  assert.equal(b.nixname, 'env-x');

  // The inputs are readable in full: a file beside the expression, inside its `src` input, is (README.md says so).
  await writeFile(join(exprDir, 'data.txt'), 'inside\n');
  await writeFile(
    file,
    `{ system }:
{ inside = derivation { name = "in-\${builtins.replaceStrings ["\\n"] [""] (builtins.readFile ./data.txt)}"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; inherit system; }; }
`,
  );
  const inside = await cli(['eval', 'shop/restricted', '--json']);
  assert.equal(inside.code, 0, inside.stderr);
  assert.equal((await pool.query('SELECT nixname FROM builds WHERE id = $1', [JSON.parse(inside.stdout).builds[0].id])).rows[0].nixname, 'in-inside');

  // A secret next to an expression that lies outside every input (old behaviour: the expression's own directory
  // went on the search path, so the secret beside it was readable): the expression is not evaluated.
  const outside = join(dir, 'outside');
  await import('node:fs/promises').then((fs) => fs.mkdir(outside, {recursive: true}));
  await writeFile(join(outside, 'secret.txt'), 'hunter3\n');
  await writeFile(
    join(outside, 'release.nix'),
    `{ system }:
{ leak = derivation { name = "leak-\${builtins.hashString "md5" (builtins.readFile ./secret.txt)}"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; inherit system; }; }
`,
  );
  await createJobset(pool, {project: 'shop', name: 'escape', exprFile: file});
  await pool.query(`UPDATE jobsets SET nixexprpath = '../outside/release.nix' WHERE project = 'shop' AND name = 'escape'`);
  const esc = await cli(['eval', 'shop/escape', '--json']);
  const escDoc = JSON.parse(esc.stdout);
  assert.match(escDoc.error ?? '', /the expression .*outside\/release\.nix is outside the jobset's path inputs \(src = /, esc.stdout);
  assert.equal(escDoc.builds.length, 0, 'nothing was queued');
  assert.equal(await count(`builds WHERE nixname LIKE 'leak-%'`), 0, 'the secret never reached a derivation');
  const escStored = await pool.query(
    `SELECT e.errormsg FROM jobsetevals v JOIN jobsets j ON j.id = v.jobset_id JOIN evaluationerrors e ON e.id = v.evaluationerror_id
      WHERE j.project = 'shop' AND j.name = 'escape' ORDER BY v.id DESC LIMIT 1`,
  );
  assert.match(escStored.rows[0].errormsg, /outside the jobset's path inputs/);
});

test('demo goes through the guarded actions (old behaviour: any user took over the demo project, replacing its owner, and evaluated it unaudited): a fresh database gets the acting user as its first user; another user gets exit 4 and changes nothing', {timeout: 240_000}, async () => {
  const fresh = await freshDatabase('evalcli_demo_roles');
  const c = new pg.Client({connectionString: fresh.url});
  await c.connect();
  const as = (user: string, args: string[]) =>
    runCli(['--database-url', fresh.url, 'demo', '--no-console', ...args], {...env, HYDRA_OPS_USER: user, HYDRA_OPS_CONFIG_DIR: join(dir, `settings-demo-${user}`)});
  const n = async (sql: string, params: unknown[] = []) => (await c.query<{n: number}>(`SELECT count(*)::int AS n FROM ${sql}`, params)).rows[0]!.n;
  try {
    assert.equal((await runCli(['--database-url', fresh.url, 'db', 'init'], env)).code, 0);

    // Once the database has a Hydra user, an unknown user cannot bootstrap itself through the demo.
    await c.query(`INSERT INTO users (username, emailaddress, password) VALUES ('jo', '', '!')`);
    const early = await as('alice', ['--slow-seconds', '1']);
    assert.equal(early.code, 4, early.stderr);
    assert.match(early.stderr, /Hydra user "alice" .*does not exist in the database/);
    assert.equal(await n('projects'), 0);
    assert.equal(await n('users'), 1);
    await c.query(`DELETE FROM users WHERE username = 'jo'`);

    // A fresh database (no Hydra user): the acting user becomes its first user, owning the project, with no role.
    const first = await as('alice', ['--slow-seconds', '1', '--json']);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(JSON.parse(first.stdout).eval.hasnewbuilds, 1);
    assert.deepEqual((await c.query(`SELECT username FROM users`)).rows, [{username: 'alice'}]);
    assert.equal(await n('userroles'), 0, 'no role is granted');
    assert.equal((await c.query(`SELECT owner FROM projects WHERE name = 'demo'`)).rows[0].owner, 'alice');
    const okAudit = (await c.query(`SELECT action, outcome, hydra_user FROM hydra_ops.audit_log WHERE outcome = 'ok' ORDER BY id`)).rows;
    assert.deepEqual(okAudit.map((a) => [a.action, a.hydra_user]), [
      ['project-create', 'alice'],
      ['jobset-create-replace', 'alice'],
      ['eval', 'alice'],
    ]);

    // Another user — unknown, then known without rights — may not redefine the demo jobset or evaluate it.
    const input = async () => (await c.query(`SELECT value FROM jobsetinputalts WHERE project = 'demo' AND jobset = 'main' AND input = 'slowSeconds'`)).rows[0].value as string;
    const evals = await n('jobsetevals');
    for (const step of ['unknown', 'known'] as const) {
      if (step === 'known') await c.query(`INSERT INTO users (username, emailaddress, password) VALUES ('mallory', '', '!')`);
      const take = await as('mallory', ['--slow-seconds', '7']);
      assert.equal(take.code, 4, `${step}: ${take.stderr}`);
      assert.match(take.stderr, step === 'unknown' ? /Hydra user "mallory" .*does not exist/ : /Hydra user "mallory" may not change the jobsets or queue of project "demo"/);
      assert.equal((await c.query(`SELECT owner FROM projects WHERE name = 'demo'`)).rows[0].owner, 'alice', 'the owner is kept');
      assert.equal(await input(), '1', 'the jobset is unchanged');
      assert.equal(await n('jobsetevals'), evals, 'no eval');
    }
    const refused = (await c.query(`SELECT action, hydra_user FROM hydra_ops.audit_log WHERE outcome = 'refused' ORDER BY id`)).rows;
    assert.deepEqual(refused.map((a) => [a.action, a.hydra_user]), [
      ['project-create', 'alice'],
      ['jobset-create-replace', 'mallory'],
      ['jobset-create-replace', 'mallory'],
    ]);

    // The owner may run it again.
    const again = await as('alice', ['--slow-seconds', '2']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(await input(), '2');
  } finally {
    await c.end();
    await fresh.drop();
  }
});
