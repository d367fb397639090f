// Post-build commands end to end: the real daemon (a child process, killed with SIGKILL and restarted), a real
// sshd builder, real Nix and PostgreSQL; hydra.conf <runcommand> blocks as Hydra's RunCommand plugin reads them.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {spawn, type ChildProcess} from 'node:child_process';
import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {runnerRig, mkPrelude} from './support/runner-rig.js';
import {insertBuild} from './support/fixtures.js';
import {cliArgs, runCli} from './support/cli.js';
import {postBuildCommands, matchesJob, checkMatcher} from '../source/config/run-commands.js';
import {parseHydraConf} from '../source/config/hydra-conf.js';


function startDaemon(env: Record<string, string>, logFile: string): ChildProcess {
  const child = spawn(process.execPath, [...cliArgs(), 'daemon', '--status-address', 'off', '--log-level', 'debug', '--grace', '2'], {
    env: {...process.env, ...env},
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr!.on('data', (c: Buffer) => writeFileSync(logFile, c, {flag: 'a'}));
  return child;
}

async function kill9(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGKILL');
  await gone;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs: number, log?: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${log && existsSync(log) ? `\ndaemon log:\n${readFileSync(log, 'utf8').slice(-3000)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function lines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '') : [];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('runcommand blocks: matchers, defaults and problems', () => {
  assert.ok(matchesJob('*:*:*', 'p', 'j', 'x'));
  assert.ok(matchesJob('p', 'p', 'j', 'x'), 'missing parts match anything');
  assert.ok(matchesJob('p:release-*:*', 'p', 'release-23.11', 'x'));
  assert.ok(!matchesJob('p:release-*:*', 'p', 'trunk', 'x'));
  assert.ok(!matchesJob('p:j:hello', 'p', 'j', 'hello2'));
  assert.match(checkMatcher('a:b:c:d')!, /more than three parts/);
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-runcommand-'));
  try {
    const file = join(dir, 'hydra.conf');
    writeFileSync(
      file,
      ['<runcommand>', '  job = p:j:*', '  command = echo one', '</runcommand>', '<runcommand>', '  command = echo two', '  timeout = 5', '</runcommand>',
        '<runcommand>', '  job = p:j', '</runcommand>', '<runcommand>', '  command = x', '  timeout = soon', '</runcommand>', '<hydra-ops-runcommand>', '  job = q:*', '  command = y', '</hydra-ops-runcommand>', ''].join('\n'),
    );
    const {commands, warnings} = postBuildCommands(parseHydraConf(file));
    assert.deepEqual(commands.map((c) => [c.matcher, c.command, c.timeoutSeconds, c.source]), [
      ['p:j:*', 'echo one', 600, `${file}:1`],
      ['*:*:*', 'echo two', 5, `${file}:5`],
      ['*:*:*', 'x', 600, `${file}:12`],
      ['q:*', 'y', 600, `${file}:16`],
    ]);
    assert.equal(new Set(commands.map((c) => c.id)).size, 4);
    assert.equal(warnings.length, 2);
    assert.match(warnings[0]!, /:9: <runcommand> block without a command/);
    assert.match(warnings[1]!, /:14: timeout "soon" is not a positive number/);
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});

test('post-build commands run once per matching build, survive daemon kills, time out, skip non-matching builds', {timeout: 120_000}, async () => {
  const rig = await runnerRig({builders: 1, label: 'postbuild'});
  const work = mkdtempSync(join(tmpdir(), 'hydra-ops-postbuild-work-'));
  const daemons: ChildProcess[] = [];
  const log = join(work, 'daemon.log');
  try {
    const jsA = await rig.jobset('jsa');
    const jsB = await rig.jobset('jsb');
    const conf = join(work, 'hydra.conf');
    writeFileSync(
      conf,
      `gc_roots_dir = ${join(rig.dataDir, 'gcroots')}
<runcommand>
  job = ${jsA.project}:jsa:quick
  command = env > ${work}/quick.env; cat "$HYDRA_JSON" >> ${work}/quick.log; echo "quick ran"
</runcommand>
<runcommand>
  job = ${jsA.project}:jsa:slow
  command = sleep 2; echo x >> ${work}/slow.log
</runcommand>
<runcommand>
  job = ${jsA.project}:jsa:hang
  command = echo $$ > ${work}/hang.pid; sleep 60
  timeout = 1
</runcommand>
`,
    );
    const env = {
      HYDRA_DATABASE_URL: rig.db.url,
      HYDRA_DATA: rig.dataDir,
      HYDRA_CONFIG: conf,
      NIX_REMOTE_SYSTEMS: rig.fleet!.machinesFile,
      HYDRA_OPS_CONFIG_DIR: join(work, 'settings'),
    };
    const drvs = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      [ (mk "quick" [] "echo q > $out") (mk "slow" [] "echo s > $out") (mk "hang" [] "echo h > $out") (mk "other" [] "echo o > $out") ]`);
    const [quick, slow, hang] = await rig.queue(drvs.slice(0, 3), {jobsetId: jsA.id, jobs: ['quick', 'slow', 'hang']});
    const [other] = await rig.queue(drvs.slice(3), {jobsetId: jsB.id, jobs: ['quick']});

    const runs = async (build: number) =>
      (await rig.pool.query('SELECT status, attempts, exit_code, output, error FROM hydra_ops.post_build_runs WHERE build = $1 ORDER BY id', [build])).rows;
    const statusOf = async (build: number) => (await runs(build))[0]?.status as string | undefined;

    let d = startDaemon(env, log);
    daemons.push(d);
    await rig.waitFinished([quick!, slow!, hang!, other!], 40_000);
    // Kill the daemon while the slow command is running: it dies with the daemon and runs again later.
    await waitFor('the slow command to start', async () => (await statusOf(slow!)) === 'running', 20_000, log);
    await waitFor('the quick command to finish', async () => (await statusOf(quick!)) === 'done', 20_000, log);
    await kill9(d);
    await new Promise((r) => setTimeout(r, 2500));
    assert.deepEqual(lines(join(work, 'slow.log')), [], 'the interrupted command was killed with the daemon');

    d = startDaemon(env, log);
    daemons.push(d);
    await waitFor('the slow command to complete', async () => (await statusOf(slow!)) === 'done', 20_000, log);
    await waitFor('the hanging command to time out', async () => (await statusOf(hang!)) === 'timed-out', 20_000, log);

    // Exactly once each: the quick command finished before the kill and is not run again.
    const q = await runs(quick!);
    assert.equal(q.length, 1);
    assert.equal(q[0].attempts, 1);
    assert.equal(q[0].exit_code, 0);
    assert.match(q[0].output, /quick ran/);
    const payloads = lines(join(work, 'quick.log')).map((l) => JSON.parse(l));
    assert.equal(payloads.length, 1);
    const p = payloads[0];
    assert.equal(p.id, quick);
    assert.equal(p.build, quick);
    assert.equal(p.project, jsA.project);
    assert.equal(p.jobset, 'jsa');
    assert.equal(p.job, 'quick');
    assert.equal(p.buildStatus, 0);
    assert.equal(p.status, 'success');
    assert.equal(p.event, 'buildFinished');
    assert.equal(p.machine, rig.machines[0]!.uri);
    assert.ok(p.startTime > 0 && p.stopTime >= p.startTime);
    assert.equal(p.outputs.length, 1);
    assert.match(p.outputs[0].path, /-quick$/);
    assert.deepEqual(p.products, []);

    const s = await runs(slow!);
    assert.equal(s.length, 1);
    assert.equal(s[0].attempts, 2, 'the interrupted run ran again');
    assert.deepEqual(lines(join(work, 'slow.log')), ['x'], 'and completed exactly once');

    const h = await runs(hang!);
    assert.equal(h.length, 1);
    assert.match(h[0].error, /timeout of 1 s/);
    const hangPid = Number(readFileSync(join(work, 'hang.pid'), 'utf8'));
    await waitFor('the hanging command to be gone', async () => !alive(hangPid), 8000);

    assert.deepEqual(await runs(other!), [], 'a non-matching build runs nothing');

    // A build that finished while no daemon ran (or before the killed daemon saw it) is found by the scan.
    await kill9(d);
    const late = await insertBuild(rig.pool, {jobsetId: jsA.id, job: 'quick', finished: 1, buildStatus: 0, notificationPendingSince: Math.floor(Date.now() / 1000)});
    d = startDaemon(env, log);
    daemons.push(d);
    await waitFor('the late build\'s command', async () => (await statusOf(late)) === 'done', 20_000, log);
    assert.equal(lines(join(work, 'quick.log')).length, 2);
    assert.equal((await runs(quick!))[0].attempts, 1, 'still not re-run after another restart');
    const pending = await rig.pool.query('SELECT notificationPendingSince FROM Builds WHERE id = $1', [late]);
    assert.notEqual(pending.rows[0].notificationpendingsince, null, "hydra-notify's flag is left alone");

    // The build detail shows the command, its status and output.
    const detail = await runCli(['build', String(quick)], env);
    assert.equal(detail.code, 0, detail.stderr);
    assert.match(detail.stdout, /post-build .*:jsa:quick \(.*hydra\.conf:\d+\)/);
    // The command's environment is the minimal one: no database URL.
    const envLines = lines(join(work, 'quick.env'));
    assert.ok(envLines.some((l) => l.startsWith('HYDRA_JSON=')), envLines.join('\n'));
    assert.ok(!envLines.some((l) => /^(HYDRA_DATABASE_URL|HYDRA_DBI|DATABASE_URL|PGPASSWORD)=/.test(l)), 'no database credentials in the command environment');
    assert.match(detail.stdout, /done \(exit 0\), attempt 1/);
    assert.match(detail.stdout, /\| quick ran/);
    const json = JSON.parse((await runCli(['build', String(hang), '--json'], env)).stdout);
    assert.equal(json.postBuild[0].status, 'timed-out');

    d.kill('SIGTERM');
    await new Promise((r) => d.once('exit', r));
  } finally {
    for (const d of daemons) await kill9(d);
    await rig.close();
    rmSync(work, {recursive: true, force: true});
  }
});

interface Planted {
  rig: Awaited<ReturnType<typeof runnerRig>>;
  js: {id: number; project: string; name: string};
  work: string;
  /** hydra.conf's path. */
  conf: string;
}

/**
 * A daemon started over one planted hydra_ops.post_build_runs row. `confBody` is hydra.conf after its gc_roots_dir
 * line; `plant` inserts the builds and the row (the schema is current by then) and returns the row's id; `check`
 * gets the row once the daemon has settled it (the daemon claims a run, `running`, before it decides to skip it).
 */
async function withPlantedRun(
  label: string,
  confBody: (o: {work: string; project: string; jobset: string}) => string,
  plant: (o: Planted) => Promise<number>,
  check: (o: Planted & {runId: number; row: {status: string; error: string}; log: string}) => Promise<void>,
): Promise<void> {
  const rig = await runnerRig({label: `postbuild-${label}`});
  const work = mkdtempSync(join(tmpdir(), `hydra-ops-postbuild-${label}-`));
  const log = join(work, 'daemon.log');
  let d: ChildProcess | undefined;
  try {
    const js = await rig.jobset(`js${label}`);
    const conf = join(work, 'hydra.conf');
    writeFileSync(conf, `gc_roots_dir = ${join(rig.dataDir, 'gcroots')}\n${confBody({work, project: js.project, jobset: js.name})}`);
    const env = {
      HYDRA_DATABASE_URL: rig.db.url,
      HYDRA_DATA: rig.dataDir,
      HYDRA_CONFIG: conf,
      NIX_REMOTE_SYSTEMS: join(work, 'machines'),
      HYDRA_OPS_CONFIG_DIR: join(work, 'settings'),
    };
    writeFileSync(join(work, 'machines'), '');
    const init = await runCli(['db', 'init'], env);
    assert.equal(init.code, 0, init.stderr);
    const planted = {rig, js, work, conf};
    const runId = await plant(planted);
    d = startDaemon(env, log);
    const row = await waitFor(
      'the planted run to be settled',
      async () => (await rig.pool.query('SELECT status, error FROM hydra_ops.post_build_runs WHERE id = $1', [runId])).rows.find((r) => r.status !== 'pending' && r.status !== 'running'),
      20_000,
      log,
    );
    await check({...planted, runId, row, log});
  } finally {
    if (d) await kill9(d);
    await rig.close();
    rmSync(work, {recursive: true, force: true});
  }
}

test('a post_build_runs row inserted into the database (old behaviour: its command text ran via /bin/sh -c) is skipped, never run', {timeout: 60_000}, async () => {
  await withPlantedRun(
    'inject',
    () => '',
    async ({rig, js, work}) => {
      const build = await insertBuild(rig.pool, {jobsetId: js.id, job: 'x', finished: 1, buildStatus: 0});
      const {rows} = await rig.pool.query(
        `INSERT INTO hydra_ops.post_build_runs (build, build_stoptime, command_id, matcher, command, command_sha256)
         VALUES ($1, 1, 'deadbeefdeadbeef', '*:*:*', $2, encode(sha256(convert_to($2, 'UTF8')), 'hex')) RETURNING id`,
        [build, `touch ${join(work, 'pwned')}`],
      );
      return rows[0].id as number;
    },
    async ({row, work, log}) => {
      assert.equal(row.status, 'skipped');
      assert.match(row.error, /no command in the current hydra\.conf/);
      await new Promise((r) => setTimeout(r, 500));
      assert.ok(!existsSync(join(work, 'pwned')), 'the command text from the database never ran');
      assert.match(readFileSync(log, 'utf8'), /post-build: run \d+ for build \d+ skipped/);
    },
  );
});

test('a planted post_build_runs row with a configured command\'s id and hash for a build its job pattern does not match (old behaviour: it ran, only the id and hash were checked) is skipped and reported', {timeout: 60_000}, async () => {
  let wanted = 0;
  let other = 0;
  await withPlantedRun(
    'mismatch',
    ({work, project, jobset}) => `<runcommand>\n  job = ${project}:${jobset}:wanted\n  command = basename "$HYDRA_JSON" >> ${join(work, 'ran')}\n</runcommand>\n`,
    async ({rig, js, conf}) => {
      const [command] = postBuildCommands(parseHydraConf(conf)).commands;
      assert.ok(command);
      wanted = await insertBuild(rig.pool, {jobsetId: js.id, job: 'wanted', finished: 1, buildStatus: 0});
      other = await insertBuild(rig.pool, {jobsetId: js.id, job: 'other', finished: 1, buildStatus: 0});
      // The planted row names the configured command exactly (id and SHA-256 of its text) and claims a match-all
      // pattern, for a build the command's own pattern does not match.
      const {rows} = await rig.pool.query(
        `INSERT INTO hydra_ops.post_build_runs (build, build_stoptime, command_id, matcher, command, command_sha256)
         VALUES ($1, 1, $2, '*:*:*', $3, $4) RETURNING id`,
        [other, command.id, command.command, command.sha256],
      );
      return rows[0].id as number;
    },
    async ({row, runId, js, work, log}) => {
      assert.equal(row.status, 'skipped');
      assert.match(row.error, new RegExp(`job pattern "${js.project}:${js.name}:wanted" does not match build ${other} \\(${js.project}:${js.name}:other\\)`));
      // The same command runs for the build it matches (the daemon's own scan queued it), and only for that one.
      const ran = join(work, 'ran');
      await waitFor('the command to run for the matching build', async () => lines(ran).length > 0, 20_000, log);
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(lines(ran), [`build-${wanted}.json`]);
      assert.match(readFileSync(log, 'utf8'), new RegExp(`post-build: run ${runId} for build ${other} skipped: .*does not match`));
    },
  );
});
