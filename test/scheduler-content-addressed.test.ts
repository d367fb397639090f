// Content-addressed derivations (`__contentAddressed = true`, floating outputs) are refused when the
// build is loaded: status 9 with a reason that says so, no machine tried or blamed. The derivations
// are real: Nix 2.8 instantiates them with `--extra-experimental-features ca-derivations`.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {execa} from 'execa';
import {runnerRig} from './support/runner-rig.js';
import {parseDrv} from '../source/nix/drv.js';

test('content-addressed derivations are refused at load with status 9 and a clear reason, no machine blamed', {timeout: 180_000}, async () => {
  const rig = await runnerRig({builders: 1, label: 'sched_ca'});
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-ca-'));
  try {
    const file = join(dir, 'ca.nix');
    writeFileSync(
      file,
      `let
        ca = derivation {
          name = "ca-floating"; system = builtins.currentSystem; builder = "/bin/sh";
          args = [ "-c" "echo ca > $out" ]; nonce = "${rig.nix.nonce}";
          __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256";
        };
        user = derivation {
          name = "uses-ca"; system = builtins.currentSystem; builder = "/bin/sh";
          args = [ "-c" "cat \${ca} > $out" ]; nonce = "${rig.nix.nonce}";
        };
        plain = derivation {
          name = "plain-next-to-ca"; system = builtins.currentSystem; builder = "/bin/sh";
          args = [ "-c" "echo plain > $out" ]; nonce = "${rig.nix.nonce}";
        };
      in [ ca user plain ]`,
    );
    const r = await execa('nix-instantiate', ['--option', 'substituters', '', '--option', 'build-users-group', '', '--extra-experimental-features', 'ca-derivations', file], {stdin: 'ignore'});
    const [ca, user, plain] = r.stdout.trim().split('\n');
    const drv = parseDrv(readFileSync(ca!, 'utf8'), ca);
    assert.deepEqual([...drv.outputs.values()].map((o) => [o.path, o.hashAlgo]), [['', 'r:sha256']], 'a floating output');

    const [caId, userId, plainId] = await rig.queue([ca!, user!, plain!]);
    const s = rig.scheduler();
    await s.start();
    s.setMachines(rig.machines);
    s.requestScan();
    const rows = await rig.waitFinished([caId!, userId!, plainId!], 120_000);
    assert.equal(rows.get(plainId!)!.buildstatus, 0, 'the ordinary build next to them builds');
    assert.equal(rows.get(caId!)!.buildstatus, 9, 'the CA build: unsupported');
    assert.notEqual(rows.get(userId!)!.buildstatus, 0, 'a build needing the CA derivation does not succeed');

    const steps = await rig.pool.query('SELECT build, drvpath, status, errormsg, machine, busy FROM BuildSteps WHERE drvpath = $1 ORDER BY build', [ca]);
    assert.ok(steps.rowCount! >= 1, 'the refusal is recorded as a step');
    for (const st of steps.rows) {
      assert.equal(st.status, 9);
      assert.equal(st.busy, 0);
      assert.equal(st.machine, '', 'no machine was tried');
      assert.match(st.errormsg, /content-addressed derivations are not supported/);
      assert.ok(st.errormsg.includes(ca!), 'the message names the derivation');
    }
    const tried = await rig.pool.query("SELECT count(*)::int AS n FROM BuildSteps WHERE drvpath = ANY($1) AND machine != ''", [[ca, user]]);
    assert.equal(tried.rows[0].n, 0, 'nothing ran on a builder for them');
    for (const m of s.machines.values()) assert.equal(m.rt.consecutiveFailures, 0, `${m.spec.uri} not blamed`);
  } finally {
    rmSync(dir, {recursive: true, force: true});
    await rig.close();
  }
});
