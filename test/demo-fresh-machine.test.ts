// `npm start` (hydra-ops demo) on a fresh machine, with the Nix configuration a fresh Debian nix-bin has: the
// build-users group `nixbld` configured (missing there), the sandbox on with no /bin/sh in it. As root the demo's
// builds succeed, with or without a populated build-users group; as a plain user whose store belongs to root and
// with no nix-daemon, the demo sets up, the console opens, and the header, the runner and `machine ping localhost`
// say why nothing can build and which commands fix it — never Nix's raw error alone.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {execFile, execFileSync} from 'node:child_process';
import {chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import pg from 'pg';
import {freshDatabase, type TestDatabase} from './support/pg.js';
import {cliArgs, type CliResult} from './support/cli.js';
import {claimBuildUserIds} from './support/fleet.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const NOBODY = 65534;
let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'hydra-ops-fresh-'));
  chmodSync(dir, 0o755);
});
after(() => rmSync(dir, {recursive: true, force: true}));

/** A Nix configuration directory as a fresh nix-bin has it (defaults made explicit), without binary caches. */
function freshNixConf(name: string, buildUsersGroup: string): string {
  const confDir = join(dir, name);
  mkdirSync(confDir, {recursive: true});
  writeFileSync(join(confDir, 'nix.conf'), `build-users-group = ${buildUsersGroup}\nsandbox = true\nsandbox-paths =\nsubstituters =\n`);
  chmodSync(confDir, 0o755);
  return confDir;
}

/** Runs the CLI with `prefix` (a wrapper argv) before node, and a complete environment. */
function run(prefix: string[], args: string[], env: Record<string, string>, timeoutMs = 240_000): Promise<CliResult> {
  const argv = [...prefix, process.execPath, ...cliArgs(), ...args];
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), {env: {PATH: process.env.PATH ?? '/usr/bin:/bin', NO_COLOR: '1', LANG: 'C.UTF-8', ...env}, cwd: root, timeout: timeoutMs, maxBuffer: 64 << 20}, (error, stdout, stderr) => {
      const code = error ? (typeof (error as {code?: unknown}).code === 'number' ? (error as {code: number}).code : 1) : 0;
      resolve({code, stdout, stderr});
    });
  });
}

async function demoBuilds(db: TestDatabase, prefix: string[], env: Record<string, string>): Promise<{stderr: string; status: number | null}> {
  const demo = await run(prefix, ['--database-url', db.url, 'demo', '--no-console', '--slow-seconds', '0', '--json'], env);
  assert.equal(demo.code, 0, demo.stderr);
  const doc = JSON.parse(demo.stdout) as {localhost: {canBuild: boolean}};
  assert.equal(doc.localhost.canBuild, true, demo.stdout);
  const pool = new pg.Pool({connectionString: db.url, max: 1});
  try {
    // libbar needs libfoo, zlib-lite and openssl-lite: four real builds on localhost.
    const {rows} = await pool.query(`SELECT id FROM builds WHERE job = 'libbar'`);
    assert.equal(rows.length, 1);
    const daemon = await run(prefix, ['--database-url', db.url, 'daemon', '--build-one', String(rows[0].id), '--status-address', 'off'], env);
    const status = (await pool.query('SELECT buildstatus FROM builds WHERE id = $1', [rows[0].id])).rows[0].buildstatus as number | null;
    assert.doesNotMatch(daemon.stderr, /specified in 'build-users-group' does not exist|executing '\/bin\/sh'/);
    assert.equal(daemon.code, 0, daemon.stderr);
    return {stderr: daemon.stderr, status};
  } finally {
    await pool.end();
  }
}

test('root on a fresh machine without the nixbld group: the demo builds single-user, with a notice, in the sandbox', {timeout: 300_000}, async () => {
  const db = await freshDatabase('fresh_root');
  try {
    const env = {HOME: dir, HYDRA_DATA: join(dir, 'root-data'), HYDRA_OPS_CONFIG_DIR: join(dir, 'root-config'), HYDRA_OPS_USER: 'demo', NIX_CONF_DIR: freshNixConf('conf-root', 'nixbld-missing-here'), NIX_USER_CONF_FILES: ''};
    const r = await demoBuilds(db, [], env);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /building single-user as root on localhost: the build-users group 'nixbld-missing-here' does not exist/);
    assert.match(r.stderr, /sandbox has no \/bin\/sh: local builds get \/bin\/busybox/);
  } finally {
    await db.drop();
  }
});

test('root with a populated build-users group: the demo builds as build users in the sandbox, with no single-user notice', {timeout: 300_000}, async () => {
  const db = await freshDatabase('fresh_root_users');
  const ids = claimBuildUserIds();
  try {
    // The group and its users exist only in this test's mount namespace (private /etc/passwd and /etc/group).
    const group = 'hydra-ops-coord';
    const users = [1, 2, 3].map((k) => `${group}-${k}:x:${ids.base + k}:${ids.base}::/var/empty:/usr/sbin/nologin`);
    writeFileSync(join(dir, 'passwd'), [readFileSync('/etc/passwd', 'utf8').trimEnd(), ...users].join('\n') + '\n');
    writeFileSync(join(dir, 'group'), [readFileSync('/etc/group', 'utf8').trimEnd(), `${group}:x:${ids.base}:${[1, 2, 3].map((k) => `${group}-${k}`).join(',')}`].join('\n') + '\n');
    const prefix = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', `mount --bind '${dir}/passwd' /etc/passwd && mount --bind '${dir}/group' /etc/group && exec "$@"`, 'ns'];
    const env = {HOME: dir, HYDRA_DATA: join(dir, 'users-data'), HYDRA_OPS_CONFIG_DIR: join(dir, 'users-config'), HYDRA_OPS_USER: 'demo', NIX_CONF_DIR: freshNixConf('conf-users', group), NIX_USER_CONF_FILES: ''};
    const r = await demoBuilds(db, prefix, env);
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /single-user/);
    assert.match(r.stderr, /local builds get \/bin\/busybox/);
  } finally {
    ids.release();
    await db.drop();
  }
});

test('a plain user whose store belongs to root, with no nix-daemon: the demo sets up, the console opens and everything says why nothing builds', {timeout: 300_000}, async () => {
  const db = await freshDatabase('fresh_user');
  const home = join(dir, 'nobody');
  mkdirSync(home, {mode: 0o755});
  chownSync(home, NOBODY, NOBODY);
  // No daemon socket, whatever this machine runs: an empty directory over it in this test's mount namespace.
  const emptySocketDir = join(dir, 'no-daemon');
  mkdirSync(emptySocketDir);
  const asNobody = [
    'unshare', '--mount', '--propagation', 'private', 'sh', '-c',
    `mkdir -p /nix/var/nix/daemon-socket 2>/dev/null; mount --bind '${emptySocketDir}' /nix/var/nix/daemon-socket 2>/dev/null; exec setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups "$@"`,
    'ns',
  ];
  const env = {HOME: home, HYDRA_DATA: join(home, 'data'), HYDRA_OPS_CONFIG_DIR: join(home, 'config'), HYDRA_OPS_USER: 'demo', NIX_CONF_DIR: freshNixConf('conf-user', 'nixbld'), NIX_USER_CONF_FILES: ''};
  const session = `hydra-ops-fresh-${process.pid}`;
  try {
    const demo = await run(asNobody, ['--database-url', db.url, 'demo', '--no-console', '--json'], env);
    assert.equal(demo.code, 0, demo.stderr);
    const doc = JSON.parse(demo.stdout) as {eval: unknown; localhost: {canBuild: boolean; problem: {summary: string; fixes: string[]}}};
    assert.equal(doc.localhost.canBuild, false);
    assert.equal(doc.eval, null);
    assert.match(doc.localhost.problem.summary, /user nobody cannot write the Nix store \/nix\/store .*no nix-daemon/);
    assert.match(demo.stderr, /fix: as root: apt-get install nix-setup-systemd/);
    assert.doesNotMatch(demo.stderr, /could not set permissions/);

    const ping = await run(asNobody, ['--database-url', db.url, 'machine', 'ping', 'localhost', '--json'], env);
    assert.equal(ping.code, 1, ping.stdout + ping.stderr);
    const pinged = JSON.parse(ping.stdout) as {machines: Array<{uri: string; ok: boolean; problems: Array<{kind: string; message: string; fix: string}>}>};
    const local = pinged.machines.find((p) => p.uri === 'localhost')!;
    assert.equal(local.ok, false);
    assert.equal(local.problems[0]!.kind, 'local-nix');
    assert.match(local.problems[0]!.fix, /apt-get install nix-setup-systemd/);
    assert.doesNotMatch(ping.stdout + ping.stderr, /could not set permissions/);

    // The console (in-process scheduler, as `npm start` runs it): it opens, and its header says why.
    const script = join(home, 'console.sh');
    const envLines = Object.entries({...env, PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8'}).map(([k, v]) => `export ${k}='${v}'`);
    writeFileSync(script, ['#!/bin/sh', ...envLines, `cd '${root}'`, `exec ${[...asNobody, process.execPath, ...cliArgs()].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')} --database-url '${db.url}' --scheduler 2>'${home}/stderr'`].join('\n') + '\n');
    chmodSync(script, 0o755);
    execFileSync('tmux', ['new-session', '-d', '-s', session, '-x', '160', '-y', '30', script]);
    const deadline = Date.now() + 60_000;
    let screen = '';
    while (Date.now() < deadline) {
      screen = execFileSync('tmux', ['capture-pane', '-p', '-t', session], {encoding: 'utf8'});
      if (screen.includes('localhost cannot build')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.match(screen, /localhost cannot build: user nobody cannot write the Nix store/, `screen:\n${screen}`);
    execFileSync('tmux', ['send-keys', '-t', session, '4']);
    const machinesDeadline = Date.now() + 20_000;
    while (Date.now() < machinesDeadline && !/Machines/.test(screen)) {
      await new Promise((r) => setTimeout(r, 200));
      screen = execFileSync('tmux', ['capture-pane', '-p', '-t', session], {encoding: 'utf8'});
    }
    assert.match(screen, /localhost/);
    assert.doesNotMatch(screen, /could not set permissions/);
    // Below the table, localhost (the only machine, selected) in full: the problem and every command that fixes it.
    const fixesDeadline = Date.now() + 20_000;
    while (Date.now() < fixesDeadline && !/fix: or run hydra-ops as the owner of the store/.test(screen)) {
      await new Promise((r) => setTimeout(r, 200));
      screen = execFileSync('tmux', ['capture-pane', '-p', '-t', session], {encoding: 'utf8'});
    }
    assert.match(screen, /last error: user nobody cannot write the Nix store/, `screen:\n${screen}`);
    assert.match(screen, /fix: as root: apt-get install nix-setup-systemd \(starts nix-daemon; builds then go through it\)/, `screen:\n${screen}`);
    assert.match(screen, /fix: as root: add "trusted-users = root nobody" to \/etc\/nix\/nix\.conf and restart nix-daemon/, `screen:\n${screen}`);
    assert.match(screen, /fix: or run hydra-ops as the owner of the store \(root\), or point it at remote builders with a machines file/, `screen:\n${screen}`);
  } finally {
    try {
      execFileSync('tmux', ['send-keys', '-t', session, 'q']);
      await new Promise((r) => setTimeout(r, 1500));
      execFileSync('tmux', ['kill-session', '-t', session]);
    } catch {
      // never started, or already gone
    }
    await db.drop();
  }
});

test('a plain user with a nix-daemon (as nix-setup-systemd sets it up: build users, the sandbox on without /bin/sh): the demo builds through the daemon', {timeout: 300_000}, async () => {
  const db = await freshDatabase('fresh_user_daemon');
  const ids = claimBuildUserIds();
  const home = join(dir, 'nobody-daemon');
  mkdirSync(home, {mode: 0o755});
  chownSync(home, NOBODY, NOBODY);
  try {
    // The daemon's machine: a private /nix (its own store), a build-users group with members and a nix.conf with
    // Nix's defaults for the sandbox, the user trusted as README's quick start says. All of it exists only in the
    // mount namespace of each command; the daemon dies with the command (PID namespace).
    const nixDir = join(dir, 'daemon-nix');
    mkdirSync(nixDir, {mode: 0o755});
    const group = 'hydra-ops-dmn';
    const users = [1, 2].map((k) => `${group}-${k}:x:${ids.base + k}:${ids.base}::/var/empty:/usr/sbin/nologin`);
    writeFileSync(join(dir, 'passwd-dmn'), [readFileSync('/etc/passwd', 'utf8').trimEnd(), ...users].join('\n') + '\n');
    writeFileSync(join(dir, 'group-dmn'), [readFileSync('/etc/group', 'utf8').trimEnd(), `${group}:x:${ids.base}:${[1, 2].map((k) => `${group}-${k}`).join(',')}`].join('\n') + '\n');
    const confDir = join(dir, 'conf-daemon');
    mkdirSync(confDir, {mode: 0o755});
    writeFileSync(join(confDir, 'nix.conf'), `build-users-group = ${group}\nsandbox = true\nsandbox-paths =\nsubstituters =\ntrusted-users = root nobody\n`);
    const withDaemon = [
      'unshare', '--mount', '--propagation', 'private', '--pid', '--fork', '--mount-proc', '--kill-child=SIGKILL', 'sh', '-c',
      `mount --bind '${nixDir}' /nix && mount --bind '${dir}/passwd-dmn' /etc/passwd && mount --bind '${dir}/group-dmn' /etc/group && ` +
        `{ NIX_CONF_DIR='${confDir}' nix-daemon >>'${dir}/nix-daemon.log' 2>&1 & } && ` +
        `while [ ! -S /nix/var/nix/daemon-socket/socket ]; do sleep 0.05; done && ` +
        `exec setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups "$@"`,
      'ns',
    ];
    const env = {HOME: home, HYDRA_DATA: join(home, 'data'), HYDRA_OPS_CONFIG_DIR: join(home, 'config'), HYDRA_OPS_USER: 'demo', NIX_CONF_DIR: confDir, NIX_USER_CONF_FILES: ''};
    const r = await demoBuilds(db, withDaemon, env);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /local builds go through the nix-daemon/);
    assert.match(r.stderr, /local builds get \/bin\/busybox/);
    // The daemon built as its build users (a multi-user store), not as the plain user.
    assert.doesNotMatch(r.stderr, /single-user/);
  } finally {
    ids.release();
    await db.drop();
  }
});
