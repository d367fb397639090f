// The Machines view's detail area: below the table the selected machine in full — its strip of the last hour, its
// last ping, and its whole last error, wrapped; for a localhost that cannot build, the problem and every command
// that fixes it (the table cell keeps the first line). Key paths with ink-testing-library over the fake source.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {FakeData, NOW} from './support/ui-fake.js';
import {renderConsole} from './support/ui-render.js';
import type {MachineRow} from '../source/ui/state/types.js';

const PROBLEM = [
  'user nobody cannot write the Nix store /nix/store (/nix/var/nix belongs to another user) and no nix-daemon answers on /nix/var/nix/daemon-socket/socket, so nothing can be evaluated or built on this machine',
  '  fix: as root: apt-get install nix-setup-systemd (starts nix-daemon; builds then go through it)',
  '  fix: as root: add "trusted-users = root nobody" to /etc/nix/nix.conf and restart nix-daemon (needed to build and import for Hydra)',
  '  fix: or run hydra-ops as the owner of the store (root), or point it at remote builders with a machines file (NIX_REMOTE_SYSTEMS)',
].join('\n');

const localhost: MachineRow = {name: 'localhost', uri: 'localhost', state: 'idle', systems: ['x86_64-linux'], supportedFeatures: ['kvm'], mandatoryFeatures: [], currentJobs: 0, maxJobs: 2, speedFactor: 1, score: null, load1: null, disabledUntil: 0, consecutiveFailures: 0, drained: false, lastError: PROBLEM};
const builder: MachineRow = {...localhost, name: 'builder1', uri: 'ssh://builder1', lastError: null, usage: Array.from({length: 60}, () => 0.5), lastPing: {at: NOW - 30_000, ok: false}};

/** The frame's text with the wrapped lines joined again (a wrap breaks at a space, indenting what follows). */
const unwrapped = (f: string) => f.replace(/\n {2,}/g, ' ').replace(/ +/g, ' ');

for (const size of [{columns: 80, rows: 24}, {columns: 160, rows: 30}]) {
  test(`${size.columns}×${size.rows}: the selected machine's whole problem and every fix below the table; the cell keeps the first line`, async () => {
    const r = await renderConsole(new FakeData({machines: [localhost, builder]}), size);
    await r.press('4');
    const f = await r.waitFor((x) => x.includes('last error: user nobody'), 'the detail area');
    const text = unwrapped(f);
    assert.ok(text.includes(`last error: ${PROBLEM.split('\n')[0]!.replace(/ +/g, ' ')}`), text);
    for (const fix of PROBLEM.split('\n').slice(1)) assert.ok(text.includes(fix.trim()), `missing: ${fix}\n${f}`);
    assert.match(f, /localhost \(localhost\) · idle · jobs 0\/2 · systems x86_64-linux · features kvm/);
    assert.match(f, /jobs\/maxJobs, last hour: no sample yet · not pinged \(i pings it\)/);
    // The table row shows the problem's first line only (not the fixes run together).
    const row = f.split('\n').find((l) => l.startsWith('>') && l.includes('localhost'))!;
    assert.doesNotMatch(row, /fix:|\\n/);
    for (const l of f.split('\n')) assert.ok(l.length <= size.columns, `too wide: ${l}`);
    assert.ok(f.split('\n').length <= size.rows);
    // Another machine: its strip and its ping verdict.
    await r.press('j');
    const b = await r.waitFor((x) => x.includes('builder1 (ssh://builder1)'), 'builder1 selected');
    assert.match(unwrapped(b), /jobs\/maxJobs, last hour ▅+ · last ping 30s ago, UNUSABLE/);
    assert.doesNotMatch(b, /last error:/);
    await r.unmount();
  });
}

test('60×15: the detail area shrinks, the selected row stays in view', async () => {
  const many = Array.from({length: 12}, (_, i) => ({...builder, name: `b${i}`, uri: `ssh://b${i}`}));
  const r = await renderConsole(new FakeData({machines: [...many, localhost]}), {columns: 60, rows: 15});
  await r.press('4');
  await r.waitFor((x) => x.includes('b0'), 'machines');
  await r.press('G');
  const f = await r.waitFor((x) => x.includes('localhost (localhost)'), 'last machine selected');
  assert.match(f.split('\n').find((l) => l.startsWith('>'))!, /localhost/);
  assert.match(f, /last error: user nobody/);
  for (const l of f.split('\n')) assert.ok(l.length <= 60, `too wide: ${l}`);
  assert.ok(f.split('\n').length <= 15);
  await r.unmount();
});
