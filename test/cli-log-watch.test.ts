// `log -f` and `watch` end to end: the real CLI follows the log of a real nix-build as it is written and
// ends by itself when the step is finalised; `watch` turns the runner's NOTIFYs and a polled busy-phase
// change into NDJSON events of the documented shapes.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {spawn, type ChildProcess} from 'node:child_process';
import {randomBytes} from 'node:crypto';
import {mkdirSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {dirname, join} from 'node:path';
import {execFileSync} from 'node:child_process';
import pg from 'pg';
import {freshDatabase, type TestDatabase} from './support/pg.js';
import {insertBuild, insertBuildStep, insertJobset, insertUser, type JobsetRow} from './support/fixtures.js';
import {shapeErrors, type Shape} from './support/json-shape.js';
import {initSchema} from '../source/db/schema.js';
import {drvLogBucketPath} from '../source/nix/store.js';

import {cliArgs} from './support/cli.js';

let tdb: TestDatabase;
let pool: pg.Pool;
let base: string;
let env: NodeJS.ProcessEnv;
let js: JobsetRow;
const children: ChildProcess[] = [];

before(async () => {
  tdb = await freshDatabase('cli_log_watch');
  pool = new pg.Pool({connectionString: tdb.url, max: 4});
  await initSchema(pool);
  await insertUser(pool, {userName: 'admin', roles: ['admin']});
  js = await insertJobset(pool);
  base = mkdtempSync(join(tmpdir(), 'hydra-ops-log-watch-'));
  env = {
    ...process.env,
    NO_COLOR: '1',
    HYDRA_DATABASE_URL: tdb.url,
    HYDRA_DATA: join(base, 'data'),
    HYDRA_OPS_CONFIG_DIR: join(base, 'settings'),
    HYDRA_CONFIG: '',
    NIX_REMOTE_SYSTEMS: '',
    HYDRA_OPS_USER: 'admin',
  };
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await pool?.end().catch(() => {});
  await tdb?.drop();
  rmSync(base, {recursive: true, force: true});
});

/** Starts the CLI; collects stdout lines with their arrival times. */
function startCli(args: string[]) {
  const child = spawn(process.execPath, [...cliArgs(), ...args], {env, stdio: ['ignore', 'pipe', 'pipe']});
  children.push(child);
  const lines: {text: string; at: number}[] = [];
  let buf = '';
  let stderr = '';
  const waiters: {pred: () => boolean; resolve: () => void}[] = [];
  const check = () => {
    for (const w of waiters.splice(0)) (w.pred() ? w.resolve : () => waiters.push(w))();
  };
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const p of parts) lines.push({text: p, at: Date.now()});
    check();
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    check();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const until = (pred: () => boolean, what: string, ms = 30_000) =>
    new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}; stdout ${JSON.stringify(lines.map((l) => l.text))}; stderr ${stderr}`)), ms);
      waiters.push({pred, resolve: () => (clearTimeout(t), resolve())});
      check();
    });
  return {child, lines, exited, until, stderr: () => stderr};
}

test('log -f follows a real build log as it is written and ends when the step ends', {timeout: 120_000}, async () => {
  const dir = join(base, 'expr');
  mkdirSync(dir, {recursive: true});
  const tag = randomBytes(4).toString('hex');
  // The builder runs with an empty PATH: name sleep by its absolute path on this machine.
  const sleep = execFileSync('sh', ['-c', 'command -v sleep'], {encoding: 'utf8'}).trim();
  writeFileSync(
    join(dir, 'default.nix'),
    `derivation { name = "hydra-ops-log-${tag}"; system = builtins.currentSystem; builder = "/bin/sh";
       args = [ "-c" "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo log-line-$i >&2; ${sleep} 0.5; done; echo done > $out" ]; }`,
  );
  const drv = execFileSync('nix-instantiate', [join(dir, 'default.nix')], {encoding: 'utf8'}).trim();
  const build = await insertBuild(pool, {jobsetId: js.id, drvPath: drv});
  const stepnr = await insertBuildStep(pool, {build, drvPath: drv, busy: 30, machine: 'localhost'});
  const logPath = drvLogBucketPath(join(base, 'data'), drv);
  mkdirSync(dirname(logPath), {recursive: true});
  writeFileSync(logPath, '');

  const follow = startCli(['log', `${build}`, '-f', '--json', '--poll-ms', '100']);
  await new Promise((r) => setTimeout(r, 1500)); // the follower is up and polling an empty log
  const fd = openSync(logPath, 'w');
  const nix = spawn('nix-build', ['--no-out-link', '--option', 'substituters', '', drv], {stdio: ['ignore', 'ignore', fd]});
  children.push(nix);
  const nixDone = new Promise<number | null>((resolve) => nix.on('exit', (code) => resolve(code)));
  let nixEndedAt = 0;
  void nixDone.then(() => (nixEndedAt = Date.now()));

  await follow.until(() => follow.lines.some((l) => l.text.includes('log-line-1')), 'the first log line');
  const firstAt = follow.lines.find((l) => l.text.includes('log-line-1'))!.at;
  assert.equal(await nixDone, 0, 'nix-build succeeded');
  closeSync(fd);
  assert.ok(firstAt < nixEndedAt, 'the first line arrived while the build was still running');
  assert.equal(follow.child.exitCode, null, 'log -f keeps following while the step is busy');

  await pool.query('UPDATE BuildSteps SET busy = 0, status = 0, stopTime = $3 WHERE build = $1 AND stepnr = $2', [build, stepnr, Math.floor(Date.now() / 1000)]);
  assert.equal(await follow.exited, 0, 'log -f ends by itself once the step is finalised');

  const events = follow.lines.map((l) => JSON.parse(l.text));
  const lineShape: Shape = {type: 'string', build: 'number', stepnr: '?number', drvpath: 'string', text: 'string'};
  const endShape: Shape = {type: 'string', build: 'number', stepnr: '?number', drvpath: 'string', status: '?number', logFound: 'boolean'};
  for (const e of events) assert.deepEqual(shapeErrors(e, e.type === 'end' ? endShape : lineShape), [], JSON.stringify(e));
  const texts = events.filter((e) => e.type === 'line').map((e) => e.text);
  for (let i = 1; i <= 12; i++) assert.ok(texts.some((t: string) => t.includes(`log-line-${i}`)), `line ${i} printed`);
  assert.deepEqual(events.at(-1), {type: 'end', build, stepnr, drvpath: drv, status: 0, logFound: true});

  // Compressed logs are found too once the plain file is gone (as hydra-notify's CompressLog leaves them).
  execFileSync('bzip2', [logPath]);
  const plain = await new Promise<string>((resolve) => {
    const c = spawn(process.execPath, [...cliArgs(), 'log', `${build}/${stepnr}`, '--tail', '2'], {env, stdio: ['ignore', 'pipe', 'inherit']});
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', () => resolve(out));
  });
  assert.match(plain, /log-line-12/);
  assert.doesNotMatch(plain, /log-line-1\b/);
});

test('watch emits NDJSON events for build/step start and finish and for polled phase changes', {timeout: 120_000}, async () => {
  const build = await insertBuild(pool, {jobsetId: js.id});
  const dependent = await insertBuild(pool, {jobsetId: js.id});
  const watch = startCli(['watch', '--poll-ms', '150']);
  await watch.until(() => watch.stderr().includes('watching'), 'watch to start');

  const notify = (channel: string, payload: string) => pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
  await notify('build_started', String(build));
  const stepnr = await insertBuildStep(pool, {build, busy: 1, machine: 'ssh://builder1'});
  await notify('step_started', `${build}\t${stepnr}`);
  await watch.until(() => watch.lines.some((l) => l.text.includes('"step_phase"') && l.text.includes('"busy":1')), 'phase preparing');
  await pool.query('UPDATE BuildSteps SET busy = 30 WHERE build = $1 AND stepnr = $2', [build, stepnr]);
  await watch.until(() => watch.lines.some((l) => l.text.includes('"busy":30')), 'phase building');
  await pool.query('UPDATE BuildSteps SET busy = 0, status = 0, stoptime = 1 WHERE build = $1 AND stepnr = $2', [build, stepnr]);
  await notify('step_finished', `${build}\t${stepnr}\t-`);
  await pool.query('UPDATE Builds SET finished = 1, buildstatus = 0, starttime = 1, stoptime = 2 WHERE id = $1', [build]);
  await notify('build_finished', `${build}\t${dependent}`);
  await watch.until(() => watch.lines.some((l) => l.text.includes('"build_finished"')), 'build_finished');
  watch.child.kill('SIGTERM');
  assert.equal(await watch.exited, 0, 'SIGTERM ends watch cleanly');

  const events = watch.lines.map((l) => JSON.parse(l.text));
  const shapes: Record<string, Shape> = {
    build_started: {event: 'string', time: 'number', build: 'number'},
    step_started: {event: 'string', time: 'number', build: 'number', stepnr: 'number'},
    step_phase: {event: 'string', time: 'number', build: 'number', stepnr: 'number', busy: 'number', phase: 'string'},
    step_finished: {event: 'string', time: 'number', build: 'number', stepnr: 'number', logPath: '?string', status: '?number'},
    build_finished: {event: 'string', time: 'number', build: 'number', dependents: ['number'], buildstatus: '?number'},
  };
  for (const e of events) assert.deepEqual(shapeErrors(e, shapes[e.event] ?? {}), [], JSON.stringify(e));
  const strip = events.map(({time: _t, ...rest}) => rest);
  assert.deepEqual(strip, [
    {event: 'build_started', build},
    {event: 'step_started', build, stepnr},
    {event: 'step_phase', build, stepnr, busy: 1, phase: 'preparing'},
    {event: 'step_phase', build, stepnr, busy: 30, phase: 'building'},
    {event: 'step_finished', build, stepnr, logPath: null, status: 0},
    {event: 'build_finished', build, dependents: [dependent], buildstatus: 0},
  ]);
});
