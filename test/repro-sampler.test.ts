// The idle-time reproducibility sampler on the real scheduler, two real builders and real Nix: it never starts a
// check while real steps are runnable for the system, and starts one once the queue is empty.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {EventEmitter} from 'node:events';
import {appendFileSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {runnerRig, mkPrelude} from './support/runner-rig.js';
import {CheckRunner} from '../source/fleet/check-runner.js';
import {ReproSampler, SAMPLER_USER} from '../source/scheduler/repro-sampler.js';
import type {CheckReport} from '../source/scheduler/repro-check.js';
import type {Scheduler} from '../source/scheduler/scheduler.js';
import {stepPlatform} from '../source/scheduler/machines.js';

test('the sample share decides which successful builds become candidates', () => {
  const values = [0.1, 0.5, 0.29, 0.3, 0.99];
  const sampler = new ReproSampler({pool: null as never, runner: null as never, dataDir: '/nonexistent', percent: 30, random: () => values.shift()!});
  const fake = new EventEmitter() as unknown as Scheduler;
  sampler.attach(fake);
  const sampled: number[] = [];
  sampler.on('sampled', (b: number) => sampled.push(b));
  sampler.offer = () => undefined; // no database here: only the decision is under test
  (fake as unknown as EventEmitter).emit('build-finished', {build: 1, status: 0});
  (fake as unknown as EventEmitter).emit('build-finished', {build: 2, status: 0});
  (fake as unknown as EventEmitter).emit('build-finished', {build: 3, status: 1}); // failed: never sampled, no draw
  (fake as unknown as EventEmitter).emit('build-finished', {build: 4, status: 0});
  (fake as unknown as EventEmitter).emit('build-finished', {build: 5, status: 0});
  (fake as unknown as EventEmitter).emit('build-finished', {build: 6, status: 0});
  assert.deepEqual(sampled, [1, 4]);
  assert.throws(() => new ReproSampler({pool: null as never, runner: null as never, dataDir: '/x', percent: 101}), /0\.\.100/);
});

test('sampling never starts a check while real steps are runnable for the system; it does once the queue is empty', {timeout: 120_000}, async () => {
  const rig = await runnerRig({builders: 2, label: 'repro_sampler'});
  const runner = new CheckRunner();
  let sampler: ReproSampler | undefined;
  try {
    // Builder 0 alone has feature "big", so steps needing it queue up while builder 1 stays free.
    const machines = rig.machines.map((m, i) => (i === 0 ? {...m, supportedFeatures: ['big']} : m));
    // …and its Nix must agree to build such steps.
    appendFileSync(join(rig.fleet!.builders[0]!.nixConfDir, 'nix.conf'), 'system-features = big\n');
    sampler = new ReproSampler({pool: rig.pool, runner, dataDir: rig.dataDir, percent: 100, random: () => 0});
    const s: ReproSampler = sampler;
    const decisions: Array<{runnableOfSystem: number; pending: number}> = [];
    let blockedRounds = 0;
    const scheduler = rig.scheduler({
      pollMs: 200,
      idleWork: (round) => {
        const before = s.running.size;
        const free = round.machines.some((m) => m.rt.currentJobs < m.spec.maxJobs);
        if (s.pendingCount > 0 && free && round.runnablePlatforms.has(rig.localSystem)) blockedRounds++;
        s.onIdle(round);
        if (s.running.size > before) {
          const runnable = [...scheduler.graph.runnable].filter((st) => !st.running && stepPlatform(st, rig.localSystem) === rig.localSystem);
          decisions.push({runnableOfSystem: runnable.length, pending: s.pendingCount});
        }
      },
    });
    sampler.attach(scheduler);
    const finished = new Promise<CheckReport>((resolve) => s.once('finished', resolve));
    await scheduler.start();
    const until = async (what: string, cond: () => boolean) => {
      const deadline = Date.now() + 30_000;
      while (!cond()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };

    // 1. The candidate: built on builder 0 alone, so builder 1 is where it will be checked.
    scheduler.setMachines([machines[0]!]);
    const [quick] = await rig.queue(await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} mk "quick" [] "echo quick > $out"`));
    scheduler.requestScan();
    await rig.waitFinished([quick!], 60_000);
    await until('the candidate', () => s.pendingCount === 1);
    assert.equal(decisions.length, 0, 'no other machine yet: nothing started');

    // 2. Real work for the same system that only builder 0 can do: big-1 runs, big-2 waits (runnable).
    const big = (name: string) =>
      `(derivation { name = "${name}"; system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/usr/bin:/bin";
         args = [ "-c" "echo ${name}; sleep 2; echo ${name} > $out" ]; requiredSystemFeatures = [ "big" ]; nonce = "${rig.nix.nonce}"; })`;
    const bigIds = await rig.queue(await rig.nix.instantiate(`[ ${big('big-1')} ${big('big-2')} ]`));
    scheduler.requestScan();
    await until('a waiting big step', () => [...scheduler.graph.runnable].some((st) => !st.running));

    // 3. Builder 1 appears: free, able to check the candidate, but its system has a runnable real step.
    scheduler.setMachines(machines);
    const ids = [quick!, ...bigIds];
    const rows = await rig.waitFinished(ids, 60_000);
    for (const [id, r] of rows) assert.equal(r.buildstatus, 0, `build ${id}`);
    const outs = (await rig.pool.query('SELECT path FROM BuildOutputs WHERE build = ANY($1::int[])', [ids])).rows.map((r) => r.path as string);
    rig.nix.track(...outs);

    const report = await finished;
    assert.ok(blockedRounds > 0, 'there were rounds with a candidate and a free machine but runnable real steps');
    assert.equal(decisions.length >= 1, true);
    for (const d of decisions) assert.equal(d.runnableOfSystem, 0, 'no real step of the system was runnable when a check started');
    // Every successful build was sampled (100 %); the quick one was checked first, after the big ones stopped waiting.
    assert.equal(report.verdict, 'reproducible', report.error ?? '');
    assert.notEqual(report.checkMachine, report.originalMachine);
    const row = (await rig.pool.query('SELECT requested_by, verdict FROM hydra_ops.repro_checks WHERE id = $1', [report.id])).rows[0];
    assert.equal(row.requested_by, SAMPLER_USER);
    // The reserved slot is released afterwards.
    await sampler.stop();
    for (const m of scheduler.machines.values()) assert.equal(m.rt.currentJobs, 0, `${m.spec.uri} has no slot left reserved`);
  } finally {
    await sampler?.stop();
    await runner.close();
    await rig.close();
  }
});
