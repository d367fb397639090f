import {test} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, rmSync, writeFileSync, renameSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {execFileSync} from 'node:child_process';
import {
  implicitLocalhost,
  loadMachinesFiles,
  machinesFilesFromEnv,
  parseMachinesText,
  type MachineSpec,
} from '../source/fleet/machines-file.js';
import {MachinesMonitor, type MachinesChange, type MachinesError} from '../source/fleet/machines-monitor.js';

const KEY_LINE = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGr6uWsNQSyaHs06ozAQjBkEUvOmFVc0NCVJ1rn6KTBX';
const KEY_B64 = Buffer.from(KEY_LINE).toString('base64');
const KEY_B64_UNPADDED = KEY_B64.replace(/=+$/, '');
// base64 of "ssh-rsa <ed25519 key data>": the type does not match the key.
const WRONG_TYPE_B64 = Buffer.from('ssh-rsa ' + KEY_LINE.split(' ')[1]).toString('base64');

function tempDir(t: {after: (fn: () => void) => void}): string {
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-machines-'));
  t.after(() => rmSync(dir, {recursive: true, force: true}));
  return dir;
}

const base = {port: undefined, user: undefined, systems: [], maxJobs: 1, speedFactor: 1, supportedFeatures: [], mandatoryFeatures: []};

type Expect = Partial<MachineSpec> | {error: string} | null;

// One case per line. `null`: the line yields nothing. A line may yield several machines (`;`).
const CASES: [string, Expect | Expect[]][] = [
  ['# a comment line', null],
  ['', null],
  [
    `builder1 x86_64-linux /keys/id 4 2 kvm,big-parallel benchmark ${KEY_B64}`,
    {
      uri: 'ssh://builder1',
      kind: 'ssh',
      host: 'builder1',
      systems: ['x86_64-linux'],
      sshKey: '/keys/id',
      maxJobs: 4,
      speedFactor: 2,
      supportedFeatures: ['big-parallel', 'kvm'],
      mandatoryFeatures: ['benchmark'],
      publicHostKey: KEY_LINE,
    },
  ],
  ['ssh://builder2', {uri: 'ssh://builder2', kind: 'ssh', host: 'builder2'}],
  [
    'ssh://alice@builder3:2222 aarch64-linux,x86_64-linux - 8',
    {uri: 'ssh://alice@builder3:2222', host: 'builder3', user: 'alice', port: 2222, systems: ['aarch64-linux', 'x86_64-linux'], maxJobs: 8},
  ],
  ['root@builder4', {uri: 'ssh://root@builder4', host: 'builder4', user: 'root'}],
  ['localhost x86_64-linux - 2', {uri: 'localhost', kind: 'local', host: 'localhost', systems: ['x86_64-linux'], maxJobs: 2}],
  ['ssh://builder5?remote-store=/mnt/store x86_64-linux', {uri: 'ssh://builder5?remote-store=/mnt/store', host: 'builder5', systems: ['x86_64-linux'], remoteStore: '/mnt/store'}],
  ['ssh://builder6?remote-store=local%3Froot%3D%2Fx', {uri: 'ssh://builder6?remote-store=local%3Froot%3D%2Fx', host: 'builder6', remoteStore: 'local?root=/x'}],
  ['builder7 - - - 0', {uri: 'ssh://builder7', speedFactor: 1}],
  ['builder8 - - - 2.5', {uri: 'ssh://builder8', speedFactor: 2.5}],
  ['builder9 - - - - - - -', {uri: 'ssh://builder9'}],
  ['builder10 x86_64-linux,,i686-linux,x86_64-linux', {uri: 'ssh://builder10', systems: ['i686-linux', 'x86_64-linux']}],
  ['builder11 x86_64-linux - 3 1 b,a,b c,c', {uri: 'ssh://builder11', systems: ['x86_64-linux'], maxJobs: 3, supportedFeatures: ['a', 'b'], mandatoryFeatures: ['c']}],
  ['  builder12\tx86_64-linux \t -\t1   # trailing comment', {uri: 'ssh://builder12', systems: ['x86_64-linux']}],
  ['builder13 x86_64-linux; builder14 aarch64-linux', [{uri: 'ssh://builder13', systems: ['x86_64-linux']}, {uri: 'ssh://builder14', systems: ['aarch64-linux']}]],
  ['ssh://[::1]:2200 x86_64-linux', {uri: 'ssh://[::1]:2200', host: '[::1]', port: 2200, systems: ['x86_64-linux']}],
  ['builder15 - - 7 1 - - - these extra columns are ignored', {uri: 'ssh://builder15', maxJobs: 7}],
  [`ssh://builder16 x86_64-linux - 2 3 - - ${KEY_B64_UNPADDED}`, {uri: 'ssh://builder16', systems: ['x86_64-linux'], maxJobs: 2, speedFactor: 3, publicHostKey: KEY_LINE}],
  ['builder17 - ; # builder18 is commented out', {uri: 'ssh://builder17'}],
  ['ssh://Build-Host.example.org', {uri: 'ssh://Build-Host.example.org', host: 'Build-Host.example.org'}],
  ['builder19 - - 00012 1.0e1', {uri: 'ssh://builder19', maxJobs: 12, speedFactor: 10}],
  // Malformed lines: the exact error (file:line prefix added below).
  ['ssh-ng://builder20 x86_64-linux', {error: "field uri (column 1): scheme 'ssh-ng://' not supported (only ssh:// and localhost)"}],
  ['daemon', {error: "field uri (column 1): store type 'daemon' not supported (only ssh:// and localhost)"}],
  ['auto?x=1', {error: "field uri (column 1): store type 'auto' not supported (only ssh:// and localhost)"}],
  ['local?root=/x', {error: "field uri (column 1): store 'local?root=/x' not supported (only ssh:// and localhost)"}],
  ['s3://bucket', {error: "field uri (column 1): scheme 's3://' not supported (only ssh:// and localhost)"}],
  ['/some/store x86_64-linux', {error: "field uri (column 1): store '/some/store' not supported (only ssh:// and localhost)"}],
  ['builder21 x86_64-linux - -1', {error: "field max-jobs (column 4): '-1' is not an unsigned integer"}],
  ['builder22 x86_64-linux - two', {error: "field max-jobs (column 4): 'two' is not an unsigned integer"}],
  ['builder23 x86_64-linux - 1.5', {error: "field max-jobs (column 4): '1.5' is not an unsigned integer"}],
  ['builder24 x86_64-linux - 99999999999', {error: "field max-jobs (column 4): '99999999999' is not an unsigned integer"}],
  ['builder25 - - 1 -2', {error: "field speed-factor (column 5): '-2' is negative"}],
  ['builder26 - - 1 fast', {error: "field speed-factor (column 5): 'fast' is not a number"}],
  ['builder27 - - 1 1e400', {error: "field speed-factor (column 5): '1e400' is not a number"}],
  ['builder28 - - 1 1 - - not!base64', {error: "field public-host-key (column 8): 'not!base64' is not valid base64"}],
  ['builder29 - - 1 1 - - c3NoLWVkMjU1MTk=', {error: "field public-host-key (column 8): does not decode to an OpenSSH public-key line ('<type> <base64 key>')"}],
  [`builder30 - - 1 1 - - ${WRONG_TYPE_B64}`, {error: "field public-host-key (column 8): key type 'ssh-rsa' does not match the key data ('ssh-ed25519')"}],
  ['builder1 aarch64-linux', {error: "field uri (column 1): duplicate machine 'ssh://builder1' (first defined at FILE:3)"}],
  ['ssh://builder31:99999', {error: "field uri (column 1): invalid port '99999' (expected 1-65535)"}],
  ['ssh://builder32:abc', {error: "field uri (column 1): invalid port 'abc' (expected 1-65535)"}],
  ['ssh://builder33:0', {error: "field uri (column 1): invalid port '0' (expected 1-65535)"}],
  ['ssh:// x86_64-linux', {error: "field uri (column 1): missing host in 'ssh://'"}],
  ['ssh://builder34/path', {error: "field uri (column 1): unexpected path in 'ssh://builder34/path' (expected ssh://[user@]host[:port])"}],
  ['ssh://builder35?compress=true', {error: "field uri (column 1): parameter 'compress' not supported (only remote-store)"}],
  ['ssh://builder36?remote-store=', {error: "field uri (column 1): parameter 'remote-store' has an empty value"}],
  ['ssh://builder37?remote-store=%ZZ', {error: "field uri (column 1): malformed percent-encoding in parameter 'remote-store=%ZZ'"}],
  ['ssh://bad!user@builder38', {error: "field uri (column 1): invalid user name 'bad!user'"}],
  ['ssh://-builder39', {error: "field uri (column 1): invalid host '-builder39'"}],
  ['builder40 x86_64-linux; ssh-ng://builder41', [{uri: 'ssh://builder40', systems: ['x86_64-linux']}, {error: "field uri (column 1): scheme 'ssh-ng://' not supported (only ssh:// and localhost)"}]],
  ['@does-not-exist.machines', null],
  ['builder42 x86_64-linux', {uri: 'ssh://builder42', systems: ['x86_64-linux']}],
];

test('machines file: every line yields the expected machine or the exact error, and later lines still parse', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'machines');
  const text = CASES.map(([line]) => line).join('\n') + '\n';
  writeFileSync(file, text);
  const {machines, errors} = parseMachinesText(text, file);
  assert.ok(CASES.length >= 40, 'at least 40 lines are exercised');

  let expectedMachines = 0;
  let expectedErrors = 0;
  CASES.forEach(([line, expect], i) => {
    const lineNo = i + 1;
    const expects = (Array.isArray(expect) ? expect : [expect]).filter((e) => e !== null);
    const gotMachines = machines.filter((m) => m.line === lineNo);
    const gotErrors = errors.filter((e) => e.line === lineNo);
    const wantMachines = expects.filter((e): e is Partial<MachineSpec> => !('error' in e));
    const wantErrors = expects.filter((e): e is {error: string} => 'error' in e);
    assert.equal(gotMachines.length, wantMachines.length, `line ${lineNo} '${line}': machines ${JSON.stringify(gotMachines)} errors ${JSON.stringify(gotErrors.map((e) => e.message))}`);
    assert.equal(gotErrors.length, wantErrors.length, `line ${lineNo} '${line}': errors ${JSON.stringify(gotErrors.map((e) => e.message))}`);
    wantMachines.forEach((want, k) => {
      const full = {...base, kind: 'ssh', file, line: lineNo, ...want};
      const got = gotMachines[k]!;
      const host = full.host ?? got.host;
      assert.deepEqual(got, {...full, host}, `line ${lineNo} '${line}'`);
    });
    wantErrors.forEach((want, k) => {
      assert.equal(gotErrors[k]!.message, `${file}:${lineNo}: ${want.error.replace('FILE', file)}`, `line ${lineNo}`);
    });
    expectedMachines += wantMachines.length;
    expectedErrors += wantErrors.length;
  });
  assert.equal(machines.length, expectedMachines);
  assert.equal(errors.length, expectedErrors);
  // Error objects carry the parts separately too.
  const portError = errors.find((e) => e.problem.startsWith("invalid port '99999'"))!;
  assert.deepEqual([portError.field, portError.column], ['uri', 1]);
  const jobsError = errors.find((e) => e.problem.startsWith("'two'"))!;
  assert.deepEqual([jobsError.field, jobsError.column], ['max-jobs', 4]);
});

test('machines file: includes (relative, nested, missing) report their own file and line', (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'nested.machines'), 'nested1 x86_64-linux\n');
  writeFileSync(join(dir, 'inc.machines'), 'inc1 aarch64-linux\nbad1 - - x\n@nested.machines\n@missing.machines\n');
  const main = join(dir, 'machines');
  const text = `first x86_64-linux\n@inc.machines\n@ ${join(dir, 'nested.machines')}\nlast x86_64-linux\n`;
  const {machines, errors} = parseMachinesText(text, main);
  assert.deepEqual(
    machines.map((m) => [m.uri, m.file, m.line]),
    [
      ['ssh://first', main, 1],
      ['ssh://inc1', join(dir, 'inc.machines'), 1],
      ['ssh://nested1', join(dir, 'nested.machines'), 1],
      ['ssh://last', main, 4],
    ],
  );
  assert.deepEqual(errors.map((e) => e.message), [
    `${join(dir, 'inc.machines')}:2: field max-jobs (column 4): 'x' is not an unsigned integer`,
    // The second inclusion of nested.machines repeats its machine; the error points into that file.
    `${join(dir, 'nested.machines')}:1: field uri (column 1): duplicate machine 'ssh://nested1' (first defined at ${join(dir, 'nested.machines')}:1)`,
  ]);
});

test('machines file: an include cycle is an error, not a hang', (t) => {
  const dir = tempDir(t);
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  writeFileSync(a, 'ma\n@b\n');
  writeFileSync(b, 'mb\n@a\n');
  const {machines, errors} = parseMachinesText('@a\n', join(dir, 'top'));
  assert.deepEqual(machines.map((m) => m.uri), ['ssh://ma', 'ssh://mb']);
  assert.deepEqual(errors.map((e) => e.message), [`${b}:2: field include (column 1): include cycle: '${a}' is already being read`]);
});

test('loadMachinesFiles: several files act as one; missing ones are skipped; duplicates across files are errors', async (t) => {
  const dir = tempDir(t);
  const one = join(dir, 'one');
  const two = join(dir, 'two');
  writeFileSync(one, 'm1 x86_64-linux\nm2 x86_64-linux\n');
  writeFileSync(two, '# second file\nm3 aarch64-linux\nm1 i686-linux\n');
  const loaded = await loadMachinesFiles([one, join(dir, 'absent'), two]);
  assert.deepEqual(loaded.machines.map((m) => `${m.uri}@${m.file}:${m.line}`), [`ssh://m1@${one}:1`, `ssh://m2@${one}:2`, `ssh://m3@${two}:2`]);
  assert.deepEqual(loaded.errors.map((e) => e.message), [`${two}:3: field uri (column 1): duplicate machine 'ssh://m1' (first defined at ${one}:1)`]);
  assert.deepEqual(loaded.sources.map((s) => [s.file, s.exists]), [[one, true], [join(dir, 'absent'), false], [two, true]]);
});

test('machinesFilesFromEnv: NIX_REMOTE_SYSTEMS, else the default file when it exists, else none', (t) => {
  const dir = tempDir(t);
  const def = join(dir, 'machines');
  assert.deepEqual(machinesFilesFromEnv({NIX_REMOTE_SYSTEMS: '/a::/b'}, def), ['/a', '/b']);
  assert.deepEqual(machinesFilesFromEnv({}, def), []);
  writeFileSync(def, '');
  assert.deepEqual(machinesFilesFromEnv({}, def), [def]);
});

test('implicit localhost matches the local Nix (system, extra-platforms, max-jobs, system-features)', async () => {
  const system = JSON.parse(execFileSync('nix-instantiate', ['--eval', '--json', '-E', 'builtins.currentSystem'], {encoding: 'utf8'})) as string;
  const config = execFileSync('nix', ['show-config', '--extra-experimental-features', 'nix-command'], {encoding: 'utf8'});
  const setting = (name: string) => new RegExp(`^${name} = (.*)$`, 'm').exec(config)?.[1] ?? '';
  const m = await implicitLocalhost();
  assert.equal(m.uri, 'localhost');
  assert.equal(m.kind, 'local');
  // The local system (with i686-linux on x86_64-linux, as Hydra), then Nix's extra-platforms.
  const extra = setting('extra-platforms').split(' ').filter(Boolean);
  assert.deepEqual(m.systems, [...new Set([...(system === 'x86_64-linux' ? ['i686-linux', 'x86_64-linux'] : [system]), ...extra])]);
  assert.equal(m.maxJobs, Number(setting('max-jobs')));
  assert.deepEqual(m.supportedFeatures, setting('system-features').split(' ').filter(Boolean).sort());
  assert.equal(m.speedFactor, 1);
  assert.equal(m.sshKey, undefined);

  // max-jobs = auto resolves to the number of CPUs.
  const auto = await implicitLocalhost({...process.env, NIX_CONFIG: 'max-jobs = auto\nsystem-features = foo bar'});
  const nproc = Number(execFileSync('nproc', {encoding: 'utf8'}).trim());
  assert.equal(auto.maxJobs, nproc);
  assert.deepEqual(auto.supportedFeatures, ['bar', 'foo']);
});

function nextEvent<T>(monitor: MachinesMonitor, name: 'change' | 'error', timeoutMs = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${name}' event within ${timeoutMs} ms`)), timeoutMs);
    monitor.once(name, (v: unknown) => {
      clearTimeout(timer);
      resolve(v as T);
    });
  });
}

/** Writes atomically, as editors and config management do (new inode). */
function replaceFile(file: string, text: string): void {
  writeFileSync(file + '.tmp', text);
  renameSync(file + '.tmp', file);
}

test('monitor: reload keeps identity and runtime state, reports added/changed/removed; bad edits keep the last good config', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'machines');
  writeFileSync(file, 'ssh://a x86_64-linux - 1\nssh://b x86_64-linux - 1\n');
  const monitor = new MachinesMonitor({files: [file], pollIntervalMs: 60_000, watch: true, debounceMs: 20});
  t.after(() => monitor.stop());
  const first = nextEvent<MachinesChange>(monitor, 'change');
  assert.equal(await monitor.start(), true);
  const initial = await first;
  assert.deepEqual(initial.added.map((m) => m.uri), ['ssh://a', 'ssh://b']);
  const a = monitor.get('ssh://a')!;
  const b = monitor.get('ssh://b')!;
  a.state.currentJobs = 3;
  a.state.consecutiveFailures = 2;

  // Change a, remove b, add c (picked up by fs.watch, the poll interval is a minute).
  let change = nextEvent<MachinesChange>(monitor, 'change');
  replaceFile(file, 'ssh://a x86_64-linux - 4\nssh://c aarch64-linux\n');
  let ev = await change;
  assert.deepEqual(ev.added.map((m) => m.uri), ['ssh://c']);
  assert.deepEqual(ev.changed.map((m) => m.uri), ['ssh://a']);
  assert.deepEqual(ev.removed.map((m) => m.uri), ['ssh://b']);
  assert.deepEqual(ev.machines.map((m) => m.uri), ['ssh://a', 'ssh://c']);
  assert.equal(monitor.get('ssh://a'), a, 'same object for the same URI');
  assert.equal(ev.changed[0], a);
  assert.equal(a.maxJobs, 4);
  assert.deepEqual(a.state, {currentJobs: 3, consecutiveFailures: 2});
  assert.equal(b.listed, false);
  assert.equal(monitor.all().includes(b), true, 'removed machines are kept for their statistics');

  // A bad edit: the error is reported with file:line:field and the last good config stays in force.
  const error = nextEvent<MachinesError>(monitor, 'error');
  replaceFile(file, 'ssh://a x86_64-linux - lots\nssh://d x86_64-linux\n');
  const err = await error;
  assert.deepEqual(err.messages, [`${file}:1: field max-jobs (column 4): 'lots' is not an unsigned integer`]);
  assert.deepEqual(monitor.machines().map((m) => m.uri), ['ssh://a', 'ssh://c']);
  assert.equal(a.maxJobs, 4);
  assert.equal(monitor.get('ssh://d'), undefined);
  assert.equal(monitor.lastErrors.length, 1);

  // Fixing it applies the new config; b comes back as the same object with its state.
  b.state.builds = 17;
  change = nextEvent<MachinesChange>(monitor, 'change');
  replaceFile(file, 'ssh://a x86_64-linux - 4\nssh://b x86_64-linux\nssh://c aarch64-linux\n');
  ev = await change;
  assert.deepEqual(ev.added.map((m) => m.uri), ['ssh://b']);
  assert.equal(ev.added[0], b);
  assert.equal(b.listed, true);
  assert.deepEqual(b.state, {builds: 17});
  assert.deepEqual(ev.changed, []);
  assert.deepEqual(ev.removed, []);
  assert.deepEqual(monitor.lastErrors, []);
});

test('monitor: the poll fallback and reload() (SIGHUP) pick up changes without fs.watch', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'machines');
  const inc = join(dir, 'more');
  writeFileSync(file, `ssh://p1 x86_64-linux\n@${inc}\n`);
  const monitor = new MachinesMonitor({files: [file], pollIntervalMs: 100, watch: false});
  t.after(() => monitor.stop());
  await monitor.start();
  assert.deepEqual(monitor.machines().map((m) => m.uri), ['ssh://p1']);

  // An include that appears later is noticed by the poll.
  let change = nextEvent<MachinesChange>(monitor, 'change');
  writeFileSync(inc, 'ssh://p2 x86_64-linux\n');
  let ev = await change;
  assert.deepEqual(ev.added.map((m) => m.uri), ['ssh://p2']);

  // reload() re-reads immediately.
  const slow = new MachinesMonitor({files: [file], pollIntervalMs: 600_000, watch: false});
  t.after(() => slow.stop());
  await slow.start();
  writeFileSync(file, 'ssh://p3 x86_64-linux 8\n');
  change = nextEvent<MachinesChange>(slow, 'change');
  assert.equal(await slow.reload(), true);
  ev = await change;
  assert.deepEqual(ev.machines.map((m) => m.uri), ['ssh://p3']);
  assert.deepEqual(ev.removed.map((m) => m.uri), ['ssh://p1', 'ssh://p2']);
});

test('monitor: a first load with errors applies nothing and reports; no machines file means the implicit localhost', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'machines');
  writeFileSync(file, 'ssh://ok x86_64-linux\nssh-ng://nope\n');
  const monitor = new MachinesMonitor({files: [file], watch: false, pollIntervalMs: 60_000});
  t.after(() => monitor.stop());
  const error = nextEvent<MachinesError>(monitor, 'error');
  assert.equal(await monitor.start(), false);
  assert.deepEqual((await error).messages, [`${file}:2: field uri (column 1): scheme 'ssh-ng://' not supported (only ssh:// and localhost)`]);
  assert.equal(monitor.ready, false);
  assert.deepEqual(monitor.machines(), []);

  const implicit = new MachinesMonitor({files: []});
  t.after(() => implicit.stop());
  assert.equal(await implicit.start(), true);
  const [m] = implicit.machines();
  assert.equal(m?.uri, 'localhost');
  assert.equal(m?.kind, 'local');
  assert.ok(m!.systems.length >= 1);
});
