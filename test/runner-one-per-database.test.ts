// One runner per database, with the real processes: `hydra-ops --daemon` (data directory A) builds a
// slow step on a real sshd builder; a console opened on the same database with another data
// directory (B) and --scheduler must attach to the daemon instead of starting a second runner —
// the busy row stays as it is, nothing is dispatched twice, the build succeeds once. A second daemon
// with a third data directory is refused with the holder named; `db status` and `unlock` report the
// holder and unlock refuses while it is held.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {execFileSync} from 'node:child_process';
import {chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {hostname, tmpdir} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import pg from 'pg';
import {freshDatabase} from './support/pg.js';
import {startFleet} from './support/fleet.js';
import {nixFixture} from './support/nix-fixtures.js';
import {mkPrelude} from './support/runner-rig.js';
import {insertJobset} from './support/fixtures.js';
import {cliArgs, runCli, startDaemonProcess, type DaemonProcess} from './support/cli.js';
import {waitFor} from './support/wait.js';
import {initSchema} from '../source/db/schema.js';
import {readDrv, outputPathMap} from '../source/nix/drv.js';

const root = fileURLToPath(new URL('..', import.meta.url));

type Proc = DaemonProcess;
const startDaemon = startDaemonProcess;

const tmux = (...args: string[]) => execFileSync('tmux', args, {encoding: 'utf8'});

test('a console with another data directory attaches to the daemon; no second runner, no second dispatch', {timeout: 240_000}, async () => {
  const db = await freshDatabase('one_runner');
  const pool = new pg.Pool({connectionString: db.url, max: 3});
  pool.on('error', () => {});
  const base = mkdtempSync(join(tmpdir(), 'hydra-ops-one-runner-'));
  chmodSync(base, 0o755);
  const fleet = await startFleet(1, {maxJobs: 2});
  const nix = await nixFixture('one-runner');
  const procs: Proc[] = [];
  const session = `hydra-ops-one-runner-${process.pid}`;
  let consoleStarted = false;
  const envFor = (name: string): Record<string, string> => ({
    HYDRA_DATABASE_URL: db.url,
    HYDRA_DATA: join(base, name),
    HYDRA_OPS_CONFIG_DIR: join(base, `${name}-settings`),
    NIX_REMOTE_SYSTEMS: fleet.machinesFile,
    HYDRA_CONFIG: '',
  });
  try {
    await initSchema(pool);
    // The step builds until the test removes the hold file (the fleet's shared directory is visible in its sandbox).
    const hold = join(fleet.sharedDir, 'hold');
    writeFileSync(hold, '');
    const [drvPath] = await nix.instantiate(`${mkPrelude(nix.nonce)} mk "slow-once" [] "echo start; while [ -e ${hold} ]; do sleep 0.2; done; echo done > $out"`);
    const drv = await readDrv(drvPath!);
    const js = await insertJobset(pool);
    const {rows} = await pool.query(
      `INSERT INTO Builds (finished, timestamp, jobset_id, job, nixName, drvPath, system, maxsilent, timeout, isCurrent, priority, globalPriority)
       VALUES (0, extract(epoch from now())::int, $1, 'slow-once', 'slow-once', $2, $3, 7200, 36000, 1, 100, 0) RETURNING id`,
      [js.id, drvPath, drv.platform],
    );
    const build = rows[0].id as number;
    for (const [name, path] of outputPathMap(drv)) await pool.query('INSERT INTO BuildOutputs (build, name, path) VALUES ($1, $2, $3)', [build, name, path]);

    // The daemon, data directory A.
    const daemon = startDaemon(envFor('A'));
    procs.push(daemon);
    const pid = daemon.child.pid!;
    const busyRow = await waitFor(
      'the step to build on the builder',
      async () => (await pool.query('SELECT stepnr, busy, status, starttime FROM BuildSteps WHERE build = $1 AND busy = 30', [build])).rows[0],
      90_000,
    );
    assert.equal(busyRow.status, null);

    // A second daemon with another data directory (C) is refused, the holder named.
    const second = startDaemon(envFor('C'));
    procs.push(second);
    assert.equal(await second.exited, 1);
    assert.match(second.stderr(), new RegExp(`another queue runner holds the database's runner lock: hydra-ops runner pid ${pid} on ${hostname()}`));
    assert.match(second.stderr(), /database backend pid \d+/);

    // db status (text and JSON) and unlock, from data directory B, name the holder; unlock refuses.
    const statusJson = await runCli(['db', 'status', '--json'], envFor('B'));
    assert.equal(statusJson.code, 0, statusJson.stderr);
    const lock = JSON.parse(statusJson.stdout).runnerLock;
    assert.equal(lock.state, 'held');
    assert.equal(lock.holder.runnerPid, pid);
    assert.equal(lock.holder.runnerHost, hostname());
    assert.equal(lock.holder.applicationName, `hydra-ops runner pid ${pid} on ${hostname()}`.slice(0, 63));
    assert.equal(typeof lock.holder.backendPid, 'number');
    assert.equal(lock.key, '4691883269048081648');
    const statusText = await runCli(['db', 'status'], envFor('B'));
    assert.match(statusText.stdout, new RegExp(`runner lock: held by hydra-ops runner pid ${pid} on `));
    const unlock = await runCli(['unlock', '--yes', '--local-admin'], envFor('B'));
    assert.equal(unlock.code, 1, `unlock refused with the refusal exit code: ${unlock.stdout}${unlock.stderr}`);
    assert.match(unlock.stderr, new RegExp(`holds the database's runner lock: hydra-ops runner pid ${pid} on`));
    const unlockJson = await runCli(['unlock', '--yes', '--local-admin', '--json'], envFor('B'));
    assert.equal(unlockJson.code, 1);
    assert.equal(JSON.parse(unlockJson.stdout).error.details.databaseLock.runnerPid, pid);

    // The console, data directory B, on the same database, with --scheduler allowed.
    const envB = envFor('B');
    const script = join(base, 'console.sh');
    writeFileSync(
      script,
      [
        '#!/bin/sh',
        ...Object.entries({...envB, LANG: 'C.UTF-8', HOME: base, PATH: process.env.PATH ?? '/usr/bin:/bin'}).map(([k, v]) => `export ${k}='${v}'`),
        `cd '${root}'`,
        `exec '${process.execPath}' ${cliArgs().map((a) => `'${a}'`).join(' ')} --scheduler 2>'${base}/console-stderr'`,
      ].join('\n') + '\n',
    );
    chmodSync(script, 0o755);
    tmux('new-session', '-d', '-s', session, '-x', '200', '-y', '30', script);
    consoleStarted = true;
    const screen = await waitFor(
      'the console header naming the daemon',
      () => {
        const s = tmux('capture-pane', '-p', '-t', session);
        return s.includes('attached to hydra-ops runner pid') ? s : undefined;
      },
      30_000,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\nscreen:\n${tmux('capture-pane', '-p', '-t', session)}\nstderr: ${readFileSync(join(base, 'console-stderr'), 'utf8')}`);
    });
    assert.match(screen, new RegExp(`attached to hydra-ops runner pid ${pid} on ${hostname()} \\(lock holder\\)`));
    assert.doesNotMatch(screen, /scheduler in-process/);

    // The busy row is untouched: same step, same phase, not aborted; and still exactly one step row.
    const now = await pool.query('SELECT stepnr, busy, status, starttime FROM BuildSteps WHERE build = $1', [build]);
    assert.deepEqual(now.rows, [busyRow], 'the console left the running step alone');
    const consoleLog = readFileSync(join(base, 'B', 'logs', 'console.log'), 'utf8');
    assert.match(consoleLog, /runner decision: attach/);
    assert.doesNotMatch(consoleLog, /clearBusy/);

    // The build then succeeds, once: one build, one step row, never aborted.
    rmSync(hold);
    await waitFor('the build to finish', async () => (await pool.query('SELECT finished FROM Builds WHERE id = $1', [build])).rows[0].finished === 1, 90_000);
    assert.equal((await pool.query('SELECT buildstatus FROM Builds WHERE id = $1', [build])).rows[0].buildstatus, 0);
    const steps = await pool.query('SELECT stepnr, busy, status FROM BuildSteps WHERE drvpath = $1', [drvPath]);
    assert.deepEqual(steps.rows, [{stepnr: busyRow.stepnr, busy: 0, status: 0}], 'exactly one step row, successful');
    assert.equal((await pool.query('SELECT count(*)::int AS n FROM Builds')).rows[0].n, 1);

    // Quit the console; stop the daemon; the lock is free again.
    tmux('send-keys', '-t', session, 'q');
    await waitFor('the console to exit', () => {
      try {
        tmux('has-session', '-t', session);
        return false;
      } catch {
        consoleStarted = false;
        return true;
      }
    }, 20_000);
    daemon.child.kill('SIGTERM');
    assert.equal(await daemon.exited, 0);
    const free = await runCli(['db', 'status', '--json'], envFor('B'));
    assert.deepEqual(JSON.parse(free.stdout).runnerLock.state, 'free');
    assert.match((await runCli(['db', 'status'], envFor('B'))).stdout, /runner lock: free/);
  } finally {
    if (consoleStarted) {
      try {
        tmux('kill-session', '-t', session);
      } catch {
        // already gone
      }
    }
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    await fleet.stop();
    await nix.cleanup().catch(() => {});
    await pool.end();
    await db.drop();
    rmSync(base, {recursive: true, force: true});
  }
});
