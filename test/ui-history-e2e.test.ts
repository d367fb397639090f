// End to end: a real `hydra-ops --daemon` builds one job three times on a real sshd builder (the third build
// fails); the real console in a tmux pane, attached to that daemon, opens the last build and its History tab:
// three builds of the job with status, duration and machine, a duration sparkline, and the job's latest
// successful build; `]` and `[` switch tabs on the real terminal.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {execFileSync, spawn, type ChildProcess} from 'node:child_process';
import {chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import pg from 'pg';
import {freshDatabase} from './support/pg.js';
import {startFleet} from './support/fleet.js';
import {nixFixture} from './support/nix-fixtures.js';
import {mkPrelude} from './support/runner-rig.js';
import {insertJobset} from './support/fixtures.js';
import {cliArgs} from './support/cli.js';
import {waitFor} from './support/wait.js';
import {initSchema} from '../source/db/schema.js';
import {readDrv, outputPathMap} from '../source/nix/drv.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const tmux = (...args: string[]) => execFileSync('tmux', args, {encoding: 'utf8'});

test('the console on a real daemon shows the History tab of a job built three times', {timeout: 240_000}, async () => {
  const db = await freshDatabase('ui_history_e2e');
  const pool = new pg.Pool({connectionString: db.url, max: 3});
  pool.on('error', () => {});
  const base = mkdtempSync(join(tmpdir(), 'hydra-ops-history-e2e-'));
  chmodSync(base, 0o755);
  const fleet = await startFleet(1, {maxJobs: 1});
  const nix = await nixFixture('history-e2e');
  const session = `hydra-ops-history-${process.pid}`;
  let daemon: ChildProcess | null = null;
  let daemonErr = '';
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
    const js = await insertJobset(pool, {name: 'nightly'});
    daemon = spawn(process.execPath, [...cliArgs(), '--daemon', '--status-address', '127.0.0.1:0', '--grace', '2'], {
      env: {...process.env, ...envFor('A')},
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    daemon.stderr!.on('data', (d: Buffer) => (daemonErr += d.toString()));

    // The same job three times, one after the other: slower each time, the third one failing.
    const ids: number[] = [];
    for (const [i, script] of ['sleep 1; echo a > $out', 'sleep 2; echo b > $out', 'sleep 3; echo failing; exit 1'].entries()) {
      const [drvPath] = await nix.instantiate(`${mkPrelude(`${nix.nonce}-${i}`)} mk "nightly-report" [] "${script}"`);
      const drv = await readDrv(drvPath!);
      const {rows} = await pool.query(
        `INSERT INTO Builds (finished, timestamp, jobset_id, job, nixName, drvPath, system, maxsilent, timeout, isCurrent, priority, globalPriority)
         VALUES (0, extract(epoch from now())::int, $1, 'report', 'nightly-report', $2, $3, 7200, 36000, 1, 100, 0) RETURNING id`,
        [js.id, drvPath, drv.platform],
      );
      const id = rows[0].id as number;
      for (const [name, path] of outputPathMap(drv)) await pool.query('INSERT INTO BuildOutputs (build, name, path) VALUES ($1, $2, $3)', [id, name, path]);
      await pool.query("SELECT pg_notify('builds_added', $1)", [String(id)]);
      await waitFor(
        `build ${id} to finish on the daemon`,
        async () => (await pool.query('SELECT finished FROM Builds WHERE id = $1', [id])).rows[0].finished === 1,
        90_000,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}\ndaemon stderr:\n${daemonErr}`);
      });
      ids.push(id);
    }
    const done = await pool.query('SELECT id, buildstatus, stoptime - starttime AS took FROM Builds ORDER BY id');
    assert.deepEqual(done.rows.map((r) => r.buildstatus), [0, 0, 1]);
    const machine = (await pool.query("SELECT machine FROM BuildSteps WHERE machine != '' LIMIT 1")).rows[0].machine as string;

    // The console, another data directory: it attaches to the daemon.
    const script = join(base, 'console.sh');
    writeFileSync(
      script,
      [
        '#!/bin/sh',
        ...Object.entries({...envFor('B'), LANG: 'C.UTF-8', HOME: base, PATH: process.env.PATH ?? '/usr/bin:/bin'}).map(([k, v]) => `export ${k}='${v}'`),
        `cd '${root}'`,
        `exec '${process.execPath}' ${cliArgs().map((a) => `'${a}'`).join(' ')} --scheduler 2>'${base}/console-stderr'`,
      ].join('\n') + '\n',
    );
    chmodSync(script, 0o755);
    tmux('new-session', '-d', '-s', session, '-x', '100', '-y', '30', script);
    consoleStarted = true;
    const screen = () => tmux('capture-pane', '-p', '-t', session);
    const waitScreen = (pred: (s: string) => boolean, what: string, timeoutMs = 20_000) =>
      waitFor(what, () => (pred(screen()) ? screen() : undefined), timeoutMs).catch((e) => {
        throw new Error(`${(e as Error).message}\nscreen:\n${screen()}\nstderr: ${readFileSync(join(base, 'console-stderr'), 'utf8')}`);
      });
    const keys = (...k: string[]) => tmux('send-keys', '-t', session, ...k);

    await waitScreen((s) => s.includes('attached to hydra-ops runner pid'), 'the console attached to the daemon', 30_000);
    keys('2');
    await waitScreen((s) => s.includes('Builds (newest first)') && s.includes('report'), 'the builds view');
    keys('g');
    keys('Enter');
    await waitScreen((s) => s.includes(`build ${ids[2]}`) && s.includes('[Summary]'), 'the detail of the failed build');
    assert.match(screen(), new RegExp(`latest ok: build ${ids[1]} · hydra-ops latest ${js.project}/nightly/report`));
    keys('[');
    const h = await waitScreen((s) => s.includes('[History]') && s.includes('last 3:'), 'the History tab');
    assert.match(h, /last 3: 2 ok, 1 failed/);
    assert.match(h, /duration \(oldest → newest\) [▁▂▃▄▅▆▇█]{3}/);
    const rows = h.split('\n').filter((l) => /^[> ]\s+\d+\*? /.test(l));
    assert.deepEqual(
      rows.map((l) => Number(/(\d+)\*? /.exec(l)![1])),
      [...ids].reverse(),
      `three builds of the job, newest first:\n${h}`,
    );
    assert.match(rows[0]!, /failed/);
    assert.match(rows[1]!, /success/);
    for (const [i, r] of rows.entries()) {
      const took = done.rows[2 - i].took as number;
      assert.ok(r.includes(`${took}s`), `duration ${took}s in: ${r}`);
      assert.ok(r.includes(String(machine).slice(0, 12)), `machine in: ${r}`);
    }
    // enter shows the older build in the same pane and tab; ] wraps to Summary.
    keys('j', 'Enter');
    await waitScreen((s) => s.includes(`build ${ids[1]}`) && s.includes('[History]'), 'the previous build of the job');
    keys(']');
    await waitScreen((s) => s.includes(`build ${ids[1]}`) && s.includes('[Summary]') && s.includes('(this one)'), 'its Summary, the latest success');
    keys('q');
    keys('q');
    await waitFor('the console to exit', () => {
      try {
        tmux('has-session', '-t', session);
        return false;
      } catch {
        consoleStarted = false;
        return true;
      }
    }, 20_000);
  } finally {
    if (consoleStarted) {
      try {
        tmux('kill-session', '-t', session);
      } catch {
        // already gone
      }
    }
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      const exited = new Promise((r) => daemon!.once('exit', r));
      daemon.kill('SIGTERM');
      await exited;
    }
    await fleet.stop();
    await nix.cleanup().catch(() => {});
    await pool.end();
    await db.drop();
    rmSync(base, {recursive: true, force: true});
  }
});
