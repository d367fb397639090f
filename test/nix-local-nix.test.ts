// What hydra-ops makes of this machine's own Nix (source/nix/local-nix.ts): the decision from the facts, and the
// facts from a real Nix under stated configurations.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {localNixFacts, planLocalNix, type LocalNixFacts} from '../source/nix/local-nix.js';

const base: LocalNixFacts = {
  uid: 0,
  user: 'root',
  installed: true,
  buildUsersGroup: 'nixbld',
  sandbox: 'true',
  sandboxPaths: [],
  storeWritable: true,
  daemon: false,
  buildGroup: {exists: false, members: 0},
  staticShell: '/bin/busybox',
  stateDir: '/nix/var/nix',
  storeDir: '/nix/store',
};

test('root, no nixbld group, sandbox without /bin/sh: single-user with the static shell, each with a notice', () => {
  const plan = planLocalNix(base, {implicit: true});
  assert.equal(plan.mode, 'local');
  assert.equal(plan.problem, null);
  assert.deepEqual(plan.options, ['--option', 'build-users-group', '', '--option', 'extra-sandbox-paths', '/bin/sh=/bin/busybox']);
  assert.equal(plan.notices.length, 2);
  assert.match(plan.notices[0]!, /single-user as root.*'nixbld' does not exist.*groupadd -r nixbld/);
  assert.match(plan.notices[1]!, /\/bin\/busybox/);
});

test('a build-users group without members is treated like a missing one; one with members is used as it is', () => {
  assert.deepEqual(planLocalNix({...base, buildGroup: {exists: true, members: 0}, sandbox: 'false'}, {implicit: true}).options, ['--option', 'build-users-group', '']);
  const multi = planLocalNix({...base, buildGroup: {exists: true, members: 8}, sandboxPaths: ['/bin/sh=/nix/store/x-busybox/bin/busybox']}, {implicit: true});
  assert.deepEqual(multi.options, []);
  assert.deepEqual(multi.notices, []);
});

test('no static shell: the implicit localhost turns the sandbox off and says so; a configured machine keeps it and is warned', () => {
  const implicit = planLocalNix({...base, staticShell: null, buildGroup: {exists: true, members: 2}}, {implicit: true});
  assert.deepEqual(implicit.options, ['--option', 'sandbox', 'false']);
  assert.match(implicit.notices[0]!, /without the sandbox.*busybox-static/);
  const configured = planLocalNix({...base, staticShell: null, buildGroup: {exists: true, members: 2}}, {implicit: false});
  assert.deepEqual(configured.options, []);
  assert.match(configured.notices[0]!, /fail on localhost/);
});

test('a plain user: build users do not apply; a store owned by root without a daemon cannot build, and the fixes are commands', () => {
  const user = {...base, uid: 1000, user: 'alice', buildUsersGroup: '', buildGroup: null, storeWritable: false};
  const plan = planLocalNix(user, {implicit: true});
  assert.equal(plan.mode, 'none');
  assert.ok(plan.problem);
  assert.match(plan.problem.summary, /user alice cannot write the Nix store \/nix\/store.*no nix-daemon/);
  assert.ok(plan.problem.fixes.some((f) => f.includes('apt-get install nix-setup-systemd')));
  assert.ok(plan.problem.fixes.some((f) => f.includes('trusted-users = root alice')));
  const daemon = planLocalNix({...user, daemon: true}, {implicit: true});
  assert.equal(daemon.mode, 'daemon');
  assert.equal(daemon.problem, null);
  // The daemon's sandbox has no /bin/sh either (nix-setup-systemd keeps Nix's defaults): the static shell is passed
  // on, which the daemon takes from a trusted user, and the notice says so.
  assert.deepEqual(daemon.options, ['--option', 'extra-sandbox-paths', '/bin/sh=/bin/busybox']);
  assert.match(daemon.notices[1]!, /\/bin\/busybox.*trusted-users = root alice/);
  const configuredSandbox = planLocalNix({...user, daemon: true, sandboxPaths: ['/bin/sh=/some/busybox']}, {implicit: true});
  assert.deepEqual(configuredSandbox.options, []);
});

test('Nix missing is a problem with the install command', () => {
  const plan = planLocalNix({...base, installed: false}, {implicit: true});
  assert.equal(plan.mode, 'none');
  assert.match(plan.problem!.fixes[0]!, /apt-get install nix-bin/);
});

test('facts come from the real Nix under a stated configuration', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-local-nix-'));
  try {
    writeFileSync(join(dir, 'nix.conf'), 'build-users-group = hydra-ops-no-such-group\nsandbox = true\nsandbox-paths = /etc/hosts\nsubstituters =\n');
    const facts = await localNixFacts({...process.env, NIX_CONF_DIR: dir, NIX_USER_CONF_FILES: ''});
    assert.equal(facts.installed, true);
    assert.equal(facts.sandbox, 'true');
    assert.deepEqual(facts.sandboxPaths, ['/etc/hosts']);
    assert.equal(facts.uid, 0, 'the suite runs as root');
    assert.equal(facts.buildUsersGroup, 'hydra-ops-no-such-group');
    assert.deepEqual(facts.buildGroup, {exists: false, members: 0});
    writeFileSync(join(dir, 'nix.conf'), 'build-users-group = root\nsandbox = false\n');
    const other = await localNixFacts({...process.env, NIX_CONF_DIR: dir, NIX_USER_CONF_FILES: ''});
    assert.equal(other.sandbox, 'false');
    assert.equal(other.buildGroup?.exists, true);
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});
