// `hydra-ops daemon --build-one ID`: only that build is loaded; exit 0 when it succeeded, 1 when not.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {execFile} from 'node:child_process';
import {mkdtempSync, chmodSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {runnerRig, mkPrelude} from './support/runner-rig.js';
import {cliArgs} from './support/cli.js';

function daemonBuildOne(id: number, env: Record<string, string>): Promise<{code: number; stderr: string}> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...cliArgs(), 'daemon', '--build-one', String(id), '--status-address', 'off'], {env: {...process.env, ...env}, timeout: 120_000}, (error, _out, stderr) => {
      resolve({code: error ? ((error as {code?: number}).code ?? 1) : 0, stderr});
    });
  });
}

test('daemon --build-one builds only that build and exits 0 on success, 1 on failure', {timeout: 180_000}, async () => {
  const rig = await runnerRig({label: 'build_one'});
  const data = mkdtempSync(join(tmpdir(), 'hydra-ops-build-one-'));
  chmodSync(data, 0o755);
  try {
    const machines = join(data, 'machines');
    writeFileSync(machines, `localhost ${rig.localSystem} - 1 1\n`);
    const env = {HYDRA_DATABASE_URL: rig.db.url, HYDRA_DATA: data, HYDRA_OPS_CONFIG_DIR: join(data, 'settings'), NIX_REMOTE_SYSTEMS: machines, HYDRA_CONFIG: ''};
    const [good, other, bad] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      [ (mk "one-good" [] "echo ok > $out") (mk "one-other" [] "echo other > $out") (mk "one-bad" [] "echo broken >&2; exit 1") ]`);
    const [goodId, otherId, badId] = await rig.queue([good!, other!, bad!]);
    const ok = await daemonBuildOne(goodId!, env);
    assert.equal(ok.code, 0, ok.stderr);
    const rows = await rig.pool.query('SELECT id, finished, buildstatus FROM Builds ORDER BY id');
    assert.deepEqual(rows.rows, [
      {id: goodId, finished: 1, buildstatus: 0},
      {id: otherId, finished: 0, buildstatus: null},
      {id: badId, finished: 0, buildstatus: null},
    ]);
    const failed = await daemonBuildOne(badId!, env);
    assert.equal(failed.code, 1);
    const b = await rig.pool.query('SELECT finished, buildstatus FROM Builds WHERE id = $1', [badId]);
    assert.deepEqual(b.rows[0], {finished: 1, buildstatus: 1});
    const busy = await rig.pool.query('SELECT count(*)::int AS n FROM BuildSteps WHERE busy != 0');
    assert.equal(busy.rows[0].n, 0);
  } finally {
    rmSync(data, {recursive: true, force: true});
    await rig.close();
  }
});
