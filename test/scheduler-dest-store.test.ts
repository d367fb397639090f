// store_uri and use-substitutes end to end: real PostgreSQL, real Nix, real sshd builders. Outputs of a finished
// step are published to a signed file:// binary cache (log included) or to another builder's store over ssh://; a
// destination that refuses them fails the step with the reason; every step's log is uploaded, failed ones too;
// outputs valid locally but missing at the destination are copied there at load (signatures checked, a refusal
// means a build); outputs in a file:// substituter are substituted (type 1 step rows) instead of built, in chunks.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs';
import {basename, join} from 'node:path';
import {execa} from 'execa';
import {runnerRig, mkPrelude, type RunnerRig} from './support/runner-rig.js';
import {waitFor} from './support/wait.js';
import {defaultRunnerSettings, type RunnerSettings} from '../source/config/hydra-conf.js';
import {queryValidPaths, storeDir} from '../source/nix/store.js';
import {substitutePaths} from '../source/nix/dest-store.js';
import {readDrv, outputPathMap} from '../source/nix/drv.js';
import type {SchedulerOptions} from '../source/scheduler/context.js';
import type {MachineSpec} from '../source/fleet/machines-file.js';

const NIX = ['--extra-experimental-features', 'nix-command'];

function runner(rig: RunnerRig, settings: Partial<RunnerSettings>): RunnerSettings {
  return {...defaultRunnerSettings(), gcRootsDir: join(rig.dataDir, 'gcroots'), ...settings};
}

async function cacheKey(dir: string, name: string): Promise<{secret: string; pub: string}> {
  const secret = join(dir, `${name}.sec`);
  const pubFile = join(dir, `${name}.pub`);
  await execa('nix-store', ['--generate-binary-cache-key', name, secret, pubFile]);
  return {secret, pub: readFileSync(pubFile, 'utf8').trim()};
}

async function outputOf(drvPath: string): Promise<string> {
  return outputPathMap(await readDrv(drvPath)).get('out')!;
}

/** Builds `drv` locally, publishes its output signed to the `file://` cache, then deletes it from the local store. */
async function onlyInCache(drv: string, out: string, cache: string, secret: string): Promise<void> {
  await execa('nix-store', ['--realise', drv, '--option', 'build-users-group', '', '--option', 'substituters', '']);
  await execa('nix', [...NIX, 'copy', '--to', `file://${cache}?secret-key=${secret}`, out]);
  await execa('nix-store', ['--delete', out]);
}

async function stepRows(rig: RunnerRig, build: number) {
  const r = await rig.pool.query(
    `SELECT s.stepnr, s.type, s.busy, s.status, s.errormsg, s.drvpath, s.starttime, s.stoptime, o.name, o.path
       FROM BuildSteps s LEFT JOIN BuildStepOutputs o ON o.build = s.build AND o.stepnr = s.stepnr WHERE s.build = $1 ORDER BY s.stepnr`,
    [build],
  );
  return r.rows;
}

async function buildWith(rig: RunnerRig, drvs: string[], machines: MachineSpec[], overrides: Partial<SchedulerOptions>) {
  const ids = await rig.queue(drvs);
  const s = rig.scheduler(overrides);
  await s.start();
  s.setMachines(machines);
  s.requestScan();
  const rows = await rig.waitFinished(ids, 120_000);
  await s.stop(2000);
  return {ids, rows};
}

test('store_uri: a built step publishes its closure to a signed file:// cache and an ssh:// store before it finishes', {timeout: 240_000}, async () => {
  const rig = await runnerRig({builders: 2, label: 'dest_store'});
  try {
    const keys = await cacheKey(rig.nix.dir, 'hydra-ops-test-1');
    const other = await cacheKey(rig.nix.dir, 'someone-else-1');
    const cache = join(rig.nix.dir, 'cache');
    const expr = `${mkPrelude(rig.nix.nonce)}
      let lib = mk "dest-lib" [] "echo lib > $out";
      in [ (mk "dest-app" [lib] "echo publishing app log line; echo \${lib} > $out") ]`;
    const [drv] = await rig.nix.instantiate(expr);
    const out = await outputOf(drv!);
    const {ids, rows} = await buildWith(rig, [drv!], rig.machines.slice(0, 1), {
      runner: runner(rig, {storeUri: `file://${cache}?secret-key=${keys.secret}&compression=xz`, uploadLogsToBinaryCache: true}),
    });
    const row = rows.get(ids[0]!)!;
    assert.equal(row.buildstatus, 0, JSON.stringify(await stepRows(rig, ids[0]!)));
    // The output and its runtime dependency are in the cache, signed with the configured key.
    const narinfo = readFileSync(join(cache, `${basename(out).slice(0, 32)}.narinfo`), 'utf8');
    assert.match(narinfo, new RegExp(`^StorePath: ${out}$`, 'm'));
    assert.match(narinfo, /^Compression: xz$/m);
    assert.match(narinfo, /^Sig: hydra-ops-test-1:/m);
    const refs = /^References: (.*)$/m.exec(narinfo)![1]!.split(' ').filter((x) => x !== '');
    assert.equal(refs.length, 1, 'the app references the lib');
    assert.ok(existsSync(join(cache, `${refs[0]!.slice(0, 32)}.narinfo`)), 'the closure is published, not only the output');
    const verify = await execa('nix', [...NIX, 'store', 'verify', '--store', `file://${cache}`, '--trusted-public-keys', keys.pub, '--recursive', out], {reject: false});
    assert.equal(verify.exitCode, 0, `verify with the cache's key: ${verify.stderr}`);
    const wrong = await execa('nix', [...NIX, 'store', 'verify', '--store', `file://${cache}`, '--trusted-public-keys', other.pub, out], {reject: false});
    assert.notEqual(wrong.exitCode, 0, 'a key the cache was not signed with does not verify it');
    // upload_logs_to_binary_cache: the log sits at log/<drv basename>; the local copy stays for the console.
    const uploaded = readFileSync(join(cache, 'log', basename(drv!)), 'utf8');
    assert.match(uploaded, /publishing app log line/);

    // ssh://: the second builder's store receives the closure of what the first one built.
    const target = rig.fleet!.builders[1]!;
    const knownHosts = join(rig.dataDir, 'known_hosts');
    writeFileSync(knownHosts, `[127.0.0.1]:${target.port} ${target.hostKeyLine}\n`);
    const sshOpts = `-p ${target.port} -i ${rig.fleet!.clientKey} -o UserKnownHostsFile=${knownHosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes`;
    const [drv2] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} [ (mk "dest-ssh" [] "echo over ssh > $out") ]`);
    const out2 = await outputOf(drv2!);
    const second = await buildWith(rig, [drv2!], rig.machines.slice(0, 1), {
      runner: runner(rig, {storeUri: 'ssh://root@127.0.0.1', uploadLogsToBinaryCache: true}),
      nix: {env: {NIX_SSHOPTS: sshOpts}},
    });
    assert.equal(second.rows.get(second.ids[0]!)!.buildstatus, 0, JSON.stringify(await stepRows(rig, second.ids[0]!)));
    assert.ok(existsSync(join(target.storeDir, 'store', basename(out2))), `${out2} is in ${target.name}'s store`);
    const info = await execa('nix', [...NIX, 'path-info', '--store', 'ssh://root@127.0.0.1', out2], {reject: false, env: {NIX_SSHOPTS: sshOpts}});
    assert.equal(info.exitCode, 0, `valid on ${target.name}: ${info.stderr}`);
    assert.equal(info.stdout.trim(), out2);
  } finally {
    await rig.close();
  }
});

test('store_uri: a destination that refuses the outputs fails the step with the reason, never a silent success', {timeout: 120_000}, async () => {
  const rig = await runnerRig({label: 'dest_fail'});
  try {
    // A cache directory below a regular file cannot be created.
    const blocker = join(rig.nix.dir, 'not-a-directory');
    writeFileSync(blocker, '');
    const [drv] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} [ (mk "dest-refused" [] "echo x > $out") ]`);
    const {ids, rows} = await buildWith(rig, [drv!], [rig.localhost()], {runner: runner(rig, {storeUri: `file://${blocker}/cache`}), maxTries: 1});
    const row = rows.get(ids[0]!)!;
    assert.equal(row.buildstatus, 3, 'aborted, as Hydra records a failed copy');
    const steps = await stepRows(rig, ids[0]!);
    assert.equal(steps.length, 1);
    assert.equal(steps[0].status, 3);
    assert.equal(steps[0].busy, 0);
    assert.match(steps[0].errormsg, /destination store file:\/\/.*not-a-directory\/cache/);
    const outs = await rig.pool.query('SELECT path FROM BuildOutputs WHERE build = $1', [ids[0]]);
    assert.equal(outs.rowCount, 1);
  } finally {
    await rig.close();
  }
});

test('use-substitutes: outputs in a file:// substituter are substituted (type 1 rows), the rest is built', {timeout: 120_000}, async () => {
  const rig = await runnerRig({label: 'substitute'});
  try {
    const keys = await cacheKey(rig.nix.dir, 'hydra-ops-subst-1');
    const cache = join(rig.nix.dir, 'subst-cache');
    mkdirSync(cache);
    const expr = `${mkPrelude(rig.nix.nonce)}
      let lib = mk "subst-lib" [] "echo lib > $out";
      in [ lib (mk "subst-app" [lib] "echo app built; cat \${lib} > $out") ]`;
    const [libDrv, appDrv] = await rig.nix.instantiate(expr);
    const libOut = await outputOf(libDrv!);
    const appOut = await outputOf(appDrv!);
    // Build the lib, publish it signed to the cache, then remove it from the local store.
    await onlyInCache(libDrv!, libOut, cache, keys.secret);
    assert.equal((await queryValidPaths([libOut])).size, 0, 'the lib is gone from the local store');

    const nix = {options: [['substituters', `file://${cache}`], ['trusted-public-keys', keys.pub], ['require-sigs', 'true']] as Array<[string, string]>};
    const {ids, rows} = await buildWith(rig, [libDrv!, appDrv!], [rig.localhost()], {runner: runner(rig, {useSubstitutes: true}), nix});
    const [libBuild, appBuild] = ids as [number, number];
    // The lib's build: finished from the substituter, a cached build, one substitution row.
    assert.equal(rows.get(libBuild)!.buildstatus, 0);
    assert.equal(rows.get(libBuild)!.iscachedbuild, 1);
    const libSteps = await stepRows(rig, libBuild);
    // Both builds were loaded in one scan: the substitution is recorded for the build whose load fetched it.
    const appSteps = await stepRows(rig, appBuild);
    const substitutions = [...libSteps, ...appSteps].filter((r) => r.type === 1);
    assert.equal(substitutions.length, 1, JSON.stringify({libSteps, appSteps}));
    const sub = substitutions[0]!;
    assert.equal(sub.drvpath, libDrv);
    assert.equal(sub.status, 0);
    assert.equal(sub.busy, 0);
    assert.equal(sub.path, libOut);
    assert.equal(sub.name, 'out');
    assert.ok(sub.starttime > 0 && sub.stoptime >= sub.starttime);
    // The app was built (not in the cache), against the substituted lib.
    assert.equal(rows.get(appBuild)!.buildstatus, 0);
    assert.equal(rows.get(appBuild)!.iscachedbuild, 0);
    const built = appSteps.filter((r) => r.type === 0);
    assert.equal(built.length, 1);
    assert.equal(built[0].drvpath, appDrv);
    assert.equal((await queryValidPaths([libOut, appOut])).size, 2);
    assert.equal(readFileSync(appOut, 'utf8'), 'lib\n');
  } finally {
    await rig.close();
  }
});

test('use-substitutes off: the same cached output is built, not substituted', {timeout: 120_000}, async () => {
  const rig = await runnerRig({label: 'no_substitute'});
  try {
    const keys = await cacheKey(rig.nix.dir, 'hydra-ops-subst-2');
    const cache = join(rig.nix.dir, 'subst-cache');
    const [drv] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} [ (mk "nosubst" [] "echo built here > $out") ]`);
    const out = await outputOf(drv!);
    await onlyInCache(drv!, out, cache, keys.secret);
    const nix = {options: [['substituters', `file://${cache}`], ['trusted-public-keys', keys.pub]] as Array<[string, string]>};
    const {ids, rows} = await buildWith(rig, [drv!], [rig.localhost()], {runner: runner(rig, {useSubstitutes: false}), nix});
    assert.equal(rows.get(ids[0]!)!.buildstatus, 0);
    assert.equal(rows.get(ids[0]!)!.iscachedbuild, 0);
    const steps = await stepRows(rig, ids[0]!);
    assert.deepEqual(steps.map((r) => r.type), [0]);
  } finally {
    await rig.close();
  }
});

test('upload_logs_to_binary_cache: a failed step\'s log is uploaded too; a log that cannot be uploaded changes no status', {timeout: 120_000}, async () => {
  const rig = await runnerRig({label: 'dest_logs'});
  try {
    const cache = join(rig.nix.dir, 'log-cache');
    const [failing] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} [ (mk "dest-log-fails" [] "echo failing loudly; exit 1") ]`);
    const failedOut = await outputOf(failing!);
    const first = await buildWith(rig, [failing!], [rig.localhost()], {runner: runner(rig, {storeUri: `file://${cache}`, uploadLogsToBinaryCache: true}), maxTries: 1});
    assert.equal(first.rows.get(first.ids[0]!)!.buildstatus, 1);
    const steps = await stepRows(rig, first.ids[0]!);
    assert.deepEqual(steps.map((r) => r.status), [1]);
    const logFile = join(cache, 'log', basename(failing!));
    await waitFor('the failed step\'s log in the cache', () => existsSync(logFile));
    assert.match(readFileSync(logFile, 'utf8'), /failing loudly/);
    assert.ok(!existsSync(join(cache, `${basename(failedOut).slice(0, 32)}.narinfo`)), 'a failed step publishes no output');

    // A cache where the log's place is taken by a directory: the upload fails, is logged, and the step still succeeds.
    const broken = join(rig.nix.dir, 'broken-log-cache');
    const warnings: string[] = [];
    const [fine] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} [ (mk "dest-log-refused" [] "echo fine; echo ok > $out") ]`);
    mkdirSync(join(broken, 'log', basename(fine!), 'occupied'), {recursive: true});
    const out = await outputOf(fine!);
    const second = await buildWith(rig, [fine!], [rig.localhost()], {
      runner: runner(rig, {storeUri: `file://${broken}`, uploadLogsToBinaryCache: true}),
      log: (level, message) => void (level === 'warn' && warnings.push(message)),
    });
    assert.equal(second.rows.get(second.ids[0]!)!.buildstatus, 0, JSON.stringify(await stepRows(rig, second.ids[0]!)));
    assert.deepEqual((await stepRows(rig, second.ids[0]!)).map((r) => r.status), [0]);
    assert.ok(existsSync(join(broken, `${basename(out).slice(0, 32)}.narinfo`)), 'the outputs are published');
    assert.ok(warnings.some((w) => w.includes('cannot upload the log of') && w.includes(fine!)), `the failed upload is logged: ${warnings.join(' | ')}`);
  } finally {
    await rig.close();
  }
});

test('store_uri: an output valid locally but missing from the destination is copied there when a build uses it (type 1 row)', {timeout: 120_000}, async () => {
  const rig = await runnerRig({label: 'dest_local_valid'});
  try {
    const cache = join(rig.nix.dir, 'cache');
    // The tool is needed only while building the app (its content is copied, its path not referenced), so publishing
    // the app's closure alone would leave it out of the cache.
    const expr = `${mkPrelude(rig.nix.nonce)}
      let tool = mk "dest-tool" [] "echo tool > $out";
      in [ tool (mk "dest-user" [tool] "cat \${tool} > $out") ]`;
    const [toolDrv, appDrv] = await rig.nix.instantiate(expr);
    const toolOut = await outputOf(toolDrv!);
    const appOut = await outputOf(appDrv!);
    await execa('nix-store', ['--realise', toolDrv!, '--option', 'build-users-group', '', '--option', 'substituters', '']);
    assert.equal((await queryValidPaths([toolOut])).size, 1, 'the tool is valid locally');
    const narinfo = (p: string) => join(cache, `${basename(p).slice(0, 32)}.narinfo`);
    const {ids, rows} = await buildWith(rig, [appDrv!], [rig.localhost()], {runner: runner(rig, {storeUri: `file://${cache}`})});
    assert.equal(rows.get(ids[0]!)!.buildstatus, 0, JSON.stringify(await stepRows(rig, ids[0]!)));
    assert.equal(readFileSync(appOut, 'utf8'), 'tool\n');
    assert.ok(existsSync(narinfo(appOut)), 'the built output is published');
    assert.ok(existsSync(narinfo(toolOut)), 'the locally valid build input is published too');
    const steps = await stepRows(rig, ids[0]!);
    const copied = steps.filter((r) => r.type === 1);
    assert.equal(copied.length, 1, JSON.stringify(steps));
    assert.equal(copied[0].drvpath, toolDrv);
    assert.equal(copied[0].path, toolOut);
    assert.equal(copied[0].status, 0);
    assert.deepEqual(steps.filter((r) => r.type === 0).map((r) => r.drvpath), [appDrv]);

    // A build of the tool itself, already in the cache now: a cached success with no further row or copy.
    const again = await buildWith(rig, [toolDrv!], [rig.localhost()], {runner: runner(rig, {storeUri: `file://${cache}`})});
    assert.equal(again.rows.get(again.ids[0]!)!.iscachedbuild, 1);
    assert.deepEqual(await stepRows(rig, again.ids[0]!), []);
  } finally {
    await rig.close();
  }
});

test('store_uri signatures: copies at load check them (refused: the derivation is built), the copy after a build does not', {timeout: 120_000}, async () => {
  const rig = await runnerRig({label: 'dest_sigs'});
  try {
    // A local store that requires signatures: unlike a binary cache, it tells CheckSigs from NoCheckSigs.
    const root = join(rig.nix.dir, 'dest-root');
    const uri = `local?root=${root}&require-sigs=true`;
    const expr = `${mkPrelude(rig.nix.nonce)}
      let tool = mk "sigs-tool" [] "echo tool > $out";
      in [ (mk "sigs-user" [tool] "cat \${tool} > $out") ]`;
    const [appDrv] = await rig.nix.instantiate(expr);
    const toolDrv = [...(await readDrv(appDrv!)).inputDrvs.keys()][0]!;
    const toolOut = await outputOf(toolDrv);
    const appOut = await outputOf(appDrv!);
    // Built locally, so unsigned.
    await execa('nix-store', ['--realise', toolDrv, '--option', 'build-users-group', '', '--option', 'substituters', '']);
    const {ids, rows} = await buildWith(rig, [appDrv!], [rig.localhost()], {runner: runner(rig, {storeUri: uri})});
    const steps = await stepRows(rig, ids[0]!);
    assert.equal(rows.get(ids[0]!)!.buildstatus, 0, JSON.stringify(steps));
    // The unsigned tool was refused at load, so it was built as a step and published after that build, unchecked.
    assert.deepEqual(steps.filter((r) => r.type === 1), [], 'no copy at load succeeded');
    assert.deepEqual(steps.map((r) => [r.type, r.drvpath, r.status]).sort(), [[0, appDrv, 0], [0, toolDrv, 0]].sort());
    const invalid = await execa('nix-store', ['--store', uri, '--check-validity', '--print-invalid', toolOut, appOut]);
    assert.equal(invalid.stdout.trim(), '', 'both outputs are valid in the destination');
  } finally {
    await rig.close();
  }
});

test('use-substitutes: paths are substituted in chunks, so 50 000 of them do not overflow the command line', {timeout: 180_000}, async () => {
  const rig = await runnerRig({label: 'subst_chunks'});
  try {
    const keys = await cacheKey(rig.nix.dir, 'hydra-ops-subst-3');
    const cache = join(rig.nix.dir, 'subst-cache');
    const [drv] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} [ (mk "subst-chunked" [] "echo chunked > $out") ]`);
    const out = await outputOf(drv!);
    await onlyInCache(drv!, out, cache, keys.secret);
    // About 2.3 MB of arguments, above Linux's limit for one command line; the one real path comes last.
    const letters = '0123456789abcdfghijklmnpqrsvwxyz';
    const absent = Array.from({length: 50_000}, (_, i) => {
      let h = '';
      for (let n = i, k = 0; k < 32; k++, n = Math.floor(n / 32)) h += letters[n % 32];
      return `${storeDir()}/${h}-absent`;
    });
    const nix = {options: [['substituters', `file://${cache}`], ['trusted-public-keys', keys.pub]] as Array<[string, string]>};
    const r = await substitutePaths([...absent, out], nix);
    assert.equal(r.ok, false, 'the absent paths cannot be substituted');
    assert.doesNotMatch(r.message, /E2BIG|argument list too long/i);
    assert.equal((await queryValidPaths([out])).size, 1, `the real path was substituted: ${r.message}`);
  } finally {
    await rig.close();
  }
});
