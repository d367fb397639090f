// End-to-end tests of the serve protocol client against a real `nix-store --serve --write` whose store is a
// private, initially empty directory bound over /nix in its own mount namespace (a "builder" with a store of its
// own), while this process uses the machine's store as the coordinator's.

import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtemp, rm, writeFile, chmod, readFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {randomBytes} from 'node:crypto';
import {PassThrough, Readable} from 'node:stream';
import {execa} from 'execa';
import {startLocalServe, localServeCommand, type ServeTransport} from '../source/fleet/local-transport.js';
import {ServeClient, ServeError, mapBuildResult, decodeBuiltOutputs, BuildStatus, type ImportEntry} from '../source/nix/serve-client.js';
import {dumpLocalPath, sameHash, type NarEntry} from '../source/nix/nar.js';
import {writeExportEnd, writeExportEntry} from '../source/nix/export-format.js';
import {WireWriter} from '../source/nix/wire.js';
import {parseDrv, toBasicDerivation, resolveFromDrvFiles} from '../source/nix/drv.js';

let work: string;
let builderStore: string;
const nonce = `${process.pid}-${randomBytes(4).toString('hex')}`;
const open: {transport: ServeTransport; client: ServeClient}[] = [];
const coordinatorPathsToDelete: string[] = [];

function wrapper(): string[] {
  return ['unshare', '-m', 'sh', '-c', 'mount --bind "$0" /nix && exec "$@"', builderStore];
}

async function connect(): Promise<{transport: ServeTransport; client: ServeClient; log: () => string}> {
  // No build users on the test builder: its private store has its own user-pool locks, so sharing the machine's
  // nixbld accounts with builds in the coordinator's store would let either side kill the other's builders.
  const transport = startLocalServe({wrapper: wrapper(), extraArgs: ['--option', 'build-users-group', '']});
  const chunks: Buffer[] = [];
  const client = new ServeClient(transport, {label: 'test builder', onStderr: (c) => chunks.push(c)});
  open.push({transport, client});
  return {transport, client, log: () => Buffer.concat(chunks).toString('utf8')};
}

async function nixStore(...args: string[]): Promise<string> {
  return (await execa('nix-store', args)).stdout.trim();
}

const instantiated: string[] = [];
async function instantiate(expr: string, attr: string): Promise<string> {
  const file = join(work, `${attr}.nix`);
  await writeFile(file, expr);
  const drvPath = (await execa('nix-instantiate', [file])).stdout.trim();
  if (expr.includes(nonce)) instantiated.push(drvPath);
  return drvPath;
}

/** A derivation expression using only /bin/sh (no nixpkgs). */
function shDrv(name: string, script: string, extra = ''): string {
  return `derivation { name = "${name}"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" ${JSON.stringify(script)} ]; ${extra} }`;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'hydra-ops-serve-'));
  builderStore = join(work, 'builder-nix');
  await execa('mkdir', ['-p', builderStore]);
  // Build users must be able to traverse the bound /nix.
  await chmod(work, 0o755);
  await chmod(builderStore, 0o755);
});

after(async () => {
  for (const {transport} of open) await transport.kill(200);
  // Per-run garbage in the coordinator's store: the imported output, then the per-run derivations.
  for (const p of [...coordinatorPathsToDelete, ...instantiated]) await execa('nix-store', ['--delete', p], {reject: false});
  await rm(work, {recursive: true, force: true});
});

test('local transport command line', () => {
  assert.deepEqual(localServeCommand(), ['nix-store', '--serve', '--write', '--builders', '']);
  assert.deepEqual(localServeCommand({store: 'local?root=/x', wrapper: ['w']}), ['w', 'nix-store', '--serve', '--write', '--store', 'local?root=/x', '--builders', '']);
});

test('handshake reports the server version and settles on 2.6', async () => {
  const {client, transport} = await connect();
  assert.equal(await client.handshake(), 0x206);
  assert.equal(client.serverVersion, 0x207); // Nix 2.8
  assert.equal(client.bytesSent, 16);
  assert.equal(client.bytesReceived, 16);
  await client.close();
  assert.deepEqual(await transport.exited, {code: 0, signal: null});
});

test('EOF during the handshake reports the peer\'s stderr', async () => {
  // A wrapper that fails the way ssh does when it cannot reach the host; the serve command never runs.
  const transport = startLocalServe({wrapper: ['sh', '-c', 'echo "ssh: connect to host nowhere: refused" >&2; exit 255']});
  const client = new ServeClient(transport, {label: 'nowhere'});
  open.push({transport, client});
  await assert.rejects(client.handshake(), (e: unknown) => {
    assert.ok(e instanceof ServeError);
    assert.match(e.message, /cannot connect to nowhere/);
    assert.match(e.message, /connect to host nowhere: refused/);
    return true;
  });
});

test('copy a closure in, build on the builder, copy the output back', async () => {
  // Coordinator-side closure: main's output references dep's output.
  const depExpr = shDrv('hydra-ops-test-dep', 'echo dependency-output > $out');
  const mainExpr = `let dep = ${depExpr}; in ${shDrv('hydra-ops-test-main', 'echo ${dep} > $out')}`;
  const mainDrv = await instantiate(mainExpr, 'main');
  const mainOut = (await execa('nix-build', ['--no-out-link', mainDrv])).stdout.trim();
  const closure = (await nixStore('--query', '--requisites', mainOut)).split('\n');
  assert.equal(closure.length, 2);
  // Dependencies first.
  const refsOf = async (p: string) => (await nixStore('--query', '--references', p)).split('\n').filter((x) => x !== '' && x !== p);
  const ordered: string[] = [];
  const visit = async (p: string) => {
    if (ordered.includes(p)) return;
    for (const r of await refsOf(p)) await visit(r);
    ordered.push(p);
  };
  for (const p of closure) await visit(p);
  assert.equal(ordered[1], mainOut);

  const {client, log} = await connect();
  await client.handshake();
  assert.deepEqual(await client.queryValidPaths(ordered, {lock: true, substitute: false}), new Set());

  async function* entries(): AsyncGenerator<ImportEntry> {
    for (const path of ordered) {
      const deriver = await nixStore('--query', '--deriver', path);
      yield {path, references: await refsOf(path), deriver: deriver === 'unknown-deriver' ? '' : deriver, nar: dumpLocalPath(path)};
    }
  }
  const sent = await client.importPaths(entries());
  assert.equal(sent.paths, 2);
  assert.deepEqual(await client.queryValidPaths(ordered), new Set(ordered));
  const infos = await client.queryPathInfos([...ordered, '/nix/store/00000000000000000000000000000000-absent']);
  assert.equal(infos.size, 2);
  for (const p of ordered) {
    const info = infos.get(p)!;
    assert.equal(info.narHash, await nixStore('--query', '--hash', p));
    assert.equal(info.narSize, Number(await nixStore('--query', '--size', p)));
    assert.equal(info.downloadSize, info.narSize);
    assert.equal(info.deriver, await nixStore('--query', '--deriver', p));
  }
  assert.deepEqual(infos.get(mainOut)!.references, await refsOf(mainOut));

  // A derivation that uses main as an input derivation; built on the builder from a BasicDerivation.
  const consumerExpr = `let main = ${mainExpr}; in ${shDrv(
    'hydra-ops-test-consumer',
    'echo consumer-log-line-$nonce >&2; /bin/mkdir -p $out/nix-support; echo "doc readme $out/README" > $out/nix-support/hydra-build-products; echo ${main} > $out/README; /bin/ln -s README $out/link',
    `nonce = "${nonce}";`,
  )}`;
  const consumerDrvPath = await instantiate(consumerExpr, 'consumer');
  const drv = parseDrv(await readFile(consumerDrvPath, 'utf8'), consumerDrvPath);
  const basic = await toBasicDerivation(drv, resolveFromDrvFiles());
  assert.deepEqual(basic.inputSrcs, [mainOut]);
  const result = await client.buildDerivation(consumerDrvPath, basic, {maxSilentTime: 60, buildTimeout: 120, maxLogSize: 1 << 20});
  assert.equal(result.status, 'Built', result.errorMsg);
  assert.equal(result.statusCode, BuildStatus.Built);
  assert.equal(result.timesBuilt, 1);
  assert.ok(result.startTime > 0 && result.stopTime >= result.startTime);
  const outPath = drv.outputs.get('out')!.path;
  assert.deepEqual(result.builtOutputs, new Map([['out', outPath]]));
  assert.match(log(), new RegExp(`consumer-log-line-${nonce}`));
  assert.deepEqual(mapBuildResult(result), {stepStatus: 0, retry: false, cacheFailure: false, keepErrorMsg: false, isCached: false, errorMsg: ''});

  // Copy the output back: verify against the builder's path info, scan nix-support while it streams.
  const outInfo = (await client.queryPathInfos([outPath])).get(outPath)!;
  // The output mentions main's output and itself (in hydra-build-products).
  assert.deepEqual([...outInfo.references].sort(), [mainOut, outPath].sort());
  const seen: NarEntry[] = [];
  let products = '';
  const narChunks: Buffer[] = [];
  const tee = new PassThrough();
  tee.on('data', (c: Buffer) => narChunks.push(c));
  const dumped = await client.dumpStorePath(
    outPath,
    (entry, contents) => {
      seen.push(entry);
      if (entry.path === 'nix-support/hydra-build-products') products = contents!.toString('utf8');
    },
    tee,
  );
  assert.ok(sameHash(dumped.narHash, outInfo.narHash));
  assert.equal(dumped.narSize, outInfo.narSize);
  assert.equal(products, `doc readme ${outPath}/README\n`);
  assert.deepEqual(seen.map((e) => e.path), ['', 'README', 'link', 'nix-support', 'nix-support/hydra-build-products']);
  // The connection stays in sync after a NAR: another request works.
  assert.deepEqual(await client.queryValidPaths([outPath]), new Set([outPath]));

  // Import into the coordinator's store with the export format.
  assert.equal((await execa('nix-store', ['--check-validity', outPath], {reject: false})).exitCode, 1);
  const importer = execa('nix-store', ['--import'], {encoding: 'buffer', stdin: 'pipe', reject: false});
  const writer = new WireWriter(importer.stdin!, {label: 'nix-store --import'});
  await writeExportEntry(writer, Readable.from([Buffer.concat(narChunks)]), outPath, outInfo.references, outInfo.deriver);
  writeExportEnd(writer);
  await writer.end();
  const imported = await importer;
  assert.equal(imported.exitCode, 0, String(imported.stderr));
  coordinatorPathsToDelete.push(outPath);
  assert.equal(await nixStore('--query', '--hash', outPath), outInfo.narHash);
  assert.equal(await nixStore('--check-validity', outPath), '');
  await client.close();
});

test('build failures map to step statuses: exit 1, silence timeout, log limit', async () => {
  const {client, log} = await connect();
  await client.handshake();
  const build = async (name: string, script: string, options: Parameters<ServeClient['buildDerivation']>[2]) => {
    const drvPath = await instantiate(shDrv(name, script, `nonce = "${nonce}";`), name);
    const basic = await toBasicDerivation(parseDrv(await readFile(drvPath, 'utf8'), drvPath), resolveFromDrvFiles());
    return client.buildDerivation(drvPath, basic, options);
  };

  const failed = await build('hydra-ops-test-fail', 'echo about-to-fail >&2; exit 1', {});
  assert.equal(failed.status, 'PermanentFailure');
  assert.match(failed.errorMsg, /failed with exit code 1/);
  assert.deepEqual(mapBuildResult(failed), {stepStatus: 1, retry: false, cacheFailure: true, keepErrorMsg: false, isCached: false, errorMsg: ''});
  assert.match(log(), /about-to-fail/);

  const t0 = Date.now();
  const silent = await build('hydra-ops-test-silent', '/bin/sleep 20', {maxSilentTime: 1});
  assert.equal(silent.status, 'TimedOut', silent.errorMsg);
  assert.ok(Date.now() - t0 < 10_000);
  assert.equal(mapBuildResult(silent).stepStatus, 7);

  const chatty = await build('hydra-ops-test-chatty', 'i=0; while [ $i -lt 2000 ]; do echo line-$i-padding-padding-padding; i=$((i+1)); done; /bin/sleep 20', {maxLogSize: 4096});
  assert.equal(chatty.status, 'LogLimitExceeded', chatty.errorMsg);
  assert.equal(mapBuildResult(chatty).stepStatus, 10);

  // The connection is still usable after failed builds.
  assert.deepEqual(await client.queryValidPaths([]), new Set());
  await client.close();
});

/** Start a long build on a fresh connection and wait until its builder process runs. */
async function startLongBuild(name: string) {
  const {client, transport, log} = await connect();
  await client.handshake();
  // The sleep duration doubles as a unique marker for pgrep.
  const marker = `29.${String(process.pid).padStart(7, '0')}${randomBytes(3).readUIntBE(0, 3)}`;
  const drvPath = await instantiate(shDrv(name, `echo started >&2; /bin/sleep ${marker}; echo done`, `nonce = "${nonce}";`), name);
  const basic = await toBasicDerivation(parseDrv(await readFile(drvPath, 'utf8'), drvPath), resolveFromDrvFiles());
  const building = client.buildDerivation(drvPath, basic, {maxSilentTime: 60});
  building.catch(() => undefined);
  const pgrep = async () => (await execa('pgrep', ['-f', `sleep ${marker}`], {reject: false})).stdout.trim();
  const deadline = Date.now() + 15_000;
  while (!(await pgrep())) {
    assert.ok(Date.now() < deadline, `build never started; log: ${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  /** Milliseconds until the builder is gone, or -1 if it is still there after `limitMs`. */
  const goneWithin = async (limitMs: number): Promise<number> => {
    const from = Date.now();
    while (Date.now() - from < limitMs) {
      if (!(await pgrep())) return Date.now() - from;
      await new Promise((r) => setTimeout(r, 25));
    }
    return -1;
  };
  return {client, transport, building, goneWithin, pgrep};
}

test('killing the transport mid-build ends the remote build within 2 s', async (t) => {
  const {transport, building, goneWithin, pgrep} = await startLongBuild('hydra-ops-test-long-kill');
  const killed = transport.kill();
  const ms = await goneWithin(2000);
  assert.notEqual(ms, -1, `build process still running 2 s after kill: ${await pgrep()}`);
  t.diagnostic(`builder gone ${ms} ms after kill()`);
  await assert.rejects(building, ServeError);
  const exit = await killed;
  assert.ok(exit.code !== 0 || exit.signal !== null);
});

test('closing the connection (EOF on stdin) aborts the remote build', async (t) => {
  const {client, transport, building, goneWithin, pgrep} = await startLongBuild('hydra-ops-test-long-eof');
  // abort() ends stdin with the build request still in flight, the way a cancelled step does.
  client.abort();
  const ms = await goneWithin(5000);
  assert.notEqual(ms, -1, `build process still running 5 s after EOF: ${await pgrep()}`);
  t.diagnostic(`builder gone ${ms} ms after EOF`);
  await assert.rejects(building, ServeError);
  await transport.exited;
  await assert.rejects(client.queryValidPaths([]), /unusable after an earlier error|is closed/);
});

test('builtOutputs decoding and status mapping table', () => {
  const raw = new Map([
    ['sha256:6f7c8b0f7a7e0ef0f4a1c0d4b0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3!out', JSON.stringify({id: 'x', outPath: 'abcdabcdabcdabcdabcdabcdabcdabcd-hello', signatures: [], dependentRealisations: {}})],
    ['sha256:00!dev', JSON.stringify({outPath: 'ffffffffffffffffffffffffffffffff-hello-dev'})],
  ]);
  assert.deepEqual(
    decodeBuiltOutputs(raw, '/nix/store'),
    new Map([
      ['out', '/nix/store/abcdabcdabcdabcdabcdabcdabcdabcd-hello'],
      ['dev', '/nix/store/ffffffffffffffffffffffffffffffff-hello-dev'],
    ]),
  );
  assert.throws(() => decodeBuiltOutputs(new Map([['nobang', '{}']]), '/nix/store'), /no '!<output name>'/);
  assert.throws(() => decodeBuiltOutputs(new Map([['h!out', 'not json']]), '/nix/store'), /not JSON/);
  const cases: [string, number, boolean, boolean, boolean][] = [
    // status, stepStatus, retry, cacheFailure, isCached
    ['Built', 0, false, false, false],
    ['Substituted', 0, false, false, true],
    ['AlreadyValid', 0, false, false, true],
    ['ResolvesToAlreadyValid', 0, false, false, true],
    ['PermanentFailure', 1, false, true, false],
    ['InputRejected', 1, false, true, false],
    ['OutputRejected', 1, false, true, false],
    ['TransientFailure', 1, true, false, false],
    ['TimedOut', 7, false, false, false],
    ['MiscFailure', 3, true, false, false],
    ['LogLimitExceeded', 10, false, false, false],
    ['NotDeterministic', 12, false, true, false],
    ['CachedFailure', 3, false, false, false],
    ['DependencyFailed', 3, false, false, false],
    ['NoSubstituters', 3, false, false, false],
    ['Unknown', 3, false, false, false],
  ];
  for (const [status, stepStatus, retry, cacheFailure, isCached] of cases) {
    const r = mapBuildResult({status, errorMsg: 'msg'});
    assert.deepEqual(
      r,
      {stepStatus, retry, cacheFailure, keepErrorMsg: stepStatus === 3, isCached, errorMsg: stepStatus === 3 ? 'msg' : ''},
      status,
    );
  }
  assert.equal(mapBuildResult({statusCode: 8}).stepStatus, 7);
  assert.equal(mapBuildResult({statusCode: 99}).stepStatus, 3);
});

