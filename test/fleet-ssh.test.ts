import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {existsSync, readFileSync, writeFileSync, mkdirSync, readdirSync} from 'node:fs';
import {execFileSync} from 'node:child_process';
import {createServer, type Server} from 'node:net';
import {join} from 'node:path';
import {randomBytes} from 'node:crypto';
import {startFleet, type Fleet} from './support/fleet.js';
import {parseMachinesText, type MachineSpec} from '../source/fleet/machines-file.js';
import {SshConnectionPool} from '../source/fleet/ssh-transport.js';
import {SshTransportError, commandLine, isConnectionError, serveCommand, shellQuote} from '../source/fleet/ssh-common.js';
import {fingerprintSha256, publicKeyLineToBlob, parseKnownHosts, checkHostKey, hashHostName} from '../source/fleet/known-hosts.js';

let fleet: Fleet;
let machines: MachineSpec[];
const pools: SshConnectionPool[] = [];

before(async () => {
  // startFleet has its own start-up timeout and reports the sshd log when it expires.
  fleet = await startFleet(2);
  const parsed = parseMachinesText(readFileSync(fleet.machinesFile, 'utf8'), fleet.machinesFile);
  assert.deepEqual(parsed.errors, []);
  machines = parsed.machines;
});

after(async () => {
  for (const p of pools) p.closeAll();
  await fleet?.stop();
});

function pool(opts: ConstructorParameters<typeof SshConnectionPool>[0] = {}): SshConnectionPool {
  // No known_hosts by default: the machines file pins the keys.
  const p = new SshConnectionPool({knownHostsFiles: [], connectTimeoutMs: 10_000, ...opts});
  pools.push(p);
  return p;
}

function sshKeygenFingerprint(keyLine: string): string {
  const file = join(fleet.dir, `fp-${randomBytes(4).toString('hex')}.pub`);
  writeFileSync(file, keyLine + '\n');
  return execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', file], {encoding: 'utf8'}).split(' ')[1]!;
}

function acceptedLogins(i: number): number {
  return (fleet.log(i).match(/Accepted publickey/g) ?? []).length;
}

test('fingerprintSha256 prints what ssh-keygen -lf prints', {timeout: 20_000}, () => {
  const line = fleet.builders[0]!.hostKeyLine;
  assert.equal(fingerprintSha256(publicKeyLineToBlob(line).keyBlob), sshKeygenFingerprint(line));
});

test('shell quoting: every argument is one literal word', {timeout: 20_000}, () => {
  assert.equal(shellQuote('nix-store'), 'nix-store');
  assert.equal(shellQuote(''), "''");
  assert.equal(shellQuote("it's"), `'it'\\''s'`);
  assert.equal(commandLine(['a b', '$(x)']), `'a b' '$(x)'`);
  assert.throws(() => shellQuote('a\0b'), /NUL/);
  assert.deepEqual(serveCommand({}), ['nix-store', '--serve', '--write']);
  assert.deepEqual(serveCommand({remoteStore: '/s p'}), ['nix-store', '--serve', '--write', '--store', '/s p']);
});

test('exec runs nix-store --version on the builder and reports exit codes and stderr', {timeout: 20_000}, async () => {
  const p = pool();
  const r = await p.run(machines[0]!, ['nix-store', '--version']);
  assert.equal(r.code, 0);
  assert.match(r.stdout.toString(), /^nix-store \(Nix\) \d+\.\d+/);
  const r2 = await p.run(machines[0]!, ['sh', '-c', 'echo out; echo err >&2; exit 3']);
  assert.deepEqual([r2.code, r2.stdout.toString(), r2.stderr.toString()], [3, 'out\n', 'err\n']);
  const s = p.stats(machines[0]!);
  assert.equal(s.connectionsOpened, 1);
  assert.ok(s.bytesIn > 0 && s.bytesOut > 0, JSON.stringify(s));
});

test("each builder has its own Nix store: a locally valid path is not valid there, and the builder's paths stay in its own directory", {timeout: 20_000}, async () => {
  const p = pool();
  const src = join(fleet.dir, `payload-${randomBytes(6).toString('hex')}`);
  writeFileSync(src, randomBytes(16).toString('hex'));
  const localPath = execFileSync('nix-store', ['--add', src], {encoding: 'utf8'}).trim();
  execFileSync('nix-store', ['--check-validity', localPath]); // valid here
  const remote = await p.run(machines[0]!, ['nix-store', '--check-validity', localPath]);
  assert.notEqual(remote.code, 0);
  assert.match(remote.stderr.toString(), /is not valid/);

  const added = await p.run(machines[0]!, ['nix-store', '--add', src]);
  assert.equal(added.code, 0, added.stderr.toString());
  const remotePath = added.stdout.toString().trim();
  assert.equal(remotePath, localPath, 'same content, same store path');
  const name = remotePath.slice('/nix/store/'.length);
  assert.ok(existsSync(join(fleet.builders[0]!.storeDir, 'store', name)), "the path lives under the builder's private /nix");
  assert.ok(existsSync(join(fleet.builders[0]!.storeDir, 'var', 'nix', 'db', 'db.sqlite')), 'the builder store was initialised');
  assert.ok(!existsSync(join(fleet.builders[1]!.storeDir, 'store', name)), 'and not in the other builder');
  const other = await p.run(machines[1]!, ['nix-store', '--check-validity', remotePath]);
  assert.notEqual(other.code, 0);
});

test('a wrong pinned host key is refused during the handshake, before any command runs, showing both fingerprints', {timeout: 20_000}, async () => {
  const p = pool();
  const marker = join(fleet.dir, 'marker-wrong-pin');
  const wrong: MachineSpec = {...machines[0]!, publicHostKey: fleet.builders[1]!.hostKeyLine};
  const loginsBefore = acceptedLogins(0);
  await assert.rejects(p.exec(wrong, ['touch', marker]), (e: unknown) => {
    assert.ok(e instanceof SshTransportError);
    assert.equal(e.kind, 'host-key');
    const seen = sshKeygenFingerprint(fleet.builders[0]!.hostKeyLine);
    const expected = sshKeygenFingerprint(fleet.builders[1]!.hostKeyLine);
    assert.equal(
      e.message,
      `${wrong.uri}: host key mismatch: the server offered ${seen} but the machines file pins ${expected}; refusing to connect`,
    );
    assert.equal(e.details.fingerprint, seen);
    return true;
  });
  assert.equal(existsSync(marker), false, 'the command did not run');
  assert.equal(p.connectionsOpened(wrong), 0);

  // A pinned key of another type (RSA) than the server's (ed25519) is still a fingerprinted mismatch.
  const rsaFile = join(fleet.dir, 'rsa_pin');
  execFileSync('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', rsaFile]);
  const rsaLine = readFileSync(`${rsaFile}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
  await assert.rejects(p.exec({...machines[0]!, publicHostKey: rsaLine}, ['touch', marker]), (e: unknown) => {
    assert.ok(e instanceof SshTransportError && e.kind === 'host-key', String(e));
    assert.ok(e.message.includes(`pins ${sshKeygenFingerprint(rsaLine)}`), e.message);
    return true;
  });
  assert.equal(existsSync(marker), false, 'the command did not run');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(acceptedLogins(0), loginsBefore, 'the client never authenticated');
});

test('without a pin, an unknown host is refused; known_hosts entries (plain and hashed) are accepted; a changed or revoked key is refused', {timeout: 20_000}, async () => {
  const b = fleet.builders[0]!;
  const unpinned: MachineSpec = {...machines[0]!};
  delete unpinned.publicHostKey;
  const kh = join(fleet.dir, 'known_hosts_test');
  const seen = sshKeygenFingerprint(b.hostKeyLine);

  writeFileSync(kh, '# nothing for this host\nother.example ' + fleet.builders[1]!.hostKeyLine + '\n');
  const marker = join(fleet.dir, 'marker-unknown');
  await assert.rejects(pool({knownHostsFiles: [kh, join(fleet.dir, 'absent')]}).exec(unpinned, ['touch', marker]), (e: unknown) => {
    assert.ok(e instanceof SshTransportError && e.kind === 'host-key');
    assert.match(e.message, new RegExp(`unknown host key ${seen.replace(/[+/]/g, '\\$&')}: not pinned`));
    return true;
  });
  assert.equal(existsSync(marker), false);

  // Plain entry in [host]:port form (non-standard port), as ssh writes it.
  writeFileSync(kh, `[127.0.0.1]:${b.port} ${b.hostKeyLine}\n`);
  const plain = await pool({knownHostsFiles: [kh]}).run(unpinned, ['true']);
  assert.equal(plain.code, 0);

  // Hashed by ssh-keygen itself.
  execFileSync('ssh-keygen', ['-H', '-f', kh], {stdio: 'ignore'});
  const hashedText = readFileSync(kh, 'utf8');
  assert.match(hashedText, /^\|1\|[^|]+\|[^ ]+ ssh-ed25519 /);
  assert.ok(!hashedText.includes('127.0.0.1'));
  const hashed = await pool({knownHostsFiles: [kh]}).run(unpinned, ['true']);
  assert.equal(hashed.code, 0);

  // Our own hashing agrees with ssh-keygen's: the entry parses and matches.
  const entries = parseKnownHosts(`${hashHostName(`[127.0.0.1]:${b.port}`)} ${b.hostKeyLine}\n`, 'x').entries;
  assert.equal(checkHostKey(entries, '127.0.0.1', b.port, publicKeyLineToBlob(b.hostKeyLine).keyBlob).status, 'match');

  // The host is known with another key: changed key, both fingerprints shown.
  writeFileSync(kh, `[127.0.0.1]:${b.port} ${fleet.builders[1]!.hostKeyLine}\n`);
  await assert.rejects(pool({knownHostsFiles: [kh]}).exec(unpinned, ['true']), (e: unknown) => {
    assert.ok(e instanceof SshTransportError && e.kind === 'host-key');
    assert.ok(e.message.includes(`host key changed: the server offered ${seen} but known_hosts (${kh}:1) has ${sshKeygenFingerprint(fleet.builders[1]!.hostKeyLine)}`), e.message);
    return true;
  });

  // A revoked key is refused even when also listed as known.
  writeFileSync(kh, `[127.0.0.1]:${b.port} ${b.hostKeyLine}\n@revoked * ${b.hostKeyLine}\n`);
  await assert.rejects(pool({knownHostsFiles: [kh]}).exec(unpinned, ['true']), /marked @revoked/);
});

test('20 sequential execs share ONE connection', {timeout: 20_000}, async () => {
  const p = pool();
  for (let i = 0; i < 20; i++) {
    const r = await p.run(machines[0]!, ['echo', String(i)]);
    assert.equal(r.stdout.toString(), `${i}\n`);
  }
  assert.equal(p.connectionsOpened(machines[0]!), 1);
  assert.equal(p.stats(machines[0]!).connectionsOpen, 1);
});

test('parallel execs: 10 fit one connection, 12 open a second one', {timeout: 20_000}, async () => {
  const ten = pool();
  const r10 = await Promise.all(Array.from({length: 10}, (_, i) => ten.run(machines[0]!, ['sh', '-c', `sleep 0.3; echo ${i}`])));
  assert.deepEqual(r10.map((r) => r.stdout.toString()), Array.from({length: 10}, (_, i) => `${i}\n`));
  assert.equal(ten.connectionsOpened(machines[0]!), 1);

  const twelve = pool();
  let peak = {channels: 0, connections: 0};
  const runs = Array.from({length: 12}, (_, i) => twelve.run(machines[0]!, ['sh', '-c', `sleep 0.5; echo ${i}`]));
  const sampler = setInterval(() => {
    const s = twelve.stats(machines[0]!);
    // The connections of the busiest moment: channel slots are reserved before their connections exist.
    if (s.channelsOpen > peak.channels || (s.channelsOpen === peak.channels && s.connectionsOpen > peak.connections)) {
      peak = {channels: s.channelsOpen, connections: s.connectionsOpen};
    }
  }, 20);
  const r12 = await Promise.all(runs);
  clearInterval(sampler);
  assert.deepEqual(r12.map((r) => r.code), Array(12).fill(0));
  assert.equal(twelve.connectionsOpened(machines[0]!), 2);
  assert.deepEqual(peak, {channels: 12, connections: 2});
});

test('arguments with spaces, quotes, newlines and $(…) arrive literally; nothing is interpreted', {timeout: 20_000}, async () => {
  const p = pool();
  const marker = join(fleet.dir, 'marker-injection');
  const args = [
    'two words',
    "it's",
    '"double"',
    `$(touch ${marker})`,
    `\`touch ${marker}\``,
    `; touch ${marker}`,
    `| touch ${marker}`,
    '*',
    '',
    'new\nline',
    '$HOME',
    'back\\slash',
    "'",
  ];
  const r = await p.run(machines[0]!, ['printf', '%s\\0', ...args]);
  assert.equal(r.code, 0, r.stderr.toString());
  assert.deepEqual(r.stdout.toString().split('\0').slice(0, -1), args);
  assert.equal(existsSync(marker), false);
});

test('closing the channel reaches the remote command as EOF on its input (cancellation)', {timeout: 20_000}, async () => {
  const p = pool();
  const marker = join(fleet.dir, 'marker-eof');
  const h = await p.exec(machines[0]!, ['sh', '-c', `cat >/dev/null; touch ${shellQuote(marker)}`]);
  h.stdout.resume();
  h.stdin.write('some input');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(existsSync(marker), false);
  await h.close();
  const status = await h.exited;
  assert.equal(typeof status.code === 'number' || status.code === null, true);
  const deadline = Date.now() + 3000;
  while (!existsSync(marker) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(existsSync(marker), true, 'the remote side saw EOF and carried on');
  assert.equal(p.stats(machines[0]!).channelsOpen, 0);
});

test('openServe speaks to nix-store --serve on the builder (handshake magic), also with remote-store', {timeout: 20_000}, async () => {
  const p = pool();
  const hello = Buffer.alloc(16);
  hello.writeUInt32LE(0x390c9deb, 0); // SERVE_MAGIC_1
  hello.writeUInt32LE(0x205, 8); // protocol 2.5
  for (const target of [machines[0]!, {...machines[0]!, remoteStore: join(fleet.dir, 'chroot store')}]) {
    const h = await p.openServe(target);
    const reply = new Promise<Buffer>((resolve) => {
      let buf = Buffer.alloc(0);
      h.stdout.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        if (buf.length >= 16) resolve(buf);
      });
    });
    h.stdin.write(hello);
    const got = await reply;
    assert.equal(got.readUInt32LE(0), 0x5452eecb, 'SERVE_MAGIC_2');
    assert.ok(got.readUInt32LE(8) >= 0x200);
    h.stdin.end();
    await h.exited;
  }
  assert.ok(existsSync(join(fleet.dir, 'chroot store', 'nix', 'var', 'nix', 'db')), '--store <remote-store> was passed');
});

test('key, authentication and timeout failures are clear transport errors', {timeout: 20_000}, async () => {
  const missing: MachineSpec = {...machines[0]!, sshKey: join(fleet.dir, 'no-such-key')};
  await assert.rejects(pool().exec(missing, ['true']), (e: unknown) => {
    assert.ok(e instanceof SshTransportError && e.kind === 'key-file');
    assert.equal(e.message, `${missing.uri}: cannot read SSH key '${missing.sshKey}': ENOENT`);
    return true;
  });
  const garbage = join(fleet.dir, 'garbage-key');
  writeFileSync(garbage, 'not a key\n');
  await assert.rejects(pool().exec({...machines[0]!, sshKey: garbage}, ['true']), /cannot use SSH key/);

  const strangerKey = join(fleet.dir, 'stranger');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', strangerKey]);
  await assert.rejects(pool().exec({...machines[0]!, sshKey: strangerKey}, ['true']), (e: unknown) => {
    assert.ok(e instanceof SshTransportError && e.kind === 'auth', String(e));
    assert.match(e.message, /authentication as 'root' refused/);
    assert.ok(isConnectionError(e));
    return true;
  });

  // A server that accepts TCP but never speaks SSH.
  const silent: Server = createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  const port = (silent.address() as {port: number}).port;
  const t0 = Date.now();
  await assert.rejects(pool({connectTimeoutMs: 300}).exec({...machines[0]!, uri: `ssh://root@127.0.0.1:${port}`, port}, ['true']), (e: unknown) => {
    assert.ok(e instanceof SshTransportError && e.kind === 'timeout', String(e));
    return true;
  });
  assert.ok(Date.now() - t0 < 3000);
  silent.close();
});

test('killing the builder mid-exec fails the exec as a connection error; after a restart the pool reconnects by itself', {timeout: 20_000}, async () => {
  const p = pool();
  const m = machines[1]!;
  const warm = await p.run(m, ['true']);
  assert.equal(warm.code, 0);
  const h = await p.exec(m, ['sleep', '30']);
  h.stdout.resume();
  h.stderr.resume();
  await fleet.stopBuilder(1);
  await assert.rejects(h.exited, (e: unknown) => {
    assert.ok(isConnectionError(e), String(e));
    assert.ok(e instanceof SshTransportError && e.kind === 'lost', String(e));
    return true;
  });

  await assert.rejects(p.exec(m, ['true']), (e: unknown) => {
    assert.ok(isConnectionError(e));
    assert.ok(e instanceof SshTransportError && e.kind === 'connect', String(e));
    assert.match(e.message, /ECONNREFUSED/);
    return true;
  });
  assert.equal(isConnectionError(new Error('build failed')), false);

  await fleet.startBuilder(1);
  const again = await p.run(m, ['echo', 'back']);
  assert.equal(again.stdout.toString(), 'back\n');
  assert.equal(p.connectionsOpened(m), 2);

  // A pooled idle connection that dies with its builder is replaced transparently on next use.
  await fleet.stopBuilder(1);
  await fleet.startBuilder(1);
  const third = await p.run(m, ['echo', 'again']);
  assert.equal(third.stdout.toString(), 'again\n');
  assert.equal(p.connectionsOpened(m), 3);
});

test('keepalive notices a builder that stopped answering; the next exec reconnects', {timeout: 20_000}, async () => {
  const p = pool({keepaliveIntervalMs: 150, keepaliveCountMax: 2});
  const m = machines[1]!;
  assert.equal((await p.run(m, ['true'])).code, 0);
  const h = await p.exec(m, ['sleep', '30']);
  h.stdout.resume();
  h.stderr.resume();
  const t0 = Date.now();
  fleet.freezeBuilder(1);
  try {
    await assert.rejects(h.exited, (e: unknown) => {
      assert.ok(isConnectionError(e) && e instanceof SshTransportError && e.kind === 'lost', String(e));
      return true;
    });
    assert.ok(Date.now() - t0 < 3000, `detected after ${Date.now() - t0} ms`);
  } finally {
    fleet.thawBuilder(1);
  }
  assert.equal((await p.run(m, ['echo', 'ok'])).stdout.toString(), 'ok\n');
  assert.equal(p.connectionsOpened(m), 2);
});

test('the fleet cleans up: stopped builders refuse connections and their namespaces are gone', {timeout: 20_000}, async () => {
  const small = await startFleet(1);
  const dir = small.dir;
  const pid = small.builders[0]!.pid;
  assert.ok(readdirSync(dir).includes('machines'));
  mkdirSync(join(dir, 'scratch'));
  await small.stop();
  assert.equal(existsSync(dir), false);
  assert.throws(() => process.kill(pid, 0), /ESRCH/);
});
