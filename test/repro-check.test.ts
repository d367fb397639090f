// Reproducibility checks end to end: real PostgreSQL, real Nix, two real sshd builders with separate stores.
// Each original build goes through the real scheduler first, so its Builds / BuildSteps rows are real.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {existsSync, readFileSync, writeFileSync, rmSync, chmodSync} from 'node:fs';
import {basename, join} from 'node:path';
import {runnerRig, mkPrelude, type RunnerRig} from './support/runner-rig.js';
import {runCli} from './support/cli.js';
import {insertUser} from './support/fixtures.js';
import {queryPathInfos, queryValidPaths} from '../source/nix/store.js';
import {sameHash} from '../source/nix/nar.js';
import {CheckRunner} from '../source/fleet/check-runner.js';
import {makeActor} from '../source/actions/actor.js';
import {ActionError} from '../source/actions/errors.js';
import {runCheck, reproReport, checkDetail, type CheckActionResult, type CheckReport} from '../source/actions/check.js';
import type {Scheduler} from '../source/scheduler/scheduler.js';

let rig: RunnerRig;
let scheduler: Scheduler;
let runner: CheckRunner;
const admin = makeActor({hydraUser: 'repro-admin', localAdmin: true, version: 'test'});

before(async () => {
  rig = await runnerRig({builders: 2, label: 'repro_check'});
  scheduler = rig.scheduler();
  await scheduler.start();
  scheduler.setMachines(rig.machines);
  runner = new CheckRunner();
});

after(async () => {
  await runner?.close();
  await rig?.close();
});

/** Builds the expression's derivations through the scheduler; returns build ids, drv paths and output paths. */
async function buildThroughRunner(expr: string): Promise<{ids: number[]; drvs: string[]; outs: string[]}> {
  const drvs = await rig.nix.instantiate(expr);
  const ids = await rig.queue(drvs);
  scheduler.requestScan();
  const rows = await rig.waitFinished(ids, 60_000);
  for (const [id, r] of rows) assert.equal(r.buildstatus, 0, `build ${id} succeeded`);
  const outs = (await rig.pool.query('SELECT path FROM BuildOutputs WHERE build = ANY($1::int[]) ORDER BY build, name', [ids])).rows.map((r) => r.path as string);
  rig.nix.track(...outs);
  return {ids, drvs, outs};
}

function deps() {
  return {runner, machines: rig.machines, dataDir: rig.dataDir};
}

function report(r: CheckActionResult): CheckReport {
  assert.equal(r.dryRun, false);
  return r as CheckReport;
}

async function stepOf(build: number) {
  const {rows} = await rig.pool.query('SELECT stepnr, machine, timesbuilt, isnondeterministic, status FROM BuildSteps WHERE build = $1 ORDER BY stepnr', [build]);
  assert.equal(rows.length, 1);
  return rows[0] as {stepnr: number; machine: string; timesbuilt: number | null; isnondeterministic: boolean | null; status: number};
}

test('a deterministic derivation is reproducible on the other builder, and on the same one after deleting it there', {timeout: 120_000}, async () => {
  const expr = `${mkPrelude(rig.nix.nonce)}
    mk "det" [] "mkdir -p $out/bin; echo hello > $out/greeting; printf '#!/bin/sh\\necho hi\\n' > $out/bin/hi; chmod +x $out/bin/hi; ln -s greeting $out/link"`;
  const {ids, drvs, outs} = await buildThroughRunner(expr);
  const build = ids[0]!;
  const original = await stepOf(build);
  assert.equal(original.timesbuilt, 1, 'the runner records one build');

  const dry = await runCheck(rig.pool, admin, {build, dryRun: true}, deps());
  assert.equal(dry.dryRun, true);
  assert.notEqual(dry.checkMachine, original.machine, 'a dry run names the other builder');

  const r = report(await runCheck(rig.pool, admin, {build}, deps()));
  assert.equal(r.verdict, 'reproducible', r.error ?? '');
  assert.equal(r.originalMachine, original.machine);
  assert.notEqual(r.checkMachine, original.machine, 'rebuilt on the other builder by default');
  assert.equal(r.drvPath, drvs[0]);
  assert.equal(r.outputs.length, 1);
  const info = (await queryPathInfos(outs))!.get(outs[0]!)!;
  assert.ok(sameHash(r.outputs[0]!.got[0]!, info.narHash), 'the rebuilt hash equals the recorded one');
  assert.equal(r.outputs[0]!.differs, false);
  assert.equal(r.diffLogPath, null);
  assert.ok(r.stepMarked);
  assert.match(readFileSync(r.logs[0]!, 'utf8'), /.*/);

  const row = (await rig.pool.query('SELECT verdict, build, drv_path, original_machine, check_machine, rounds, outputs, started_at, finished_at, requested_by FROM hydra_ops.repro_checks WHERE id = $1', [r.id])).rows[0];
  assert.equal(row.verdict, 'reproducible');
  assert.equal(row.build, build);
  assert.equal(row.check_machine, r.checkMachine);
  assert.equal(row.requested_by, 'repro-admin');
  assert.ok(row.started_at && row.finished_at);
  assert.equal(row.outputs[0].path, outs[0]);
  let step = await stepOf(build);
  assert.equal(step.timesbuilt, 2, 'built twice in total');
  assert.equal(step.isnondeterministic, false);
  assert.equal(step.status, 0);

  // Two rounds on the machine that built it: its copy is deleted first, then rebuilt twice.
  const same = report(await runCheck(rig.pool, admin, {build, machine: original.machine, rounds: 2}, deps()));
  assert.equal(same.verdict, 'reproducible', same.error ?? '');
  assert.equal(same.checkMachine, original.machine);
  assert.equal(same.outputs[0]!.got.length, 2);
  step = await stepOf(build);
  assert.equal(step.timesbuilt, 4, 'timesBuilt accumulates the rounds');

  // The audit log has the attempts.
  const audit = (await rig.pool.query("SELECT outcome, message FROM hydra_ops.audit_log WHERE action = 'check' ORDER BY id")).rows;
  assert.deepEqual(audit.map((a) => a.outcome).slice(-3), ['dry-run', 'ok', 'ok']);
  assert.match(audit[audit.length - 1]!.message, /reproducible/);

  // A user without a role or project is refused (and audited); an unknown build is not found.
  await insertUser(rig.pool, {userName: 'nobody-special'});
  const nobody = makeActor({hydraUser: 'nobody-special', version: 'test'});
  await assert.rejects(runCheck(rig.pool, nobody, {build}, deps()), (e: unknown) => e instanceof ActionError && e.kind === 'permission' && /restart-jobs/.test(e.message));
  await assert.rejects(runCheck(rig.pool, admin, {build: 999_999}, deps()), (e: unknown) => e instanceof ActionError && e.kind === 'not-found');
  await assert.rejects(runCheck(rig.pool, admin, {build, machine: 'no-such-host'}, deps()), (e: unknown) => e instanceof ActionError && e.kind === 'not-found');
});

test('a non-deterministic derivation is not reproducible; the diff log shows the differing content', {timeout: 120_000}, async () => {
  // As examples/demo's build-info: the time and random bytes.
  const expr = `${mkPrelude(rig.nix.nonce)}
    mk "build-info" [] "mkdir -p $out; echo constant > $out/version; od -An -N8 -tx1 /dev/urandom | tr -d ' ' > $out/stamp; date +%s >> $out/stamp"`;
  const {ids, outs} = await buildThroughRunner(expr);
  const build = ids[0]!;
  const original = await stepOf(build);

  const r = report(await runCheck(rig.pool, admin, {build}, deps()));
  assert.equal(r.verdict, 'not-reproducible', r.error ?? '');
  assert.notEqual(r.checkMachine, original.machine);
  const out = r.outputs[0]!;
  assert.equal(out.differs, true);
  assert.ok(!sameHash(out.got[0]!, out.expected));
  // Nix's .check convention, as a plain directory under the check's directory.
  assert.equal(out.checkPath, join(rig.dataDir, 'hydra-ops', 'checks', String(r.id), `${basename(outs[0]!)}.check`));
  const oldStamp = readFileSync(join(outs[0]!, 'stamp'), 'utf8').split('\n')[0]!;
  const newStamp = readFileSync(join(out.checkPath!, 'stamp'), 'utf8').split('\n')[0]!;
  assert.notEqual(oldStamp, newStamp);
  assert.equal(readFileSync(join(out.checkPath!, 'version'), 'utf8'), 'constant\n');
  // The diff log names the differing file and shows both contents; the constant file is not listed.
  assert.equal(r.diffLogPath, join(r.checkDir, 'diff.log'));
  const diff = readFileSync(r.diffLogPath!, 'utf8');
  assert.match(diff, /stamp/);
  assert.ok(diff.includes(`-${oldStamp}`), diff);
  assert.ok(diff.includes(`+${newStamp}`), diff);
  assert.ok(!/differs.*version/.test(diff), diff);
  if (r.diffTool === 'builtin') assert.match(diff, /summary: 1 differing entry/);
  // The original step is marked, its status untouched; the divergent copy is gone from the check builder.
  const step = await stepOf(build);
  assert.equal(step.timesbuilt, 2);
  assert.equal(step.isnondeterministic, true);
  assert.equal(step.status, 0);
  const checkBuilder = rig.fleet!.builders.find((b) => b.uri === r.checkMachine || r.checkMachine.includes(`:${b.port}`))!;
  assert.equal(existsSync(join(checkBuilder.storeDir, 'store', basename(outs[0]!))), false, 'the rebuilt output was deleted on the builder');
  assert.ok((await queryValidPaths(outs)).has(outs[0]!), 'the coordinator keeps its output');

  // The report and the drill-down.
  const rep = await reproReport(rig.pool, {filter: `id:${build}`});
  assert.equal(rep.builds, 1);
  assert.equal(rep.notReproducible, 1);
  assert.equal(rep.unchecked, 0);
  assert.equal(rep.reproducibleShare, 0);
  assert.equal(rep.nonReproducibleList.length, 1);
  assert.equal(rep.nonReproducibleList[0]!.check, r.id);
  assert.deepEqual(rep.nonReproducibleList[0]!.differing, ['out']);
  assert.ok(rep.nonReproducibleList[0]!.excerpt.some((l) => l.includes('stamp')));
  const detail = await checkDetail(rig.pool, r.id);
  assert.ok(detail.excerpt.some((l) => l.includes(`+${newStamp}`)));

  // A configured hook gets Nix's arguments: old path, new path, drv path, build directory.
  const hook = join(rig.nix.dir, 'hook.sh');
  writeFileSync(hook, '#!/bin/sh\necho "hook old=$1"\necho "hook new=$2"\necho "hook drv=$3"\necho "hook dir=$4"\n');
  chmodSync(hook, 0o755);
  const h = report(await runCheck(rig.pool, admin, {build}, {...deps(), diffHook: hook}));
  assert.equal(h.verdict, 'not-reproducible');
  assert.equal(h.diffTool, 'hook');
  const hookLog = readFileSync(h.diffLogPath!, 'utf8');
  assert.ok(hookLog.includes(`hook old=${outs[0]}`), hookLog);
  assert.ok(hookLog.includes(`hook new=${h.outputs[0]!.checkPath}`), hookLog);
  assert.ok(hookLog.includes(`hook drv=${h.drvPath}`), hookLog);
  assert.ok(hookLog.includes(`hook dir=${h.checkDir}`), hookLog);
  assert.equal((await stepOf(build)).timesbuilt, 3);
});

test('a rebuild that fails on the builder is "check failed"; the build, its outputs and its step are untouched', {timeout: 120_000}, async () => {
  // The marker lives in the fleet's shared directory: the one host directory its sandboxes see.
  const marker = join(rig.fleet!.sharedDir, 'marker');
  writeFileSync(marker, 'present\n');
  const expr = `${mkPrelude(rig.nix.nonce)}
    mk "needs-marker" [] "echo reading marker; cat ${marker} > $out"`;
  const {ids, outs} = await buildThroughRunner(expr);
  const build = ids[0]!;
  const snapshot = async () => ({
    build: (await rig.pool.query('SELECT * FROM Builds WHERE id = $1', [build])).rows[0],
    outputs: (await rig.pool.query('SELECT * FROM BuildOutputs WHERE build = $1 ORDER BY name', [build])).rows,
    steps: (await rig.pool.query('SELECT * FROM BuildSteps WHERE build = $1 ORDER BY stepnr', [build])).rows,
    stepOutputs: (await rig.pool.query('SELECT * FROM BuildStepOutputs WHERE build = $1 ORDER BY stepnr, name', [build])).rows,
    info: (await queryPathInfos(outs)).get(outs[0]!),
  });
  const before = await snapshot();
  assert.ok(before.info, 'the output is valid in the coordinator store');
  rmSync(marker);

  const r = report(await runCheck(rig.pool, admin, {build}, deps()));
  assert.equal(r.verdict, 'check-failed');
  assert.match(r.error ?? '', /failed with PermanentFailure/);
  assert.equal(r.diffLogPath, null);
  assert.equal(r.stepMarked, false);
  assert.match(readFileSync(r.logs[0]!, 'utf8'), /reading marker/, 'the failed round kept its log');
  const row = (await rig.pool.query('SELECT verdict, error, finished_at FROM hydra_ops.repro_checks WHERE id = $1', [r.id])).rows[0];
  assert.equal(row.verdict, 'check-failed');
  assert.ok(row.error && row.finished_at);

  const afterwards = await snapshot();
  assert.deepEqual(afterwards, before, 'Builds, BuildOutputs, BuildSteps, BuildStepOutputs and the store path are unchanged');
  assert.equal(readFileSync(outs[0]!, 'utf8'), 'present\n');
  const audit = (await rig.pool.query("SELECT outcome FROM hydra_ops.audit_log WHERE action = 'check' ORDER BY id DESC LIMIT 1")).rows[0];
  assert.equal(audit.outcome, 'failed');

  // The builder goes away mid-check: also "check failed", nothing touched.
  writeFileSync(marker, 'present\n');
  const slow = `${mkPrelude(rig.nix.nonce)}
    mk "slow-check" [] "echo start; if [ -e ${marker}.slow ]; then sleep 30; fi; echo done > $out"`;
  const built = await buildThroughRunner(slow);
  writeFileSync(`${marker}.slow`, '');
  const original = await stepOf(built.ids[0]!);
  const other = rig.fleet!.builders.findIndex((b) => !original.machine.includes(`:${b.port}`));
  let started!: () => void;
  const startedP = new Promise<void>((resolve) => (started = resolve));
  const pending = runCheck(rig.pool, admin, {build: built.ids[0]!, onStarted: () => started()}, deps());
  await startedP;
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await rig.fleet!.stopBuilder(other);
  const killed = report(await pending);
  assert.equal(killed.verdict, 'check-failed');
  assert.ok(killed.error && killed.error.length > 0);
  assert.equal((await stepOf(built.ids[0]!)).timesbuilt, original.timesbuilt, 'the step is not marked');
  assert.ok((await queryValidPaths(built.outs)).has(built.outs[0]!));
  await rig.fleet!.startBuilder(other);
  rmSync(`${marker}.slow`);
});

test('hydra-ops check and hydra-ops repro on the command line', {timeout: 120_000}, async () => {
  const {ids} = await buildThroughRunner(`${mkPrelude(rig.nix.nonce)} mk "cli-det" [] "echo same > $out"`);
  const build = ids[0]!;
  const configDir = join(rig.nix.dir, 'config');
  const env = {HYDRA_DATABASE_URL: rig.db.url, HYDRA_DATA: rig.dataDir, NIX_REMOTE_SYSTEMS: rig.fleet!.machinesFile, HYDRA_OPS_CONFIG_DIR: configDir};
  // Independent invocations run side by side (each CLI start costs a few seconds under tsx).
  const [check, bad, missing] = await Promise.all([
    runCli(['--local-admin', '--json', 'check', String(build)], env),
    runCli(['--local-admin', 'check', String(build), '--rounds', '0'], env),
    runCli(['--local-admin', 'check', '999999'], env),
  ]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--rounds/);
  assert.equal(missing.code, 3, missing.stderr);
  assert.equal(check.code, 0, check.stderr);
  const r = JSON.parse(check.stdout);
  assert.equal(r.verdict, 'reproducible');
  assert.equal(r.build, build);

  const [rep, show] = await Promise.all([runCli(['--json', 'repro', '--filter', `id:${build}`], env), runCli(['repro', '--show', String(r.id)], env)]);
  assert.equal(rep.code, 0, rep.stderr);
  const doc = JSON.parse(rep.stdout);
  assert.equal(doc.builds, 1);
  assert.equal(doc.reproducible, 1);
  assert.equal(doc.reproducibleShare, 1);
  assert.equal(doc.unchecked, 0);

  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, new RegExp(`check ${r.id}: reproducible`));
});
