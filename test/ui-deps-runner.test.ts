// The build detail's Deps rows with the real runner: a build whose dependency is building on a real sshd builder
// (held there by a file in the fleet's shared directory) while a second dependency waits behind it. The SQL data
// source merges BuildSteps with the runner's view of the build's steps — read in-process from the scheduler, and
// through the runner's REST `/status/build/<id>/active` as an attached console does.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {rmSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {mkPrelude, runnerRig} from './support/runner-rig.js';
import {waitFor} from './support/wait.js';
import {makeActor} from '../source/actions/actor.js';
import {startStatusServer} from '../source/daemon/http.js';
import {SqlConsoleData} from '../source/ui/state/sql-data.js';
import {externalSource, inProcessSource, type RunnerSource} from '../source/ui/state/runner-source.js';

test('Deps: which dependency the build waits for and on which machine it runs, in-process and over REST', {timeout: 180_000}, async () => {
  const rig = await runnerRig({builders: 1, maxJobs: 1, label: 'ui_deps'});
  const hold = join(rig.fleet!.sharedDir, 'hold-deps');
  writeFileSync(hold, '');
  const sources: SqlConsoleData[] = [];
  const data = (runner: RunnerSource, mode: 'embedded' | 'attached') => {
    const d = new SqlConsoleData({
      pool: rig.pool,
      connection: null,
      describe: 'test',
      dataDir: rig.dataDir,
      actor: makeActor({hydraUser: 'nobody', localAdmin: false, readonly: true, readonlySource: '--readonly', version: 'test'}),
      runner,
      mode,
      modeNote: null,
      machineSpecs: async () => rig.machines,
    });
    sources.push(d);
    return d;
  };
  const s = rig.scheduler();
  const server = await startStatusServer(s, {host: '127.0.0.1', port: 0});
  try {
    // top needs libslow (held on the builder) and libnext, which needs libslow too.
    const [top] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
      let
        libslow = mk "libslow" [] "while [ -e ${hold} ]; do sleep 0.2; done; echo slow > $out";
        libnext = mk "libnext" [libslow] "cat \${libslow} > $out";
      in mk "app-top" [libslow libnext] "cat \${libslow} \${libnext} > $out"`);
    const [id] = await rig.queue([top!]);
    await s.start();
    s.setMachines(rig.machines);
    s.requestScan();
    const machine = rig.machines[0]!.uri;
    await waitFor(
      'libslow to build on the builder',
      async () => (await rig.pool.query("SELECT 1 FROM BuildSteps WHERE build = $1 AND busy = 30 AND drvpath LIKE '%-libslow.drv'", [id])).rowCount === 1,
      90_000,
    );

    const embedded = await data(inProcessSource(s), 'embedded').buildDetail(id!);
    assert.ok(embedded);
    const byName = (d: typeof embedded | null) => new Map(d!.deps.map((x) => [x.drvpath.replace(/^.*?-/, '').replace(/\.drv$/, ''), x]));
    const e = byName(embedded);
    assert.deepEqual([...e.keys()].sort(), ['app-top', 'libnext', 'libslow']);
    assert.equal(e.get('libslow')!.state, 'running');
    assert.equal(e.get('libslow')!.machine, machine);
    assert.equal(typeof e.get('libslow')!.stepnr, 'number', 'the running dependency has its BuildSteps row (its log)');
    assert.equal(e.get('libnext')!.state, 'waiting');
    assert.equal(e.get('libnext')!.stepnr, null, 'no step row before it starts');
    assert.match(e.get('libnext')!.note ?? '', /dependenc/, 'the runner says why it waits');
    assert.equal(e.get('app-top')!.state, 'waiting');
    assert.equal(e.get('app-top')!.toplevel, true);
    assert.match(e.get('app-top')!.note ?? '', /dependenc/);
    assert.equal(embedded.deps[0]!.state, 'running', 'the running dependency comes first');
    assert.match(embedded.depsNote ?? '', /in-process scheduler/);

    // Attached: the runner's REST names the steps running for the build; BuildSteps gives their machine.
    const attached = await data(externalSource({address: `127.0.0.1:${server.port}`, db: rig.pool}), 'attached').buildDetail(id!);
    const a = byName(attached);
    assert.equal(a.get('libslow')!.state, 'running');
    assert.equal(a.get('libslow')!.machine, machine);
    assert.match(attached!.depsNote ?? '', /runner at 127\.0\.0\.1:\d+/);
    // A runner that does not hold the build says so.
    const other = await data(externalSource({address: `127.0.0.1:${server.port}`, db: rig.pool}), 'attached').buildDetail(id! + 1000).catch(() => null);
    assert.equal(other, null, 'no such build');

    rmSync(hold);
    await rig.waitFinished([id!], 90_000);
    const finished = await data(inProcessSource(s), 'embedded').buildDetail(id!);
    assert.equal(finished!.depsNote, null);
    assert.deepEqual(
      finished!.deps.map((x) => x.state),
      ['done', 'done', 'done'],
    );
    assert.equal(finished!.latest, id);
    assert.deepEqual(
      finished!.history.map((h) => [h.id, h.buildstatus, h.machine]),
      [[id, 0, machine]],
    );
  } finally {
    rmSync(hold, {force: true});
    for (const d of sources) await d.close().catch(() => {});
    await server.close();
    await rig.close();
  }
});
