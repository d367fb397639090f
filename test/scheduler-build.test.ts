// The queue runner end to end: real PostgreSQL, real Nix, real sshd builders with separate stores.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {existsSync, readFileSync} from 'node:fs';
import pg from 'pg';
import {runnerRig, mkPrelude} from './support/runner-rig.js';
import {drvLogBucketPath, queryValidPaths} from '../source/nix/store.js';

/** Collects NOTIFY payloads on the given channels. */
async function listen(url: string, channels: string[]) {
  const client = new pg.Client({connectionString: url});
  await client.connect();
  const seen: Array<{channel: string; payload: string}> = [];
  client.on('notification', (n) => seen.push({channel: n.channel, payload: n.payload ?? ''}));
  for (const c of channels) await client.query(`LISTEN ${c}`);
  return {seen, close: () => client.end()};
}

test('a 20-build jobset with shared dependencies builds completely on two builders', {timeout: 180_000}, async () => {
  const rig = await runnerRig({builders: 2, maxJobs: 2, label: 'sched_jobset'});
  const events = await listen(rig.db.url, ['build_started', 'build_finished', 'step_started', 'step_finished']);
  try {
    // Two shared libraries, five mid-level packages each using both, 20 top-level jobs using one
    // mid-level package each: 27 derivations, each built exactly once.
    const expr = `${mkPrelude(rig.nix.nonce)}
      let
        libA = mk "libA" [] "echo building libA; echo A > $out";
        libB = mk "libB" [] "echo building libB; echo B > $out";
        mids = builtins.genList (i: mk "mid-\${toString i}" [libA libB] "cat \${libA} \${libB} > $out; echo mid \${toString i} >> $out") 5;
      in builtins.genList (i: mk "app-\${toString i}" [ (builtins.elemAt mids (i - (i / 5) * 5)) ] "echo app \${toString i} log line; cat \${builtins.elemAt mids (i - (i / 5) * 5)} > $out") 20`;
    const drvs = await rig.nix.instantiate(expr);
    assert.equal(drvs.length, 20);
    const ids = await rig.queue(drvs);
    const s = rig.scheduler();
    await s.start();
    s.setMachines(rig.machines);
    s.requestScan();
    const rows = await rig.waitFinished(ids, 150_000);
    for (const [id, r] of rows) {
      if (r.buildstatus !== 0) {
        const st = await rig.pool.query("SELECT stepnr, drvpath, status, errormsg, machine FROM BuildSteps WHERE build = $1", [id]);
        const logs = st.rows.map((x) => { try { return readFileSync(drvLogBucketPath(rig.dataDir, x.drvpath), "utf8").slice(-800); } catch { return "(no log)"; } });
        assert.fail(`build ${id} status ${r.buildstatus}: ${JSON.stringify(st.rows)} ${logs.join("\n---\n")}`);
      }
      assert.equal(r.iscachedbuild, 0);
    }
    // One step row per derivation built: 20 apps + 5 mids + 2 libs, no propagated rows, nothing busy.
    const steps = await rig.pool.query('SELECT build, stepnr, drvpath, busy, status, machine, starttime, stoptime FROM BuildSteps ORDER BY build, stepnr');
    assert.equal(steps.rowCount, 27);
    assert.equal(new Set(steps.rows.map((r) => r.drvpath)).size, 27, 'each derivation built once');
    for (const r of steps.rows) {
      assert.equal(r.busy, 0);
      assert.equal(r.status, 0);
      assert.ok(rig.machines.some((m) => m.uri === r.machine), `machine ${r.machine} is a fleet builder`);
      assert.ok(r.starttime > 0 && r.stoptime >= r.starttime);
    }
    assert.equal(new Set(steps.rows.map((r) => r.machine)).size, 2, 'both builders were used');
    // Every app's own step is recorded under that build; shared ones under one of their builds.
    const own = await rig.pool.query('SELECT count(*)::int AS n FROM BuildSteps s JOIN Builds b ON s.build = b.id AND s.drvpath = b.drvpath');
    assert.equal(own.rows[0].n, 20);
    // Outputs came back into the coordinator's store and BuildOutputs / BuildStepOutputs hold them.
    const outs = await rig.pool.query('SELECT path FROM BuildOutputs WHERE build = ANY($1::int[])', [ids]);
    const valid = await queryValidPaths(outs.rows.map((r) => r.path));
    assert.equal(valid.size, 20);
    const stepOuts = await rig.pool.query('SELECT count(*)::int AS n FROM BuildStepOutputs WHERE path IS NOT NULL');
    assert.equal(stepOuts.rows[0].n, 27);
    // Logs at the bucketed path contain the builder's output.
    const log = readFileSync(drvLogBucketPath(rig.dataDir, drvs[3]!), 'utf8');
    assert.match(log, /app 3 log line/);
    // Notifications: build_finished once per build, step_finished per step with its log path.
    await new Promise((r) => setTimeout(r, 200));
    const finished = events.seen.filter((e) => e.channel === 'build_finished').map((e) => Number(e.payload.split('\t')[0]));
    assert.deepEqual([...new Set(finished)].sort((a, b) => a - b), [...ids].sort((a, b) => a - b));
    assert.equal(finished.length, 20, 'one build_finished per build');
    const stepFinished = events.seen.filter((e) => e.channel === 'step_finished');
    assert.equal(stepFinished.length, 27);
    for (const e of stepFinished) {
      const [, , logPath] = e.payload.split('\t');
      assert.ok(logPath && logPath !== '-' && existsSync(logPath), `step_finished carries an existing log path (${e.payload})`);
    }
    assert.equal(events.seen.filter((e) => e.channel === 'build_started').length, 20);
    assert.equal(s.stats.nrBuildsSucceeded, 20);
  } finally {
    await events.close();
    await rig.close();
  }
});
