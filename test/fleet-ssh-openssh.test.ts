// Builders reached as OpenSSH reaches them: an alias defined only in an SSH configuration file (ssh -G), a key held
// only by ssh-agent, a builder reachable only through a bastion (ProxyJump), and an OpenSSH certificate, which the
// ssh2 client cannot present, through the OpenSSH transport (one ControlMaster per machine). Real sshd builders.
import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {spawn, execFileSync, type ChildProcess} from 'node:child_process';
import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync, chmodSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {startFleet, type Fleet} from './support/fleet.js';
import {sshConfigText} from './support/ssh-config.js';
import {runCli} from './support/cli.js';
import {waitFor} from './support/wait.js';
import {parseMachinesText, type MachineSpec} from '../source/fleet/machines-file.js';
import {SshTransportError} from '../source/fleet/ssh-common.js';
import {SshConnectionPool} from '../source/fleet/ssh-transport.js';
import {transportModeFor} from '../source/fleet/ssh-config.js';
import type {PingResult} from '../source/actions/ping.js';
import {ServeClient} from '../source/nix/serve-client.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function fleetOf(n: number, opts: Parameters<typeof startFleet>[1] = {}): Promise<Fleet> {
  const f = await startFleet(n, opts);
  cleanups.push(() => f.stop());
  return f;
}

function pool(opts: ConstructorParameters<typeof SshConnectionPool>[0] = {}): SshConnectionPool {
  const p = new SshConnectionPool({connectTimeoutMs: 10_000, ...opts});
  cleanups.push(() => p.closeAll());
  return p;
}

function machine(line: string, file: string): MachineSpec {
  const parsed = parseMachinesText(line + '\n', file);
  assert.deepEqual(parsed.errors, []);
  return parsed.machines[0]!;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const system = () => execFileSync('nix-instantiate', ['--eval', '-E', 'builtins.currentSystem'], {encoding: 'utf8'}).trim().replace(/"/g, '');

async function rejectsWith(p: Promise<unknown>, kinds: string[], pattern?: RegExp): Promise<SshTransportError> {
  let caught: unknown;
  await assert.rejects(p, (e: unknown) => ((caught = e), true));
  assert.ok(caught instanceof SshTransportError, String(caught));
  assert.ok(kinds.includes(caught.kind), `${caught.kind}: ${caught.message}`);
  if (pattern) assert.match(caught.message, pattern);
  return caught;
}

test('HYDRA_OPS_SSH_TRANSPORT: a default and per-machine choices; a bad value is named', () => {
  assert.equal(transportModeFor(undefined, 'ssh://a', 'a'), 'auto');
  assert.equal(transportModeFor('openssh', 'ssh://a', 'a'), 'openssh');
  assert.equal(transportModeFor('ssh2,b=openssh', 'ssh://a', 'a'), 'ssh2');
  assert.equal(transportModeFor('ssh2,b=openssh', 'ssh://root@b', 'b'), 'openssh');
  assert.equal(transportModeFor('ssh://root@b=openssh', 'ssh://root@b', 'b'), 'openssh');
  assert.throws(() => transportModeFor('b=telnet', 'ssh://a', 'a'), /HYDRA_OPS_SSH_TRANSPORT: 'telnet' is not a transport/);
});

test('an alias that exists only in the SSH configuration (HostName, Port, User, IdentityFile, UserKnownHostsFile) is reached, also by machine ping', {timeout: 90_000}, async () => {
  const fleet = await fleetOf(2);
  const b = fleet.builders[0]!;
  const knownHosts = join(fleet.dir, 'alias_known_hosts');
  writeFileSync(knownHosts, `[127.0.0.1]:${b.port} ${b.hostKeyLine}\n`);
  const config = join(fleet.dir, 'ssh_config');
  writeFileSync(
    config,
    sshConfigText([{alias: 'farm-alias', port: b.port, identityFile: fleet.clientKey, knownHosts}]),
  );
  const machinesFile = join(fleet.dir, 'machines-alias');
  const line = `ssh://farm-alias ${system()} - 1 1 - - -`;
  writeFileSync(machinesFile, line + '\n');
  const spec = machine(line, machinesFile);

  // Without the configuration the alias means nothing.
  await rejectsWith(pool({sshConfigFile: '/dev/null'}).run({...spec, sshKey: fleet.clientKey}, ['true']), ['connect'], /farm-alias/);

  const p = pool({sshConfigFile: config});
  assert.deepEqual(await p.transportOf(spec), {transport: 'ssh2', reason: undefined});
  const r = await p.run(spec, ['sh', '-c', 'echo "$USER $SSH_CONNECTION"; nix-store --version']);
  assert.equal(r.code, 0, r.stderr.toString());
  assert.match(r.stdout.toString(), new RegExp(`^root 127\\.0\\.0\\.1 \\d+ 127\\.0\\.0\\.1 ${b.port}\\n.*Nix`));

  // Column 8 still wins over the configuration's known_hosts: builder 1's key pinned is a mismatch.
  const marker = join(fleet.dir, 'marker-alias-pin');
  await rejectsWith(pool({sshConfigFile: config}).exec({...spec, publicHostKey: fleet.builders[1]!.hostKeyLine}, ['touch', marker]), ['host-key'], /pins SHA256:/);
  assert.equal(existsSync(marker), false);
  // And the configuration's known_hosts is what is checked without a pin: another key there is refused.
  writeFileSync(knownHosts, `[127.0.0.1]:${b.port} ${fleet.builders[1]!.hostKeyLine}\n`);
  await rejectsWith(pool({sshConfigFile: config}).exec(spec, ['touch', marker]), ['host-key'], new RegExp(`known_hosts \\(${knownHosts}:1\\)`));
  writeFileSync(knownHosts, `[127.0.0.1]:${b.port} ${b.hostKeyLine}\n`);

  // The real CLI, with the configuration file named by HYDRA_OPS_SSH_CONFIG.
  const env = {NIX_REMOTE_SYSTEMS: machinesFile, HYDRA_OPS_SSH_CONFIG: config, HYDRA_OPS_CONFIG_DIR: join(fleet.dir, 'settings'), HYDRA_DATA: join(fleet.dir, 'data')};
  const cli = await runCli(['machine', 'ping', 'farm-alias', '--json', '--timeout', '10'], env);
  assert.equal(cli.code, 0, cli.stdout + cli.stderr);
  const [res] = JSON.parse(cli.stdout).machines as PingResult[];
  assert.equal(res!.uri, 'ssh://farm-alias');
  assert.equal(res!.ok, true, JSON.stringify(res!.problems));
  assert.equal(res!.canBuild, true);
  const broken = await runCli(['machine', 'ping', 'farm-alias', '--json', '--timeout', '10'], {...env, HYDRA_OPS_SSH_CONFIG: join(fleet.dir, 'no-such-config')});
  assert.equal(broken.code, 1);
  const [bad] = JSON.parse(broken.stdout).machines as PingResult[];
  assert.equal(bad!.problems[0]!.kind, 'config', JSON.stringify(bad!.problems));
  assert.match(bad!.problems[0]!.message, /no-such-config/);
});

test('a key held only by ssh-agent (column 3 "-") authenticates, on both transports; without the agent it does not', {timeout: 90_000}, async () => {
  const fleet = await fleetOf(1);
  const b = fleet.builders[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-agent-'));
  cleanups.push(() => rmSync(dir, {recursive: true, force: true}));
  const sock = join(dir, 'agent.sock');
  const agent: ChildProcess = spawn('ssh-agent', ['-D', '-a', sock], {stdio: 'ignore'});
  cleanups.push(() => void agent.kill('SIGTERM'));
  await waitFor('the ssh-agent socket', () => existsSync(sock), 5000);
  const keyCopy = join(dir, 'only-for-the-agent');
  copyFileSync(fleet.clientKey, keyCopy);
  chmodSync(keyCopy, 0o600);
  const agentEnv = {...process.env, SSH_AUTH_SOCK: sock};
  execFileSync('ssh-add', ['-q', keyCopy], {env: agentEnv, stdio: 'ignore'});
  rmSync(keyCopy);
  assert.equal(execFileSync('ssh-add', ['-l'], {env: agentEnv, encoding: 'utf8'}).trim().split('\n').length, 1);

  const line = `ssh://root@127.0.0.1:${b.port} ${system()} - 1 1 - - ${b64(b.hostKeyLine)}`;
  const spec = machine(line, 'agent-machines');
  const noAgent = {...process.env};
  delete noAgent.SSH_AUTH_SOCK;
  await rejectsWith(pool({sshConfigFile: '/dev/null', env: noAgent}).run(spec, ['true']), ['key-file', 'auth']);

  for (const transport of ['auto', 'openssh']) {
    const p = pool({sshConfigFile: '/dev/null', env: agentEnv, transport});
    const r = await p.run(spec, ['nix-store', '--version']);
    assert.equal(r.code, 0, `${transport}: ${r.stderr.toString()}`);
    assert.equal((await p.transportOf(spec)).transport, transport === 'auto' ? 'ssh2' : 'openssh');
  }
});

test('a builder reachable only through a bastion (ProxyJump) is reached over one pooled bastion connection', {timeout: 120_000}, async () => {
  const fleet = await fleetOf(1, {privateNetwork: [0]});
  const b = fleet.builders[0]!;
  const bastion = await fleet.startBastion(0);
  const knownHosts = join(fleet.dir, 'bastion_known_hosts');
  writeFileSync(knownHosts, `[127.0.0.1]:${bastion.port} ${bastion.hostKeyLine}\n`);
  const config = join(fleet.dir, 'ssh_config_jump');
  writeFileSync(
    config,
    sshConfigText([
      {alias: 'jump-box', port: bastion.port, identityFile: bastion.clientKey, knownHosts},
      {alias: 'hidden-builder', port: b.port, identityFile: fleet.clientKey, proxyJump: 'jump-box'},
    ]),
  );
  const pin = b64(b.hostKeyLine);
  // Directly, the builder is not there.
  const direct = machine(`ssh://root@127.0.0.1:${b.port} ${system()} ${fleet.clientKey} 1 1 - - ${pin}`, 'direct');
  await rejectsWith(pool({sshConfigFile: config}).run(direct, ['true']), ['connect'], /ECONNREFUSED/);
  // The bastion itself runs no commands.
  const onBastion = await pool({sshConfigFile: config}).run(machine(`ssh://jump-box ${system()}`, 'bastion'), ['nix-store', '--version']);
  assert.equal(onBastion.code, 1);
  assert.match(onBastion.stderr.toString(), /only forwards/);
  const bastionConnectionsBefore = bastion.connections();

  const p = pool({sshConfigFile: config});
  const spec = machine(`ssh://hidden-builder ${system()} - 1 1 - - ${pin}`, 'jump');
  const other = machine(`ssh://root@hidden-builder ${system()} - 1 1 - - ${pin}`, 'jump');
  const results = await Promise.all([
    ...Array.from({length: 4}, () => p.run(spec, ['nix-store', '--version'])),
    p.run(other, ['sh', '-c', 'echo "$SSH_CONNECTION"']),
  ]);
  for (const r of results) assert.equal(r.code, 0, r.stderr.toString());
  assert.match(results[4]!.stdout.toString(), new RegExp(` 127\\.0\\.0\\.1 ${b.port}\\n$`));
  assert.equal(bastion.connections() - bastionConnectionsBefore, 1, 'both machines share one bastion connection');
  assert.equal(p.stats(spec).connectionsOpened, 1);
  assert.ok(p.stats(spec).bytesIn > 0 && p.stats(spec).bytesOut > 0, JSON.stringify(p.stats(spec)));
  // The pin is enforced through the jump, too.
  await rejectsWith(pool({sshConfigFile: config}).run({...spec, publicHostKey: bastion.hostKeyLine}, ['true']), ['host-key'], /pins SHA256:/);

  // OpenSSH itself does the same jump.
  const o = pool({sshConfigFile: config, transport: 'openssh'});
  const r = await o.run(spec, ['nix-store', '--version']);
  assert.equal(r.code, 0, r.stderr.toString());
});

test('an OpenSSH certificate goes through the OpenSSH transport, chosen automatically: one ControlMaster, pinned host keys enforced', {timeout: 120_000}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-cert-'));
  chmodSync(dir, 0o755);
  cleanups.push(() => rmSync(dir, {recursive: true, force: true}));
  const ca = join(dir, 'user_ca');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test-user-ca', '-f', ca]);
  const fleet = await fleetOf(2, {sshdExtraConfig: [`TrustedUserCAKeys ${ca}.pub`]});
  const b = fleet.builders[0]!;
  const key = join(dir, 'cert_user');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'cert-user', '-f', key]);
  execFileSync('ssh-keygen', ['-q', '-s', ca, '-I', 'hydra-ops-test', '-n', 'root', '-V', '+1h', `${key}.pub`]);
  assert.ok(existsSync(`${key}-cert.pub`));
  const spec = machine(`ssh://root@127.0.0.1:${b.port} ${system()} ${key} 1 1 - - ${b64(b.hostKeyLine)}`, 'cert');

  // The key alone is not authorized (only its certificate is): ssh2, which cannot present certificates, is refused.
  const bare = join(dir, 'bare_user');
  copyFileSync(key, bare);
  chmodSync(bare, 0o600);
  await rejectsWith(pool({sshConfigFile: '/dev/null'}).run({...spec, sshKey: bare}, ['true']), ['auth']);
  // Forcing ssh2 for a machine that needs the certificate is a configuration error that says why.
  await rejectsWith(pool({sshConfigFile: '/dev/null', transport: 'ssh2'}).run(spec, ['true']), ['config'], /certificate .*cert_user-cert\.pub/);

  const p = pool({sshConfigFile: '/dev/null'});
  const chosen = await p.transportOf(spec);
  assert.equal(chosen.transport, 'openssh');
  assert.match(chosen.reason ?? '', /certificate/);
  const loginsBefore = (fleet.log(0).match(/Accepted publickey for root .*ED25519-CERT/g) ?? []).length;
  const rs = await Promise.all(Array.from({length: 3}, (_, i) => p.run(spec, ['sh', '-c', `cat; echo " $0 ${i}"`], 'in')));
  rs.forEach((r, i) => assert.deepEqual([r.code, r.stdout.toString()], [0, `in sh ${i}\n`], r.stderr.toString()));
  const exit = await p.run(spec, ['sh', '-c', 'echo err >&2; exit 7']);
  assert.deepEqual([exit.code, exit.stderr.toString()], [7, 'err\n']);
  assert.equal(p.stats(spec).connectionsOpened, 1);
  const master = p.openSshMasterPid(spec.uri);
  assert.ok(master !== undefined);
  const cmdline = readFileSync(`/proc/${master}/cmdline`, 'utf8').split('\0');
  assert.ok(cmdline.includes('-M') && cmdline.some((a) => a.startsWith('ControlPath=')), cmdline.join(' '));
  await waitFor('the login in the sshd log', () => (fleet.log(0).match(/Accepted publickey for root .*ED25519-CERT/g) ?? []).length > loginsBefore, 5000);
  assert.equal((fleet.log(0).match(/Accepted publickey for root .*ED25519-CERT/g) ?? []).length - loginsBefore, 1, 'one authentication for all commands');
  // Serve protocol through it.
  const serve = new ServeClient(await p.openServe(spec), {label: spec.uri});
  await serve.handshake();
  assert.ok(serve.serverVersion >= 0x205, serve.serverVersion.toString(16));
  await serve.close();

  // Pinned host key: another key in column 8 is refused by OpenSSH before any command runs.
  const marker = join(fleet.dir, 'marker-openssh-pin');
  await rejectsWith(pool({sshConfigFile: '/dev/null'}).exec({...spec, publicHostKey: fleet.builders[1]!.hostKeyLine}, ['touch', marker]), ['host-key']);
  assert.equal(existsSync(marker), false);
  // Without a pin: known_hosts decides (StrictHostKeyChecking=yes, never accept-new).
  const unpinned = {...spec};
  delete unpinned.publicHostKey;
  await rejectsWith(pool({sshConfigFile: '/dev/null', knownHostsFiles: []}).exec(unpinned, ['touch', marker]), ['host-key']);
  assert.equal(existsSync(marker), false);
  const kh = join(dir, 'known_hosts');
  writeFileSync(kh, `[127.0.0.1]:${b.port} ${b.hostKeyLine}\n`);
  assert.equal((await pool({sshConfigFile: '/dev/null', knownHostsFiles: [kh]}).run(unpinned, ['true'])).code, 0);

  p.closeAll();
  await waitFor('the ControlMaster to exit', () => !existsSync(`/proc/${master}`), 5000);
});
