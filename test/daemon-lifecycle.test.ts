// The real `hydra-ops --daemon` process: single instance, REST status, and crash recovery when
// it is SIGKILLed in the middle of builds, five times in a row.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, chmodSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import pg from 'pg';
import {freshDatabase} from './support/pg.js';
import {startFleet} from './support/fleet.js';
import {nixFixture} from './support/nix-fixtures.js';
import {mkPrelude} from './support/runner-rig.js';
import {insertJobset} from './support/fixtures.js';
import {startDaemonProcess, type DaemonProcess} from './support/cli.js';
import {initSchema} from '../source/db/schema.js';
import {readDrv, outputPathMap} from '../source/nix/drv.js';
import {waitFor} from './support/wait.js';

type Daemon = DaemonProcess;
const startDaemon = startDaemonProcess;

test('the daemon: single instance, REST status, and SIGKILL mid-build five times in a row', {timeout: 300_000}, async () => {
  const db = await freshDatabase('daemon');
  const pool = new pg.Pool({connectionString: db.url});
  pool.on('error', () => {});
  const data = mkdtempSync(join(tmpdir(), 'hydra-ops-daemon-'));
  chmodSync(data, 0o755);
  const fleet = await startFleet(2, {maxJobs: 2});
  const nix = await nixFixture('daemon');
  const daemons: Daemon[] = [];
  const env = {
    HYDRA_DATABASE_URL: db.url,
    HYDRA_DATA: data,
    HYDRA_OPS_CONFIG_DIR: join(data, 'settings'),
    NIX_REMOTE_SYSTEMS: fleet.machinesFile,
    HYDRA_CONFIG: '',
  };
  try {
    await initSchema(pool);
    const drvs = await nix.instantiate(`${mkPrelude(nix.nonce)}
      builtins.genList (i: mk "crashy-\${toString i}" [] "echo step \${toString i}; sleep 3; echo \${toString i} > $out") 8`);
    const jobset = await insertJobset(pool);
    const ids: number[] = [];
    for (const drvPath of drvs) {
      const drv = await readDrv(drvPath);
      const {rows} = await pool.query(
        `INSERT INTO Builds (finished, timestamp, jobset_id, job, nixName, drvPath, system, maxsilent, timeout, isCurrent, priority, globalPriority)
         VALUES (0, extract(epoch from now())::int, $1, $2, $2, $3, $4, 7200, 36000, 1, 100, 0) RETURNING id`,
        [jobset.id, drv.env.get('name'), drvPath, drv.platform],
      );
      for (const [name, path] of outputPathMap(drv)) await pool.query('INSERT INTO BuildOutputs (build, name, path) VALUES ($1, $2, $3)', [rows[0].id, name, path]);
      ids.push(rows[0].id);
    }

    // First daemon; learn its REST address from the log.
    let d = startDaemon(env);
    daemons.push(d);
    const address = await waitFor('the status endpoint', () => /status and metrics on http:\/\/([^/\s]+)\/status/.exec(d.stderr())?.[1]);
    const status = (await (await fetch(`http://${address}/status`)).json()) as {queueRunner: {status: string; machinesTotal?: number}};
    assert.equal(status.queueRunner.status, 'up');
    const machines = (await (await fetch(`http://${address}/status/machines`)).json()) as {machines: Record<string, {maxJobs: number; systems: string[]}>; machinesCount: number};
    assert.equal(machines.machinesCount, 2);
    for (const m of Object.values(machines.machines)) assert.equal(m.maxJobs, 2);
    const row = await waitFor('the SystemStatus row', async () => (await pool.query("SELECT status FROM SystemStatus WHERE what = 'queue-runner'")).rows[0]);
    assert.equal(row.status.status, 'up');

    // A second daemon refuses to start and names the holder.
    const second = startDaemon(env);
    assert.equal(await second.exited, 1);
    assert.match(second.stderr(), new RegExp(`pid ${d.child.pid}`));

    // Kill the daemon with SIGKILL while steps build, five times; restart it each time.
    for (let round = 0; round < 5; round++) {
      await waitFor(`a running step (round ${round + 1})`, async () => {
        const {rows} = await pool.query('SELECT count(*)::int AS n FROM BuildSteps WHERE busy >= 10');
        const {rows: done} = await pool.query('SELECT count(*)::int AS n FROM Builds WHERE finished = 0');
        return rows[0].n > 0 || done[0].n === 0;
      });
      d.child.kill('SIGKILL');
      await d.exited;
      d = startDaemon(env);
      daemons.push(d);
    }
    await waitFor(
      'every build to finish',
      async () => (await pool.query('SELECT count(*)::int AS n FROM Builds WHERE finished = 0')).rows[0].n === 0,
      180_000,
    );
    const builds = await pool.query('SELECT id, buildstatus FROM Builds WHERE id = ANY($1::int[])', [ids]);
    for (const b of builds.rows) assert.equal(b.buildstatus, 0, `build ${b.id} succeeded`);
    const busy = await pool.query('SELECT count(*)::int AS n FROM BuildSteps WHERE busy != 0');
    assert.equal(busy.rows[0].n, 0, 'no busy rows left');
    const dup = await pool.query('SELECT drvpath, count(*)::int AS n FROM BuildSteps WHERE status = 0 GROUP BY drvpath HAVING count(*) > 1');
    assert.deepEqual(dup.rows, [], 'no derivation succeeded twice');
    const aborted = await pool.query('SELECT count(*)::int AS n FROM BuildSteps WHERE status = 3');
    assert.ok(aborted.rows[0].n >= 1, 'steps interrupted by the kills were recorded as aborted');

    // A clean stop (SIGTERM) removes the status row and clears busy rows.
    d.child.kill('SIGTERM');
    assert.equal(await d.exited, 0);
    assert.equal((await pool.query("SELECT count(*)::int AS n FROM SystemStatus WHERE what = 'queue-runner'")).rows[0].n, 0);
  } finally {
    for (const x of daemons) if (x.child.exitCode === null) x.child.kill('SIGKILL');
    await Promise.all(daemons.map((x) => x.exited));
    await fleet.stop();
    await nix.cleanup().catch(() => {});
    await pool.end();
    await db.drop();
    rmSync(data, {recursive: true, force: true});
  }
});
