// Fault injection: the PostgreSQL server is stopped while steps build on a real sshd builder and started
// again on the same socket a few seconds later. The runner uses a private embedded server (temp directory,
// its own Unix socket) so the test can restart it. Expected: steps that end during the outage cannot be recorded, are
// marked aborted once the database is back and are run again; the LISTEN connection reconnects and re-reads
// the queue; every build succeeds, no row stays busy, no derivation has two successful steps, and a build
// queued after the restart is picked up through its NOTIFY.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, chmodSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {connectOrStart, stopEmbedded} from '../source/db/embedded.js';
import {runnerRig, mkPrelude} from './support/runner-rig.js';
import {waitFor} from './support/wait.js';

test('PostgreSQL restarted during builds: the runner reconnects, resyncs and finishes every build once', {timeout: 90_000}, async () => {
  const base = mkdtempSync(join(tmpdir(), 'hydra-ops-fault-pg-'));
  chmodSync(base, 0o755);
  const server = {dir: join(base, 'pg'), password: 'fault-test', database: 'hydra'};
  let rig: Awaited<ReturnType<typeof runnerRig>> | undefined;
  try {
    const first = await connectOrStart(server);
    assert.equal(first.startedHere, true);
    rig = await runnerRig({
      builders: 1,
      maxJobs: 4,
      label: 'fault_pg',
      db: {
        name: server.database,
        url: first.url,
        drop: async () => {
          await stopEmbedded(server.dir).catch(() => null);
          rmSync(base, {recursive: true, force: true});
        },
      },
    });
    const drvs = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      builtins.genList (i: mk "pg-outage-\${toString i}" [] "echo step \${toString i}; sleep \${toString (4 + i / 2)}; echo \${toString i} > $out") 4
      ++ [ (mk "after-restart" [] "echo > $out") ]`);
    const logs: string[] = [];
    const s = rig.scheduler({retryIntervalMs: 500, pollMs: 500, log: (level, message) => logs.push(`${level}: ${message}`)});
    await s.start();
    s.setMachines(rig.machines);
    const ids = await rig.queue(drvs.slice(0, 4));
    s.requestScan();
    await waitFor(
      'all four steps to build',
      async () => (await rig!.pool.query('SELECT count(*)::int AS n FROM BuildSteps WHERE busy = 30')).rows[0].n === 4,
    );

    // Outage: fast shutdown (every connection is terminated), 4 s down, then the same server on the same socket.
    const downAt = Date.now();
    assert.ok(await stopEmbedded(server.dir), 'the server was running');
    await new Promise((r) => setTimeout(r, 4000));
    // Down until a step has ended and its end could not be written (however long sandboxed builds take to start).
    await waitFor('a step to end during the outage', () => logs.some((l) => /could not record the end of step/.test(l)), 30_000);
    const again = await connectOrStart(server);
    assert.equal(again.startedHere, true);
    assert.equal(again.url, first.url);
    const upAt = Date.now();

    await waitFor('the LISTEN connection to be restored', () => logs.some((l) => l.includes('database connection restored; re-reading the queue')), 20_000);
    assert.ok(logs.some((l) => /LISTEN connection lost/.test(l)), 'the loss was noticed');
    const rows = await rig.waitFinished(ids, 60_000);
    const finishedAt = Date.now();
    for (const id of ids) assert.equal(rows.get(id)!.buildstatus, 0, `build ${id} succeeded`);

    // A step that ended during the outage could not be recorded: it was run again, its row marked aborted.
    assert.ok(
      logs.some((l) => /could not record the end of step/.test(l)),
      `a step ended while the database was down (down ${downAt}, up ${upAt}):\n${logs.join('\n')}`,
    );
    await waitFor(
      'orphaned step rows to be marked aborted',
      async () => (await rig!.pool.query('SELECT count(*)::int AS n FROM BuildSteps WHERE busy != 0')).rows[0].n === 0,
      10_000,
    );
    const dup = await rig.pool.query('SELECT drvpath, count(*)::int AS n FROM BuildSteps WHERE status = 0 GROUP BY drvpath HAVING count(*) > 1');
    assert.deepEqual(dup.rows, [], 'no derivation succeeded twice');
    const perBuild = await rig.pool.query(
      'SELECT build, count(*) FILTER (WHERE status = 0)::int AS ok, count(*) FILTER (WHERE status = 3)::int AS aborted FROM BuildSteps GROUP BY build ORDER BY build',
    );
    assert.equal(perBuild.rowCount, 4);
    for (const r of perBuild.rows) assert.equal(r.ok, 1, `build ${r.build} has exactly one successful step`);
    assert.ok(perBuild.rows.some((r) => r.aborted >= 1), 'the interrupted attempt is recorded as aborted');
    assert.ok(s.stats.nrBuildsSucceeded >= 4);

    // The notification channel works again: a build queued now is picked up through builds_added.
    const [after] = await rig.queue([drvs[4]!]);
    assert.equal((await rig.waitFinished([after!], 15_000)).get(after!)!.buildstatus, 0);
    const aborted = perBuild.rows.reduce((n, r) => n + r.aborted, 0);
    process.stderr.write(`# outage ${upAt - downAt} ms; builds finished ${finishedAt - upAt} ms after the restart; ${aborted} aborted attempt(s)\n`);
  } finally {
    if (rig) await rig.close();
    else {
      await stopEmbedded(server.dir).catch(() => null);
      rmSync(base, {recursive: true, force: true});
    }
  }
});
