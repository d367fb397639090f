// End-to-end tests of the step executor on a real fleet: loopback sshd builders with private, initially empty
// Nix stores, tiny /bin/sh derivations instantiated in this machine's store (the coordinator's).

import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {createHash} from 'node:crypto';
import {existsSync, readFileSync, writeFileSync} from 'node:fs';
import {readFile} from 'node:fs/promises';
import {join} from 'node:path';
import {execa} from 'execa';
import {startFleet, type Fleet} from './support/fleet.js';
import {nixFixture, type NixFixture} from './support/nix-fixtures.js';
import {parseMachinesText, type MachineSpec} from '../source/fleet/machines-file.js';
import {SshConnectionPool} from '../source/fleet/ssh-transport.js';
import {FleetExecutor} from '../source/fleet/step-runner.js';
import type {StepPhase, StepRequest, StepResult} from '../source/fleet/step-api.js';
import {readDrv} from '../source/nix/drv.js';
import {drvLogBucketPath, storeDir} from '../source/nix/store.js';

let fleet: Fleet;
let fx: NixFixture;
let machines: MachineSpec[];
let pool: SshConnectionPool;
let executor: FleetExecutor;
const NO_BUILD_USERS = ['--option', 'build-users-group', '', '--option', 'substituters', ''];

before(async () => {
  [fleet, fx] = await Promise.all([startFleet(2), nixFixture('steprun')]);
  const parsed = parseMachinesText(readFileSync(fleet.machinesFile, 'utf8'), fleet.machinesFile);
  assert.deepEqual(parsed.errors, []);
  machines = parsed.machines;
  pool = new SshConnectionPool({knownHostsFiles: []});
  executor = new FleetExecutor({sshPool: pool, localStoreIsDestination: true, localServe: {extraArgs: NO_BUILD_USERS}});
  // Create the builders' empty store databases up front: concurrent first uses of a brand-new store race on it.
  for (const m of machines) assert.equal((await pool.run(m, ['nix-store', '--init'])).code, 0);
});

after(async () => {
  await executor?.close();
  pool?.closeAll();
  await fleet?.stop();
  await fx?.cleanup();
});

/** A derivation using only /bin/sh (no nixpkgs). `extra` adds attributes (Nix syntax). */
function shDrv(name: string, script: string, extra = ''): string {
  return `derivation { name = ${JSON.stringify(name)}; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" ${JSON.stringify(script)} ]; PATH = "/usr/bin:/bin"; nonce = "${fx.nonce}"; ${extra} }`;
}

async function instantiate(expr: string): Promise<string> {
  const [drv] = await fx.instantiate(expr);
  assert.ok(drv);
  return drv;
}

interface Probe {
  request: StepRequest;
  phases: StepPhase[];
  connected: number;
  released: number;
  controller: AbortController;
}

async function probe(drvPath: string, machine: MachineSpec, overrides: Partial<StepRequest> = {}): Promise<Probe> {
  const controller = new AbortController();
  const p: Probe = {phases: [], connected: 0, released: 0, controller, request: undefined as never};
  p.request = {
    machine,
    drvPath,
    drv: await readDrv(drvPath),
    maxSilentTime: 60,
    buildTimeout: 120,
    maxLogSize: 1 << 20,
    maxOutputSize: 0,
    logPath: drvLogBucketPath(join(fx.dir, 'data dir'), drvPath),
    signal: controller.signal,
    onPhase: (phase) => void p.phases.push(phase),
    onConnected: () => void p.connected++,
    onSlotReleased: () => void p.released++,
    ...overrides,
  };
  return p;
}

async function runStep(drvPath: string, machine: MachineSpec, overrides: Partial<StepRequest> = {}): Promise<{p: Probe; r: StepResult}> {
  const p = await probe(drvPath, machine, overrides);
  const r = await executor.run(p.request);
  for (const o of r.outputs.values()) fx.track(o.path);
  return {p, r};
}

async function remoteValid(machine: MachineSpec, paths: string[]): Promise<boolean[]> {
  const out: boolean[] = [];
  for (const path of paths) out.push((await pool.run(machine, ['nix-store', '--check-validity', path])).code === 0);
  return out;
}

async function localValid(path: string): Promise<boolean> {
  return (await execa('nix-store', ['--check-validity', path], {reject: false})).exitCode === 0;
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const fileText = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8') : '');

test('a multi-user builder builds as one of its own build users, in the sandbox, with /bin/sh the static busybox', async () => {
  // /proc/self/uid_map inside the sandbox maps the sandbox uid to the real build user's uid.
  const script =
    'mkdir $out; cat /proc/self/uid_map > $out/uid_map; if [ -e /usr ]; then echo host-fs > $out/fs; else echo sandbox > $out/fs; fi; ' +
    'readlink -f /bin/sh > $out/sh; echo $nonce > $out/nonce';
  const seen: number[][] = [];
  for (const i of [0, 1]) {
    const drv = await instantiate(shDrv(`multi-user-${i}`, script, `builder_index = "${i}";`));
    const {r} = await runStep(drv, machines[i]!);
    assert.equal(r.status, 0, r.errorMsg ?? '');
    const out = r.outputs.get('out')!.path;
    assert.equal(readFileSync(join(out, 'fs'), 'utf8').trim(), 'sandbox');
    const [, outside] = readFileSync(join(out, 'uid_map'), 'utf8').trim().split(/\s+/).map(Number);
    assert.ok(fleet.builders[i]!.buildUsers.uids.includes(outside!), `uid ${outside} is not a build user of builder ${i}: ${fleet.builders[i]!.buildUsers.uids}`);
    seen.push(fleet.builders[i]!.buildUsers.uids);
  }
  // Two stores never share build users.
  assert.equal(seen[0]!.filter((u) => seen[1]!.includes(u)).length, 0);
});

test('a 3-level DAG: the input closure goes to the builder, the output comes back verified, the log is written', async () => {
  const defs = `
    a = ${shDrv('dag-a', 'mkdir $out; echo leaf > $out/leaf')};
    b = ${shDrv('dag-b', 'mkdir $out; echo ${a} > $out/a-ref', '')};
    c = ${shDrv('dag-c', 'echo building-c-$nonce; mkdir $out; echo ${b} > $out/b-ref; echo done-c')};`;
  // The two lower levels are built here, the top one on builder 0.
  const [bOut] = await fx.build(`let ${defs} in b`);
  const cDrv = await instantiate(`let ${defs} in c`);
  const aOut = (await execa('nix-store', ['--query', '--references', bOut!])).stdout.split('\n').find((p) => p.includes('dag-a'));
  assert.ok(bOut && aOut);
  assert.deepEqual(await remoteValid(machines[0]!, [aOut, bOut]), [false, false]);

  const {p, r} = await runStep(cDrv, machines[0]!);
  assert.equal(r.status, 0, r.errorMsg ?? '');
  assert.deepEqual(p.phases, ['connecting', 'sending', 'building', 'receiving', 'postprocessing']);
  assert.equal(p.connected, 1);
  assert.equal(p.released, 1);
  assert.equal(r.machineFault, false);
  assert.equal(r.isCached, false);
  assert.equal(r.logPath, p.request.logPath);
  assert.deepEqual(await remoteValid(machines[0]!, [aOut, bOut]), [true, true]);

  const out = r.outputs.get('out');
  assert.ok(out);
  assert.equal(out.path, p.request.drv.outputs.get('out')!.path);
  assert.ok(await localValid(out.path));
  const localHash = (await execa('nix-store', ['--query', '--hash', out.path])).stdout.trim();
  assert.equal(out.narHash, localHash);
  assert.equal(readFileSync(join(out.path, 'b-ref'), 'utf8').trim(), bOut);
  const refs = (await execa('nix-store', ['--query', '--references', out.path])).stdout.split('\n');
  assert.ok(refs.includes(bOut));

  assert.equal(r.size, out.narSize);
  assert.ok(r.closureSize! > r.size!);
  assert.ok(r.bytesSent > r.size! && r.bytesReceived >= r.size!);
  assert.ok(r.startTime > 0 && r.stopTime >= r.startTime);
  // A directory output with no products file is a default nix-build product.
  assert.deepEqual(
    r.products.map((x) => [x.type, x.subtype, x.path]),
    [['nix-build', '', out.path]],
  );
  const log = await readFile(p.request.logPath, 'utf8');
  assert.match(log, new RegExp(`building-c-${fx.nonce}`));
  assert.match(log, /done-c/);

  // Again on the same builder: the outputs are already valid there, so the step is cached and has no log.
  const again = await runStep(cDrv, machines[0]!);
  assert.equal(again.r.status, 0, again.r.errorMsg ?? '');
  assert.equal(again.r.isCached, true);
  assert.equal(again.r.logPath, null);
  assert.equal(existsSync(again.p.request.logPath), false);
  assert.equal(again.r.outputs.get('out')?.narHash, localHash);
});

test('the closure size of a step\'s outputs is measured once', async () => {
  const calls = join(fx.dir, 'nix-store-calls');
  const wrapper = join(fx.dir, 'nix-store-logging');
  const real = (await execa('sh', ['-c', 'command -v nix-store'])).stdout.trim();
  writeFileSync(wrapper, `#!/bin/sh\necho "$*" >> '${calls}'\nexec '${real}' "$@"\n`, {mode: 0o755});
  const counting = new FleetExecutor({sshPool: pool, localStoreIsDestination: true, nixStoreBin: wrapper, localStore: 'commands', localServe: {extraArgs: NO_BUILD_USERS}});
  const drvPath = await instantiate(shDrv('closure-once', 'mkdir $out; echo once > $out/x'));
  const p = await probe(drvPath, machines[1]!);
  const r = await counting.run(p.request);
  for (const o of r.outputs.values()) fx.track(o.path);
  assert.equal(r.status, 0, r.errorMsg ?? '');
  assert.ok(r.closureSize! >= r.size! && r.size! > 0);
  const sizeCalls = fileText(calls).split('\n').filter((l) => l.startsWith('--query --size'));
  assert.equal(sizeCalls.length, 1, fileText(calls));
});

test('with reuseSessions, steps reuse one serve session per slot and reach the coordinator\'s store through long-lived nix-store --serve processes', async () => {
  const calls = join(fx.dir, 'nix-store-serve-calls');
  const wrapper = join(fx.dir, 'nix-store-serve-logging');
  const real = (await execa('sh', ['-c', 'command -v nix-store'])).stdout.trim();
  writeFileSync(wrapper, `#!/bin/sh\necho "$*" >> '${calls}'\nexec '${real}' "$@"\n`, {mode: 0o755});
  const serving = new FleetExecutor({sshPool: pool, localStoreIsDestination: true, nixStoreBin: wrapper, reuseSessions: true, localServe: {extraArgs: NO_BUILD_USERS}});
  try {
    // Two steps on machine 0 (the second reuses the first one's session), one on machine 1.
    const a = await instantiate(shDrv('serve-a', 'mkdir $out; echo a > $out/a'));
    const b = await instantiate(shDrv('serve-b', 'mkdir $out; echo b > $out/b'));
    const results: StepResult[] = [];
    for (const [drv, m] of [[a, machines[0]!], [b, machines[0]!], [a, machines[1]!]] as const) {
      const p = await probe(drv, m);
      const r = await serving.run(p.request);
      for (const o of r.outputs.values()) fx.track(o.path);
      assert.equal(r.status, 0, r.errorMsg ?? '');
      assert.ok(r.closureSize! >= r.size! && r.size! > 0, 'sizes measured through the serve session');
      assert.ok(r.bytesReceived > 0 && r.bytesSent > 0);
      results.push(r);
    }
    assert.ok(await localValid(results[0]!.outputs.get('out')!.path), 'the output was imported into the coordinator\'s store');
    assert.equal(serving.sessionsOpened, 2, 'one session per machine, the second step on machine 0 reused the first one\'s');
    assert.ok(results[1]!.bytesSent < results[0]!.bytesSent + 1_000_000, 'byte counts are per step, not per session');
    const lines = fileText(calls).trim().split('\n').filter(Boolean);
    assert.ok(lines.length >= 1, 'the coordinator\'s store was used');
    assert.deepEqual(lines.filter((l) => !l.startsWith('--serve --write')), [], `only serve processes, no command per operation:\n${fileText(calls)}`);
    assert.ok(lines.length <= 4, `at most 4 serve processes for 3 steps:\n${fileText(calls)}`);
  } finally {
    await serving.close();
  }
});

test('several outputs referring to each other come back dependencies first', async () => {
  const drv = await instantiate(shDrv('multi', 'mkdir $lib $out; echo x > $lib/x; echo $lib > $out/ref', 'outputs = [ "out" "lib" ];'));
  const {r} = await runStep(drv, machines[1]!);
  assert.equal(r.status, 0, r.errorMsg ?? '');
  const out = r.outputs.get('out')!.path;
  const lib = r.outputs.get('lib')!.path;
  assert.ok((await localValid(out)) && (await localValid(lib)));
  assert.ok((await execa('nix-store', ['--query', '--references', out])).stdout.split('\n').includes(lib));
  assert.equal(r.size, r.outputs.get('out')!.narSize + r.outputs.get('lib')!.narSize);
  assert.equal(r.closureSize, r.size);
  assert.deepEqual(r.products.map((x) => [x.subtype, x.path]).sort(), [['', out], ['lib', lib]].sort());
});

test('build failures, limits and nix-support files map to the right step results', async () => {
  const m = machines[1]!;
  const failing = await instantiate(shDrv('fails', 'echo about-to-fail; exit 1'));
  const silent = await instantiate(shDrv('silent', 'echo going-quiet; sleep 10'));
  const chatty = await instantiate(shDrv('chatty', 'i=0; while [ $i -lt 500 ]; do echo 0123456789012345678901234567890123456789; i=$((i+1)); done; mkdir $out'));
  const big = await instantiate(shDrv('big', 'mkdir $out; head -c 40000 /dev/zero > $out/a; head -c 40000 /dev/zero > $out/b'));
  const supportScript = [
    'mkdir -p $out/nix-support $out/share',
    'printf "hello product" > "$out/share/my file.txt"',
    'echo "<html/>" > $out/share/doc.html',
    'touch $out/nix-support/failed',
    'printf \'file binary-dist "%s/share/my file.txt"\\n\' $out > $out/nix-support/hydra-build-products',
    'printf \'doc manual %s/share/doc.html index.html\\n\' $out >> $out/nix-support/hydra-build-products',
    'printf \'bad line <script>\\nfile dist /etc/passwd\\nfile dist %s/share/missing\\n\' $out >> $out/nix-support/hydra-build-products',
    'echo "  my-release-1.0  " > $out/nix-support/hydra-release-name',
    'printf "runtime 12.5 s\\nbogus\\nbad\\$name 1\\nsize notanumber\\nmem 42 b@d\\nruntime 13 ms\\n" > $out/nix-support/hydra-metrics',
  ].join('; ');
  const support = await instantiate(shDrv('support', supportScript));

  const [fail, quiet, loud, large, sup] = await Promise.all([
    runStep(failing, m),
    runStep(silent, m, {maxSilentTime: 1}),
    runStep(chatty, m, {maxLogSize: 4096}),
    runStep(big, m, {maxOutputSize: 50_000}),
    runStep(support, m),
  ]);

  assert.equal(fail.r.status, 1, fail.r.errorMsg ?? '');
  assert.equal(fail.r.cacheFailure, true);
  assert.equal(fail.r.retry, false);
  assert.equal(fail.r.errorMsg, null);
  assert.equal(fail.r.machineFault, false);
  assert.equal(fail.p.released, 0);
  assert.match(fileText(fail.p.request.logPath), /about-to-fail/);

  assert.equal(quiet.r.status, 7);
  assert.equal(quiet.r.retry, false);
  assert.equal(quiet.r.cacheFailure, false);

  assert.equal(loud.r.status, 10);
  assert.equal(loud.r.retry, false);

  assert.equal(large.r.status, 11);
  assert.equal(large.r.retry, false);
  assert.equal(large.r.cacheFailure, false);
  assert.deepEqual(large.p.phases, ['connecting', 'sending', 'building', 'receiving']);
  assert.equal(large.r.outputs.size, 0);
  assert.equal(await localValid(large.p.request.drv.outputs.get('out')!.path), false, 'oversized output must not be copied');

  assert.equal(sup.r.status, 0, sup.r.errorMsg ?? '');
  assert.equal(sup.r.failedMarker, true);
  const out = sup.r.outputs.get('out')!.path;
  assert.deepEqual(
    sup.r.products.map((x) => ({type: x.type, subtype: x.subtype, name: x.name, path: x.path, defaultpath: x.defaultpath})),
    [
      {type: 'file', subtype: 'binary-dist', name: 'my file.txt', path: `${out}/share/my file.txt`, defaultpath: ''},
      {type: 'doc', subtype: 'manual', name: 'doc.html', path: `${out}/share/doc.html`, defaultpath: 'index.html'},
    ],
  );
  assert.equal(sup.r.products[0]!.filesize, 'hello product'.length);
  assert.equal(sup.r.products[0]!.sha256hash, createHash('sha256').update('hello product').digest('hex'));
  assert.equal(sup.r.releaseName, 'my-release-1.0');
  assert.deepEqual(
    sup.r.metrics.map((x) => [x.name, x.value, x.unit]).sort(),
    [
      ['mem', 42, null],
      ['runtime', 13, 'ms'],
    ],
  );
});

test('a wrong pinned host key: status 3, machine fault, nothing reaches the builder', async () => {
  const src = `builtins.toFile "hostkey-${fx.nonce}" "x"`;
  const drv = await instantiate(shDrv('hostkey', 'cat $src > $out', `src = ${src};`));
  const srcPath = (await readDrv(drv)).inputSrcs.find((s) => s.includes('hostkey'))!;
  const wrong = {...machines[0]!, publicHostKey: fleet.builders[1]!.hostKeyLine};
  // A pool of its own: the shared one already holds an authenticated connection to this machine.
  const own = new SshConnectionPool({knownHostsFiles: []});
  const exec = new FleetExecutor({sshPool: own, localStoreIsDestination: true});
  const p = await probe(drv, wrong);
  const r = await exec.run(p.request).finally(() => own.closeAll());
  assert.equal(r.status, 3);
  assert.equal(r.retry, true);
  assert.equal(r.machineFault, true);
  assert.match(r.errorMsg ?? '', /host key mismatch/);
  assert.equal(p.connected, 0);
  assert.deepEqual(p.phases, ['connecting']);
  assert.deepEqual(await remoteValid(machines[0]!, [srcPath]), [false]);
});

test('aborting mid-build kills the remote build within 2 s: status 4', async () => {
  const marker = `abort-marker-${fx.nonce}`;
  const drv = await instantiate(shDrv('abortme', `echo started; sleep 30; echo ${marker}; touch $out`));
  const p = await probe(drv, machines[0]!);
  const running = executor.run(p.request);
  await waitFor('the build to start', () => fileText(p.request.logPath).includes('started'));
  const pgrep = async () => (await execa('pgrep', ['-f', marker], {reject: false})).exitCode === 0;
  assert.ok(await pgrep(), 'the remote build process is visible');
  const t0 = Date.now();
  p.controller.abort();
  await waitFor('the remote build to die', async () => !(await pgrep()), 2000);
  const r = await running;
  assert.ok(Date.now() - t0 < 2500);
  assert.equal(r.status, 4);
  assert.equal(r.retry, false);
  assert.equal(r.machineFault, false);
});

test('20 sequential steps on one machine share one SSH connection', async () => {
  const own = new SshConnectionPool({knownHostsFiles: []});
  const exec = new FleetExecutor({sshPool: own, localStoreIsDestination: true});
  try {
    const drvs = await Promise.all(Array.from({length: 20}, (_, i) => instantiate(shDrv(`seq-${i}`, `echo ${i} > $out`))));
    for (const drv of drvs) {
      const p = await probe(drv, machines[1]!);
      const r = await exec.run(p.request);
      for (const o of r.outputs.values()) fx.track(o.path);
      assert.equal(r.status, 0, r.errorMsg ?? '');
    }
    assert.equal(own.connectionsOpened(machines[1]!), 1);
  } finally {
    await exec.close();
    own.closeAll();
  }
});

test('names, environment values and file names with spaces, quotes and $(…) travel safely', async () => {
  // Nix 2.8 accepts only [A-Za-z0-9+._?=-] in names; everything else goes into values and file names.
  const sentinel = join(fx.dir, 'pwned');
  const nasty = `it's "quoted" $(touch ${sentinel}) \`touch ${sentinel}\` and spaces`;
  const fname = `it's "quoted" $(echo boom) \`echo boom\` & spaces; *`;
  const drv = await instantiate(
    shDrv(
      `odd+name=x?y-${fx.nonce}`,
      'mkdir $out; printf "%s" "$nasty" > "$out/$fname"; printf "%s" "$nasty"',
      `nasty = ${JSON.stringify(nasty).replace(/\$/g, '\\$')}; fname = ${JSON.stringify(fname).replace(/\$/g, '\\$')};`,
    ),
  );
  assert.match(drv, /odd\+name=x\?y/);
  const {p, r} = await runStep(drv, machines[0]!);
  assert.equal(r.status, 0, r.errorMsg ?? '');
  const out = r.outputs.get('out')!.path;
  assert.equal(readFileSync(join(out, fname), 'utf8'), nasty);
  assert.ok(fileText(p.request.logPath).includes(nasty));
  assert.equal(existsSync(sentinel), false);
});

test('a localhost machine builds straight into the coordinator store without copying', async () => {
  const local: MachineSpec = {...machines[0]!, uri: 'localhost', kind: 'local', host: 'localhost', port: undefined, user: undefined};
  delete local.publicHostKey;
  delete local.sshKey;
  const drv = await instantiate(shDrv('local', `echo local-build-${fx.nonce}; echo hi > $out`));
  const before = pool.stats(machines[0]!).bytesOut;
  const {p, r} = await runStep(drv, local);
  assert.equal(r.status, 0, r.errorMsg ?? '');
  assert.deepEqual(p.phases, ['connecting', 'sending', 'building', 'postprocessing']);
  const out = r.outputs.get('out')!;
  assert.ok(out.path.startsWith(`${storeDir()}/`));
  assert.equal(readFileSync(out.path, 'utf8'), 'hi\n');
  assert.equal(out.narHash, (await execa('nix-store', ['--query', '--hash', out.path])).stdout.trim());
  assert.equal(r.bytesReceived < 4096, true, `no NARs received (${r.bytesReceived} bytes)`);
  assert.equal(pool.stats(machines[0]!).bytesOut, before);
  assert.match(fileText(p.request.logPath), new RegExp(`local-build-${fx.nonce}`));
});

test('the builder dying mid-build: status 3, retried, machine fault', async () => {
  const drv = await instantiate(shDrv('dies', 'echo started; sleep 30; touch $out'));
  const p = await probe(drv, machines[1]!);
  const running = executor.run(p.request);
  await waitFor('the build to start', () => fileText(p.request.logPath).includes('started'));
  await fleet.stopBuilder(1);
  const r = await running;
  assert.equal(r.status, 3);
  assert.equal(r.retry, true);
  assert.equal(r.machineFault, true);
  assert.ok(r.errorMsg && r.errorMsg.length > 0);
  await fleet.startBuilder(1);
});
