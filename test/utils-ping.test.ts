// `machine ping` against real sshd builders: healthy, reached as a user the builder's nix-daemon does not trust,
// stopped, and pinned to the wrong host key — each reported distinctly, with the exit status saying so.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {startFleet} from './support/fleet.js';
import {runCli} from './support/cli.js';
import {judgePing, pingMachines, selectMachines, type PingResult} from '../source/actions/ping.js';
import {loadMachinesFiles} from '../source/fleet/machines-file.js';
import {probePath} from '../source/fleet/machine-probe.js';

test('machine ping tells a healthy, an untrusted, a stopped and an impostor builder apart', {timeout: 60_000}, async () => {
  const fleet = await startFleet(4, {untrusted: [1], supportedFeatures: ['big-parallel']});
  try {
    // Builder 3 is pinned to builder 0's host key: it presents a different one.
    const lines = fleet.builders.map((b) => b.machineLine);
    const cols = lines[3]!.split(' ');
    cols[7] = Buffer.from(fleet.builders[0]!.hostKeyLine).toString('base64');
    lines[3] = cols.join(' ');
    const machinesFile = join(fleet.dir, 'machines-ping');
    writeFileSync(machinesFile, lines.join('\n') + '\n');
    await fleet.stopBuilder(2);
    const env = {NIX_REMOTE_SYSTEMS: machinesFile, HYDRA_OPS_CONFIG_DIR: join(fleet.dir, 'settings'), HYDRA_DATA: join(fleet.dir, 'data')};

    const r = await runCli(['machine', 'ping', '--all', '--json', '--timeout', '5'], env);
    assert.equal(r.code, 1, `unusable machines make the exit status 1\n${r.stderr}`);
    const results = JSON.parse(r.stdout).machines as PingResult[];
    assert.deepEqual(results.map((m) => m.uri), fleet.builders.map((b) => b.uri));
    const [healthy, untrusted, stopped, impostor] = results as [PingResult, PingResult, PingResult, PingResult];
    const kinds = (m: PingResult) => m.problems.map((p) => p.kind).sort();

    assert.equal(healthy.ok, true, JSON.stringify(healthy.problems));
    assert.deepEqual(kinds(healthy), []);
    assert.ok(healthy.connectMs !== null && healthy.connectMs >= 0);
    assert.deepEqual(healthy.handshake && 'version' in healthy.handshake ? healthy.handshake.version : null, '2.7');
    assert.equal(healthy.canImport, true);
    assert.equal(healthy.canBuild, true);
    assert.equal(healthy.nixVersion, '2.8.0');
    assert.ok(healthy.systems!.includes(healthy.machineSystems[0]!), 'the machines file system is really supported');
    assert.ok(healthy.features!.includes('big-parallel'));
    assert.deepEqual(healthy.machineFeatures, ['big-parallel']);
    assert.ok(healthy.storeFreeBytes! > 0);

    assert.equal(untrusted.ok, false);
    assert.deepEqual(kinds(untrusted), ['build-refused', 'import-refused']);
    assert.equal(untrusted.handshake && 'version' in untrusted.handshake, true, 'the serve protocol itself works');
    assert.equal(untrusted.canImport, false);
    assert.equal(untrusted.canBuild, false);
    const refused = untrusted.problems.find((p) => p.kind === 'build-refused')!;
    assert.match(refused.message, /not privileged to build/);
    assert.match(refused.fix, /trusted-users/);
    assert.match(refused.fix, /hydra-untrusted/);
    assert.match(untrusted.problems.find((p) => p.kind === 'import-refused')!.message, /lacks a valid signature/);
    assert.equal(untrusted.nixVersion, '2.8.0');

    assert.equal(stopped.ok, false);
    assert.deepEqual(kinds(stopped), ['unreachable']);
    assert.match(stopped.problems[0]!.message, /ECONNREFUSED/);
    assert.equal(stopped.connectMs, null);
    assert.equal(stopped.handshake, null);
    assert.equal(stopped.canImport, null);

    assert.equal(impostor.ok, false);
    assert.deepEqual(kinds(impostor), ['host-key']);
    assert.match(impostor.problems[0]!.message, /host key mismatch/);
    assert.match(impostor.problems[0]!.fix, /column 8/);
    assert.equal(impostor.canImport, null, 'nothing is sent to a host with the wrong key');

    // Human output and a single healthy machine by host:port.
    const one = await runCli(['machine', 'ping', `127.0.0.1:${fleet.builders[0]!.port}`], env);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, /MACHINE\s+OK\s+CONNECT/);
    assert.match(one.stdout, /ok\s+\d+ms\s+2\.7\s+yes\s+yes/);
    const bad = await runCli(['machine', 'ping', fleet.builders[1]!.uri], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /\[build-refused\]/);
    assert.match(bad.stdout, /fix: .*trusted-users/);
    assert.match(bad.stderr, /1 of 1 machine\(s\) unusable/);
    assert.equal((await runCli(['machine', 'ping', 'no-such-host'], env)).code, 3);
    assert.equal((await runCli(['machine', 'ping'], env)).code, 2);
  } finally {
    await fleet.stop();
  }
});

test('ping judgement: a system the builder cannot build is an error, missing features and low disk are warnings', async () => {
  const fleet = await startFleet(1, {system: 'aarch64-darwin', supportedFeatures: ['kvm-imaginary']});
  try {
    const {machines} = await loadMachinesFiles([fleet.machinesFile]);
    const [r] = await pingMachines(machines, {timeoutMs: 5000, minFreeBytes: Number.MAX_SAFE_INTEGER});
    assert.equal(r!.ok, false);
    const byKind = new Map(r!.problems.map((p) => [p.kind, p]));
    assert.equal(byKind.get('system-unsupported')?.severity, 'error');
    assert.match(byKind.get('system-unsupported')!.message, /aarch64-darwin/);
    assert.equal(byKind.get('feature-missing')?.severity, 'warning');
    assert.match(byKind.get('feature-missing')!.message, /kvm-imaginary/);
    assert.equal(byKind.get('low-disk')?.severity, 'warning');
    assert.equal(r!.canImport, true);
    assert.equal(r!.canBuild, true);
    // The probe object is all a ping leaves in a builder's store, and it is the same every time.
    assert.match(probePath(), /^\/nix\/store\/[0-9a-z]{32}-hydra-ops-ping-probe$/);
    assert.equal(selectMachines(machines, '127.0.0.1').length, 1);
    // Pure judgement: an auth failure names the key file and the fix.
    const j = judgePing(machines[0]!, {uri: machines[0]!.uri, connectMs: null, connectError: {kind: 'auth', message: 'authentication refused'}});
    assert.deepEqual(j.problems.map((p) => p.kind), ['auth']);
    assert.match(j.problems[0]!.fix, /authorized_keys/);
  } finally {
    await fleet.stop();
  }
});
