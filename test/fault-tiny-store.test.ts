// Fault injection: a builder whose store is a tiny filesystem (a 16 MiB tmpfs over its /nix) is sent an input
// closure that does not fit. The step must end aborted (3) with the builder's "No space left on device" text,
// the machine must back off, and the build must stay queued for a retry.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {randomBytes} from 'node:crypto';
import {writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {runnerRig, mkPrelude} from './support/runner-rig.js';
import {waitFor} from './support/wait.js';

test('an input closure that does not fit the builder store: step 3 with the ENOSPC text, machine backs off', {timeout: 90_000}, async () => {
  const storeSize = 16 * 1024 * 1024;
  const rig = await runnerRig({builders: 1, label: 'fault_tiny', fleet: {storeSizeBytes: storeSize}});
  try {
    // 40 MiB of incompressible data as a source path: it is part of the step's input closure.
    const big = join(rig.nix.dir, 'big-input.bin');
    writeFileSync(big, randomBytes(40 * 1024 * 1024));
    const [drv] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      [ (mk "needs-big-input" [] "wc -c \${${'./big-input.bin'}} > $out") ]`);
    const s = rig.scheduler({retryIntervalMs: 60_000, machineBackoffMs: 60_000});
    await s.start();
    s.setMachines(rig.machines);
    const [id] = await rig.queue([drv!]);
    s.requestScan();
    const t0 = Date.now();
    const step = await waitFor('the step to end', async () => {
      const {rows} = await rig.pool.query('SELECT stepnr, busy, status, errormsg, machine FROM BuildSteps WHERE build = $1 ORDER BY stepnr', [id]);
      return rows[0] && rows[0].busy === 0 ? rows[0] : null;
    });
    const elapsed = Date.now() - t0;
    assert.equal(step.status, 3, `aborted, not ${step.status}: ${step.errormsg}`);
    assert.match(step.errormsg, /No space left on device/, 'the builder’s own error text is kept');
    assert.equal(step.machine, rig.fleet!.builders[0]!.uri);
    const m = s.machines.get(rig.fleet!.builders[0]!.uri)!;
    assert.equal(m.rt.consecutiveFailures, 1);
    assert.ok(m.rt.disabledUntil > Date.now() + 30_000, 'backing off for about the configured minute');
    assert.match(m.rt.lastError ?? '', /No space left on device/);
    // Not a permanent failure: the build stays queued, nothing lands in FailedPaths, no row stays busy.
    const b = await rig.pool.query('SELECT finished FROM Builds WHERE id = $1', [id]);
    assert.equal(b.rows[0].finished, 0);
    assert.equal((await rig.pool.query('SELECT count(*)::int AS n FROM FailedPaths')).rows[0].n, 0);
    assert.equal((await rig.pool.query('SELECT count(*)::int AS n FROM BuildSteps WHERE busy != 0')).rows[0].n, 0);
    assert.match(s.explain(drv!) ?? '', /waiting to retry|backing off/);
    assert.ok(elapsed < 30_000, `the step ended after ${elapsed} ms`);
  } finally {
    await rig.close();
  }
});
