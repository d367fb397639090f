// hydra.conf runner keys at the real `hydra-ops --daemon`: queue_runner_metrics_address opens a second listener that
// serves /metrics only, and keys hydra-ops reads without acting on them are named in start-up warnings.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {spawn} from 'node:child_process';
import {mkdtempSync, chmodSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import pg from 'pg';
import {freshDatabase} from './support/pg.js';
import {cliArgs} from './support/cli.js';
import {initSchema} from '../source/db/schema.js';
import {waitFor} from './support/wait.js';

test('the daemon serves /metrics on queue_runner_metrics_address and warns about keys it does not act on', {timeout: 120_000}, async () => {
  const db = await freshDatabase('daemon_conf_keys');
  const pool = new pg.Pool({connectionString: db.url});
  pool.on('error', () => {});
  const data = mkdtempSync(join(tmpdir(), 'hydra-ops-daemon-conf-'));
  chmodSync(data, 0o755);
  const conf = join(data, 'hydra.conf');
  writeFileSync(conf, ['queue_runner_metrics_address = 127.0.0.1:0', 'xxx-jobset-repeats = proj:main:3', 'upload_logs_to_binary_cache = true', ''].join('\n'));
  const machines = join(data, 'machines');
  writeFileSync(machines, '');
  const child = spawn(process.execPath, [...cliArgs(), '--daemon', '--status-address', '127.0.0.1:0', '--grace', '2'], {
    env: {...process.env, HYDRA_DATABASE_URL: db.url, HYDRA_DATA: data, HYDRA_OPS_CONFIG_DIR: join(data, 'settings'), HYDRA_CONFIG: conf, NIX_REMOTE_SYSTEMS: machines},
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await initSchema(pool);
    const metrics = await waitFor('the metrics listener', () => /metrics \(queue_runner_metrics_address\) on http:\/\/([^/\s]+)\/metrics/.exec(err)?.[1], 60_000);
    const status = await waitFor('the status listener', () => /status and metrics on http:\/\/([^/\s]+)\/status/.exec(err)?.[1]);
    assert.notEqual(metrics, status, 'a second listener, not the status one');
    const m = await fetch(`http://${metrics}/metrics`);
    assert.equal(m.status, 200);
    assert.match(await m.text(), /^hydraqueuerunner_queue_checks_started_total /m);
    assert.equal((await fetch(`http://${metrics}/status`)).status, 404, 'only /metrics on the metrics address');
    assert.match(err, /hydra\.conf:2: read but not supported: xxx-jobset-repeats .*proj:main/);
    assert.match(err, /hydra\.conf:3: upload_logs_to_binary_cache has no effect: store_uri is not set/);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, err);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
    await pool.end();
    await db.drop();
    rmSync(data, {recursive: true, force: true});
  }
});
