// End to end: the real binary in a tmux pane against a fresh database, with the console's embedded
// scheduler building on the implicit localhost machine. A real derivation is queued while the console
// runs: it appears, goes running, its log streams into the log view, it finishes. Then a long build is
// cancelled from the keyboard (ctrl-d, y) and the cancel is checked in the database.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {execFileSync} from 'node:child_process';
import {chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import pg from 'pg';
import {freshDatabase} from './support/pg.js';
import {insertJobset} from './support/fixtures.js';
import {nixFixture} from './support/nix-fixtures.js';
import {mkPrelude} from './support/runner-rig.js';
import {initSchema} from '../source/db/schema.js';
import {readDrv, outputPathMap} from '../source/nix/drv.js';
import {runnerLockHolder} from '../source/scheduler/runner-lock.js';
import {waitFor, pgrep} from './support/wait.js';
import {freePort} from './support/free-port.js';

const root = fileURLToPath(new URL('..', import.meta.url));

function tmux(...args: string[]): string {
  return execFileSync('tmux', args, {encoding: 'utf8'});
}

test('the console in a terminal: a build appears, runs, streams its log, finishes; ctrl-d cancels a build in the database', {timeout: 90_000}, async () => {
  const db = await freshDatabase('ui_e2e');
  const pool = new pg.Pool({connectionString: db.url, max: 3});
  pool.on('error', () => {});
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-ui-e2e-'));
  chmodSync(dir, 0o755);
  const nix = await nixFixture('ui-e2e');
  const session = `hydra-ops-e2e-${process.pid}`;
  let started = false;
  try {
    await initSchema(pool);
    const js = await insertJobset(pool, {name: 'e2e'});
    const dataDir = join(dir, 'data');
    const configDir = join(dir, 'config');
    const machines = join(dir, 'machines');
    const system = execFileSync('nix-instantiate', ['--eval', '--expr', 'builtins.currentSystem', '--json'], {encoding: 'utf8'}).trim().replace(/"/g, '');
    writeFileSync(machines, `localhost ${system} - 2 1\n`);
    const env: Record<string, string> = {
      HYDRA_DATA: dataDir,
      HYDRA_OPS_CONFIG_DIR: configDir,
      NIX_REMOTE_SYSTEMS: machines,
      LANG: 'C.UTF-8',
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: dir,
    };
    execFileSync(process.execPath, ['--import', 'tsx', join(root, 'cli.tsx'), 'config', 'set', 'statusAddress', `127.0.0.1:${await freePort()}`], {env, cwd: root});
    const script = join(dir, 'run.sh');
    const envLines = Object.entries(env).map(([k, v]) => `export ${k}='${v}'`);
    writeFileSync(
      script,
      ['#!/bin/sh', ...envLines, `cd '${root}'`, `exec '${process.execPath}' --import tsx cli.tsx --database-url '${db.url}' --scheduler --user e2e --local-admin 2>'${dir}/stderr'`].join('\n') + '\n',
    );
    chmodSync(script, 0o755);
    tmux('new-session', '-d', '-s', session, '-x', '100', '-y', '30', script);
    started = true;

    const screen = () => tmux('capture-pane', '-p', '-t', session);
    const waitScreen = async (pred: (s: string) => boolean, what: string, timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs;
      let last = '';
      while (Date.now() < deadline) {
        try {
          last = screen();
        } catch {
          last = '(pane gone)';
        }
        if (pred(last)) return last;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`timed out waiting for ${what}; screen:\n${last}`);
    };
    const keys = (...k: string[]) => tmux('send-keys', '-t', session, ...k);
    const queue = async (drvPath: string): Promise<number> => {
      const drv = await readDrv(drvPath);
      const name = drv.env.get('name')!;
      const {rows} = await pool.query(
        `INSERT INTO Builds (finished, timestamp, jobset_id, job, nixName, drvPath, system, maxsilent, timeout, isCurrent, priority, globalPriority)
         VALUES (0, $1, $2, $3, $3, $4, $5, 7200, 36000, 1, 100, 0) RETURNING id`,
        [Math.floor(Date.now() / 1000), js.id, name, drvPath, drv.platform],
      );
      for (const [out, path] of outputPathMap(drv)) await pool.query('INSERT INTO BuildOutputs (build, name, path) VALUES ($1, $2, $3)', [rows[0].id, out, path]);
      await pool.query("SELECT pg_notify('builds_added', $1)", [String(rows[0].id)]);
      return rows[0].id as number;
    };

    await waitScreen((s) => s.includes('scheduler in-process'), 'the header with the embedded scheduler', 30_000);
    keys('2');
    await waitScreen((s) => s.includes('Builds (newest first)'), 'builds view');

    const [streamDrv] = await nix.instantiate(
      `${mkPrelude(nix.nonce)} mk "e2e-stream" [] "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do echo stream-line-$i; sleep 0.3; done; echo done > $out"`,
    );
    const id = await queue(streamDrv!);
    await waitScreen((s) => s.includes('e2e-stream'), 'the queued build to appear');
    await waitScreen((s) => /e2e-stream\s+.*building/.test(s) || /e2e-stream.*⏵/.test(s), 'the build to go running');
    keys('g');
    keys('l');
    await waitScreen((s) => s.includes(`log of build ${id}`) && s.includes('stream-line-2'), 'log lines in the log view');
    const early = screen();
    await waitScreen((s) => s.includes('stream-line-12'), 'more log lines streaming in while following');
    assert.ok(!early.includes('stream-line-16'), 'the log streamed: early screen already had the last line');
    keys('Escape');
    const {rows: fin} = await (async () => {
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        const r = await pool.query('SELECT finished, buildstatus FROM Builds WHERE id = $1', [id]);
        if (r.rows[0].finished === 1) return r;
        await new Promise((res) => setTimeout(res, 200));
      }
      throw new Error('the streaming build did not finish');
    })();
    assert.equal(fin[0].buildstatus, 0);
    await waitScreen((s) => /e2e-stream\s+.*success/.test(s), 'the build shown as succeeded');

    const [longDrv] = await nix.instantiate(`${mkPrelude(nix.nonce)} mk "e2e-long" [] "sleep 120; echo > $out"`);
    const longId = await queue(longDrv!);
    await waitScreen((s) => s.includes('e2e-long'), 'the long build to appear');
    keys('g');
    await waitScreen((s) => s.split('\n').some((l) => l.startsWith('>') && l.includes('e2e-long')), 'the long build selected');
    keys('C-d');
    await waitScreen((s) => s.includes('Cancel 1 build') && s.includes(String(longId)), 'the cancel confirmation with its scope');
    keys('y');
    await waitScreen((s) => s.includes('cancelled 1 of 1 build(s)'), 'the cancel result');
    const {rows: c} = await pool.query('SELECT finished, buildstatus FROM Builds WHERE id = $1', [longId]);
    assert.deepEqual(c[0], {finished: 1, buildstatus: 4});
    const audit = await pool.query("SELECT action, outcome, hydra_user FROM hydra_ops.audit_log WHERE action = 'cancel' AND outcome = 'ok'");
    assert.equal(audit.rows.length, 1);

    keys('q');
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      try {
        tmux('has-session', '-t', session);
      } catch {
        started = false;
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(started, false, 'the console exits on q');
  } finally {
    if (started) {
      try {
        tmux('kill-session', '-t', session);
      } catch {
        // already gone
      }
    }
    await pool.end();
    await db.drop();
    await nix.cleanup().catch(() => {});
    rmSync(dir, {recursive: true, force: true});
  }
});

test('a console whose terminal goes away (SIGHUP) quits and releases the runner lock', {timeout: 60_000}, async () => {
  const db = await freshDatabase('ui_hup');
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-ui-hup-'));
  chmodSync(dir, 0o755);
  const session = `hydra-ops-hup-${process.pid}`;
  const dataDir = join(dir, 'data');
  try {
    const machines = join(dir, 'machines');
    writeFileSync(machines, '');
    const env = `export HYDRA_DATA='${dataDir}' HYDRA_OPS_CONFIG_DIR='${join(dir, 'config')}' NIX_REMOTE_SYSTEMS='${machines}' LANG=C.UTF-8 HOME='${dir}'`;
    execFileSync(process.execPath, ['--import', 'tsx', join(root, 'cli.tsx'), 'config', 'set', 'statusAddress', `127.0.0.1:${await freePort()}`], {
      env: {...process.env, HYDRA_OPS_CONFIG_DIR: join(dir, 'config')},
      cwd: root,
    });
    const script = join(dir, 'run.sh');
    writeFileSync(
      script,
      `#!/bin/sh\n${env}\ncd '${root}'\nexec '${process.execPath}' --import tsx cli.tsx --database-url '${db.url}' --scheduler 2>'${dir}/stderr'\n`,
    );
    chmodSync(script, 0o755);
    // A console with an in-process scheduler needs a real terminal; as in a dropped SSH session, the
    // terminal then disappears under it.
    execFileSync('tmux', ['new-session', '-d', '-s', session, '-x', '100', '-y', '30', script]);
    await waitFor('the console to hold the runner lock', () => runnerLockHolder(dataDir) !== null, 30_000);
    await waitFor('the console to be drawn', () => tmux('capture-pane', '-p', '-t', session).includes('scheduler in-process'), 30_000);
    const holder = runnerLockHolder(dataDir)!.pid!;
    execFileSync('tmux', ['kill-session', '-t', session]);
    await waitFor('the console to release the lock and exit', () => runnerLockHolder(dataDir) === null && pgrep(`database-url ${db.url}`).length === 0, 20_000);
    const gone = () => {
      try {
        process.kill(holder, 0);
        return false;
      } catch {
        return true;
      }
    };
    await waitFor('the console process to be reaped', gone, 10_000);
    // It stopped on purpose (scheduler stopped, lock released), not by the signal's default action.
    const consoleLog = readFileSync(join(dataDir, 'logs', 'console.log'), 'utf8');
    assert.match(consoleLog, /console stopped/, `console log:\n${consoleLog}\nstderr:\n${readFileSync(join(dir, 'stderr'), 'utf8')}`);
  } finally {
    try {
      execFileSync('tmux', ['kill-session', '-t', session], {stdio: 'ignore'});
    } catch {
      // already gone
    }
    for (const pid of pgrep(`database-url ${db.url}`)) process.kill(pid, 'SIGKILL');
    await db.drop();
    rmSync(dir, {recursive: true, force: true});
  }
});
