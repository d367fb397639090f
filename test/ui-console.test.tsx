// Key paths of the console with ink-testing-library and a fake data source: navigation, paging,
// filter, drill-down, log search, confirm and cancel dialogs, read-only and permission refusals,
// command mode, help, marks, pause, live refresh, small terminals, colours and ASCII glyphs.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {FakeData, NOW} from './support/ui-fake.js';
import {KEYS, renderConsole} from './support/ui-render.js';
import {terminalProblem} from '../source/ui/console.js';
import {toKeys} from '../source/ui/state/keymap.js';
import {themeFromEnv, statusStyle} from '../source/ui/theme.js';
import {sparkline} from '../source/ui/components/Sparkline.js';
import {fitColumns} from '../source/ui/components/Table.js';
import {pingSummary} from '../source/ui/state/sql-actions.js';

/** The line of the selected row (it starts with ">"). */
function selectedLine(frame: string): string {
  return frame.split('\n').find((l) => l.startsWith('>')) ?? '';
}

test('first paint at 80×24: header, crumb, overview, footer; every line fits', async () => {
  const r = await renderConsole(new FakeData());
  const f = await r.waitFor((x) => x.includes('alpha:main'), 'overview');
  assert.match(f, /runner up 1h01m · scheduler in-process/);
  assert.match(f, /queued 250 · runnable 12 · running 3/);
  assert.match(f, /x86_64-linux \[/);
  assert.match(f, /Overview/);
  assert.match(f, /aarch64-linux/);
  assert.match(f, /q quit/);
  const lines = f.split('\n');
  assert.ok(lines.length <= 24, `${lines.length} lines`);
  for (const l of lines) assert.ok(l.length <= 80, `too wide: ${l}`);
  await r.unmount();
});

test('60×15 stays legible; below it a notice replaces the screen and q still quits', async () => {
  const r = await renderConsole(new FakeData(), {columns: 60, rows: 15});
  await r.press('2');
  const f = await r.waitFor((x) => x.includes('pkg500'), 'builds at 60x15');
  const lines = f.split('\n');
  assert.ok(lines.length <= 15);
  for (const l of lines) assert.ok(l.length <= 60, `too wide: ${l}`);
  assert.match(f, /id/);
  assert.match(f, /status/);
  await r.unmount();

  const tiny = await renderConsole(new FakeData(), {columns: 50, rows: 12});
  assert.match(tiny.frame(), /terminal too small \(need 60×15, have 50×12\)/);
  await tiny.press('q');
  assert.equal(tiny.quitCalls, 1);
  await tiny.unmount();
});

test('navigation: number keys, j/k, arrows, g/G, page keys, tab; paging loads more rows from the source', async () => {
  const data = new FakeData({builds: 1000});
  const r = await renderConsole(data);
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg1000'), 'builds');
  assert.match(selectedLine(r.frame()), /1000/);
  await r.press('j', 'j', KEYS.down);
  assert.match(selectedLine(r.frame()), /\b997\b/);
  await r.press('k', KEYS.up);
  assert.match(selectedLine(r.frame()), /\b999\b/);
  // G jumps to the oldest build (a page fetched from the end).
  await r.press('G');
  await r.waitFor((f) => /^>\s+1 /m.test(f), 'bottom row');
  assert.match(r.frame(), /1,?\u2009?000 of 1\u2009000|1000 of 1000/);
  await r.press('g');
  await r.waitFor((f) => /^>\s+1000 /m.test(f), 'top row');
  // Paging far beyond the first window makes the controller fetch the following pages.
  for (let i = 0; i < 15; i++) await r.press(KEYS.pgdn);
  await r.waitFor((f) => {
    const m = /^>\s+(\d+) /m.exec(f);
    return m !== null && Number(m[1]) < 800;
  }, 'deep page');
  assert.ok(data.calls.some((c) => c.startsWith('pageBuilds after')), data.calls.join('\n'));
  // and back up again (rows before the window are fetched when it was trimmed)
  for (let i = 0; i < 15; i++) await r.press(KEYS.pgup);
  await r.waitFor((f) => /^>\s+1000 /m.test(f), 'top again');
  await r.press(KEYS.tab);
  await r.waitFor((f) => f.includes('Running steps'), 'tab to steps');
  await r.press('4');
  await r.waitFor((f) => f.includes('Machines'), 'machines');
  await r.press('5');
  await r.waitFor((f) => f.includes('Jobsets') && f.includes('beta:main'), 'jobsets');
  await r.press('1');
  await r.waitFor((f) => f.includes('Overview'), 'overview');
  await r.unmount();
});

test('a pasted chunk of keys is split into single keys', async () => {
  assert.deepEqual(toKeys('jjk', {}), ['j', 'j', 'k']);
  assert.deepEqual(toKeys(' ', {}), ['space']);
  assert.deepEqual(toKeys('d', {ctrl: true}), ['ctrl-d']);
  assert.deepEqual(toKeys('', {escape: true}), ['esc']);
  const r = await renderConsole(new FakeData());
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  r.stdinWrite('jjj');
  await r.waitFor((f) => /^>\s+497 /m.test(f), 'three rows down');
  await r.unmount();
});

test('filter: / applies the shared grammar, shows it in the crumb, reports a bad term with its column, esc clears', async () => {
  const data = new FakeData();
  const r = await renderConsole(data);
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  await r.press('/');
  await r.type('project:beta');
  assert.match(r.frame(), /\/project:beta/);
  await r.press(KEYS.enter);
  const f = await r.waitFor((x) => x.includes('filter: project:beta') && x.includes('pkg498'), 'filtered');
  assert.doesNotMatch(f, /pkg500/);
  assert.match(f, /of 166/);
  // A bad filter stays in the input with a caret report.
  await r.press('/');
  for (let i = 0; i < 20; i++) await r.press(KEYS.backspace);
  await r.type('colour:red');
  await r.press(KEYS.enter);
  const bad = await r.waitFor((x) => x.includes('filter error'), 'filter error');
  assert.match(bad, /column 1/);
  assert.match(bad, /\^/);
  await r.press(KEYS.esc);
  assert.match(r.frame(), /filter: project:beta/);
  // esc in the list clears the filter.
  await r.press(KEYS.esc);
  await r.waitFor((x) => x.includes('pkg500') && !x.includes('filter:'), 'filter cleared');
  await r.unmount();
});

test('drill-down: enter opens the build with steps and why it is not building; l opens the log; / n N search; esc goes back', async () => {
  const data = new FakeData({logLines: 300});
  const r = await renderConsole(data);
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  await r.press('j', 'j');
  await r.press(KEYS.enter);
  const d = await r.waitFor((f) => f.includes('build 498') && f.includes('Why'), 'detail');
  assert.match(d, /Why it is not building yet/);
  assert.match(d, /no machine with platform aarch64-linux/);
  assert.match(d, /dep-of-498/);
  await r.press('j');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('log of build 498 step 2'), 'log');
  assert.ok(data.calls.includes('openLog 498/2'));
  assert.match(r.frame(), /line 300 of the build output/);
  assert.match(r.frame(), /following/);
  await r.press('g');
  await r.waitFor((f) => /^\s+1 line 1 of/m.test(f), 'top of log');
  assert.doesNotMatch(r.frame(), /following/);
  await r.press('/');
  await r.type('line 150 ');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('match at line 150'), 'search hit');
  await r.press('n');
  await r.waitFor((f) => f.includes('not found: line 150'), 'no further match');
  // Search starts at the top of the screen, like less: from the top of the log here.
  await r.press('g', '/');
  await r.type('line 2');
  await r.press(KEYS.enter);
  await r.waitFor((f) => /match at line 2\b/.test(f), 'first match');
  await r.press('n');
  await r.waitFor((f) => /match at line 20\b/.test(f), 'next match');
  await r.press('N');
  await r.waitFor((f) => /match at line 2\b/.test(f), 'previous match');
  await r.press('w');
  assert.match(r.frame(), /wrap/);
  await r.press('f');
  await r.waitFor((f) => f.includes('following') && f.includes('line 300'), 'follow again');
  // Growth while following scrolls to the new lines.
  data.log.all.push('the very last line');
  data.log.grown = true;
  await r.waitFor((f) => f.includes('the very last line'), 'followed growth');
  await r.press(KEYS.esc);
  await r.waitFor((f) => f.includes('build 498') && f.includes('Why'), 'back to detail');
  await r.press(KEYS.esc);
  await r.waitFor((f) => f.includes('Builds (newest first)'), 'back to builds');
  await r.unmount();
});

test('cancel: ctrl-d shows the exact scope; n changes nothing; y runs the cancel on the selected build', async () => {
  const data = new FakeData();
  const r = await renderConsole(data);
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  await r.press('j', 'j', KEYS.ctrlD);
  const dlg = await r.waitFor((f) => f.includes('Cancel 1 build in alpha:main'), 'dialog');
  assert.match(dlg, /builds: 498/);
  assert.match(dlg, /y confirm/);
  assert.deepEqual(data.acts, [{kind: 'cancel', ids: [498], dryRun: true}]);
  await r.press('n');
  await r.waitFor((f) => f.includes('cancelled: nothing changed'), 'declined');
  assert.equal(data.acts.length, 1);
  await r.press(KEYS.ctrlD);
  await r.waitFor((f) => f.includes('Cancel 1 build'), 'dialog again');
  await r.press('y');
  await r.waitFor((f) => f.includes('cancel 1 of 1 build(s)'), 'result');
  assert.deepEqual(data.acts[2], {kind: 'cancel', ids: [498], dryRun: false});
  await r.unmount();
});

test('marks: space marks rows; r on several builds asks first; a large action needs the count typed', async () => {
  const many = Array.from({length: 150}, (_, i) => i + 1);
  const data = new FakeData({
    act: (req) => {
      const ids = req.dryRun && req.kind === 'bump' ? many : (req.ids ?? []);
      return {ok: true, message: `${req.dryRun ? 'would ' : ''}${req.kind} ${ids.length} build(s)`, changed: ids, targets: ids, scope: 'in 2 jobsets (alpha:main, beta:main) (150 not running, 0 running)'};
    },
  });
  const r = await renderConsole(data);
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  await r.press(' ', ' ');
  assert.match(r.frame(), /2 marked/);
  await r.press('r');
  const dlg = await r.waitFor((f) => f.includes('Restart 2 builds'), 'restart dialog');
  assert.match(dlg, /builds: 499, 500/);
  await r.press(KEYS.esc);
  assert.equal(data.acts.length, 1);
  assert.equal(data.acts[0]!.dryRun, true);
  // bump of 150 targets: typed confirmation
  await r.press('b');
  await r.waitFor((f) => f.includes('Type 150 to confirm'), 'typed confirmation');
  await r.type('15');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('type 150 exactly'), 'wrong count refused');
  assert.equal(data.acts.filter((a) => !a.dryRun).length, 0);
  await r.type('150');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('bump 150 build(s)'), 'bumped');
  assert.equal(data.acts.at(-1)!.dryRun, false);
  assert.equal(data.acts.at(-1)!.ids!.length, 150);
  assert.doesNotMatch(r.frame(), /marked/);
  await r.unmount();
});

test('single-build restart and bump run at once and report the outcome', async () => {
  const data = new FakeData();
  const r = await renderConsole(data);
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  await r.press('j', 'r');
  await r.waitFor((f) => f.includes('restart 1 of 1 build(s)'), 'restart result');
  assert.deepEqual(data.acts[0], {kind: 'restart', ids: [499]});
  await r.press('b');
  await r.waitFor((f) => f.includes('bump 1 of 1 build(s)'), 'bump result');
  assert.deepEqual(data.acts[1], {kind: 'bump', ids: [499]});
  await r.press('B');
  await r.waitFor(() => data.acts.length === 3, 'bump to the front');
  assert.deepEqual(data.acts[2], {kind: 'bump', ids: [499], toFront: true});
  await r.unmount();
});

test('read-only: actions are refused with the reason, and the footer shows them disabled', async () => {
  const data = new FakeData({caps: {readonly: 'read-only mode (from --readonly): mutations are disabled', admin: 'read-only'}});
  const r = await renderConsole(data);
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500') && f.includes('READ-ONLY'), 'builds');
  assert.match(r.frame(), /r restart \(read-only\)/);
  await r.press('r');
  await r.waitFor((f) => f.includes('restart: read-only mode (from --readonly)'), 'refusal');
  await r.press(KEYS.ctrlD);
  await r.waitFor((f) => f.includes('cancel: read-only mode'), 'cancel refusal');
  assert.equal(data.acts.length, 0);
  await r.unmount();
});

test('permission refusal from the action layer is shown, nothing else happens', async () => {
  const data = new FakeData({
    act: () => ({ok: false, refusal: 'permission', message: 'Hydra user "bob" may not cancel builds of project "alpha" (needs role "admin" or "cancel-build")'}),
  });
  const r = await renderConsole(data);
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  await r.press(KEYS.ctrlD);
  await r.waitFor((f) => f.includes('may not cancel builds of project'), 'permission message');
  assert.doesNotMatch(r.frame(), /y confirm/);
  await r.unmount();
});

test('machines: i pings the selected machine (also when read-only) and shows the verdict', async () => {
  const data = new FakeData({
    caps: {readonly: 'read-only mode (--readonly)'},
    act: (req) => ({ok: false, message: `${req.machine}: UNUSABLE — ✖ import-refused: the builder refused to import`}),
  });
  const r = await renderConsole(data);
  await r.press('4');
  await r.waitFor((x) => x.includes('builder2'), 'machines');
  await r.press('j', 'i');
  await r.waitFor(() => data.acts.length === 1, 'ping act');
  assert.deepEqual(data.acts[0], {kind: 'ping', machine: 'ssh://builder2'});
  await r.waitFor((x) => x.includes('import-refused'), 'verdict shown');
  await r.unmount();
});

test('pingSummary names problems with their fix, or the facts when all is well', () => {
  const base = {uri: 'ssh://b1', connectMs: 35, handshake: {version: '2.7', ms: 40}, canImport: true, canBuild: true, systems: ['x86_64-linux'], machineSystems: ['x86_64-linux'], features: [], machineFeatures: [], storeFreeBytes: 5 * 2 ** 30, nixVersion: '2.8.0'};
  assert.equal(pingSummary({...base, ok: true, problems: []} as never), 'ssh://b1: ok — connect 35 ms, protocol 2.7, Nix 2.8.0, 5.0 GiB free');
  const bad = pingSummary({...base, ok: false, canImport: false, problems: [{kind: 'import-refused', severity: 'error', message: 'not trusted', fix: 'add root to trusted-users'}]} as never);
  assert.match(bad, /^ssh:\/\/b1: UNUSABLE — ✖ import-refused: not trusted \(fix: add root to trusted-users\)/);
});

test('machines: E drains after confirmation, e enables; without admin both are refused', async () => {
  const data = new FakeData();
  const r = await renderConsole(data);
  await r.press('4');
  const f = await r.waitFor((x) => x.includes('builder2'), 'machines');
  assert.match(f, /backoff/);
  assert.match(f, /2\/4/);
  await r.press('E');
  await r.waitFor((x) => x.includes('Drain builder1?'), 'drain dialog');
  await r.press('y');
  await r.waitFor(() => data.acts.length === 1, 'drain act');
  assert.deepEqual(data.acts[0], {kind: 'drain', machine: 'ssh://builder1', dryRun: false});
  await r.press('j', 'e');
  await r.waitFor(() => data.acts.length === 2, 'enable act');
  assert.deepEqual(data.acts[1], {kind: 'enable', machine: 'ssh://builder2'});
  await r.unmount();

  const nonAdmin = new FakeData({caps: {admin: 'needs the admin role (user "bob")'}});
  const s = await renderConsole(nonAdmin);
  await s.press('4');
  await s.waitFor((x) => x.includes('builder2'), 'machines');
  assert.match(s.frame(), /E drain \(needs admin\)/);
  await s.press('E');
  await s.waitFor((x) => x.includes('drain: needs the admin role'), 'refused');
  assert.equal(nonAdmin.acts.length, 0);
  await s.unmount();
});

test('running steps: grouped by machine; a transfer phase older than an hour is flagged; enter drills down, l opens its log', async () => {
  const data = new FakeData();
  const r = await renderConsole(data, {theme: {color: true, unicode: true}, columns: 100, rows: 24});
  await r.press('3');
  const f = await r.waitFor((x) => x.includes('pkg12'), 'steps');
  const rows = f.split('\n').filter((l) => /pkg(4|8|12)\b/.test(l));
  assert.match(rows[0]!, /builder1/);
  assert.doesNotMatch(rows[1]!, /builder1/);
  assert.match(rows[1]!, /↑ sending\s+2h00m/);
  assert.match(rows[2]!, /builder2/);
  await r.press('j', 'l');
  await r.waitFor((x) => x.includes('log of build 8'), 'step log');
  assert.ok(data.calls.includes('openLog 8/2'));
  await r.unmount();
});

test('command mode: :steps, :log ID/STEP, :build ID, :queue, unknown commands; ? help; q quits', async () => {
  const data = new FakeData();
  const r = await renderConsole(data);
  await r.press(':');
  await r.type('steps');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('Running steps'), ':steps');
  await r.press(':');
  await r.type('log 5/1');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('log of build 5'), ':log');
  assert.ok(data.calls.includes('openLog 5/1'));
  await r.press('q');
  await r.waitFor((f) => f.includes('Running steps'), 'q from a sub-view goes back');
  await r.press(':');
  await r.type('build 7');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('build 7 '), ':build');
  await r.press(':');
  await r.type('queue');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('Builds (queue order)') && selectedLine(f) !== '', ':queue');
  // queue order: bumped builds first
  assert.match(selectedLine(r.frame()), /\b(22|44|66|88|110)\b|▲/);
  await r.press(':');
  await r.type('nonsense');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('unknown command :nonsense'), 'unknown');
  await r.press('?');
  await r.waitFor((f) => f.includes('Actions') && f.includes('ctrl-d'), 'help');
  await r.press('x');
  await r.waitFor((f) => !f.includes('Actions'), 'help closed');
  await r.press(':');
  await r.type('q');
  await r.press(KEYS.enter);
  assert.equal(r.quitCalls, 1);
  await r.unmount();
});

test('a log that does not exist yet is an explanation, not a crash', async () => {
  const r = await renderConsole(new FakeData());
  await r.press(':');
  await r.type('log 999999');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('has not started yet: no log so far'), 'no log message');
  await r.unmount();
});

test('checks: the empty state explains checks; c says they are not available yet', async () => {
  const r = await renderConsole(new FakeData());
  await r.press('6');
  await r.waitFor((f) => f.includes('No reproducibility checks recorded'), 'checks empty');
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  await r.press('c');
  await r.waitFor((f) => f.includes('check: reproducibility checks are not available yet'), 'c refused');
  await r.unmount();
});

test('checks: enter on a check opens its diff in the log viewer; a check without a diff says so', async () => {
  const data = new FakeData({
    checks: [
      {id: 7, build: 12, drvPath: '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-stamp.drv', originalMachine: 'ssh://b1', checkMachine: 'ssh://b2', verdict: 'not-reproducible', differing: ['out'], diffLogPath: '/tmp/checks/7/diff.log', startedAt: '2026-01-15T11:00:00Z'},
      {id: 6, build: 11, drvPath: '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-hello.drv', originalMachine: 'ssh://b1', checkMachine: 'ssh://b2', verdict: 'reproducible', differing: [], diffLogPath: null, startedAt: '2026-01-15T10:00:00Z'},
    ],
  });
  const r = await renderConsole(data);
  await r.press('6');
  await r.waitFor((f) => f.includes('stamp') && f.includes('hello'), 'checks listed');
  await r.press(KEYS.enter);
  await r.waitFor(() => data.calls.includes('openFile /tmp/checks/7/diff.log'), 'diff opened');
  await r.waitFor((f) => f.includes('log of build 12'), 'log view shows the diff');
  await r.press(KEYS.esc);
  await r.waitFor((f) => f.includes('stamp') && f.includes('hello'), 'back to checks');
  await r.press('j');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('check 6: reproducible — no diff to show'), 'no diff message');
  await r.unmount();
});

test('audit view lists actions newest first', async () => {
  const data = new FakeData();
  data.audit = [
    {id: 2, at: '2026-01-15T11:59:00Z', hydraUser: 'alice', unixUser: 'root', action: 'cancel', scope: 'build 498', targetCount: 1, resultCount: 1, outcome: 'ok', message: null},
    {id: 1, at: '2026-01-15T11:58:00Z', hydraUser: 'bob', unixUser: 'bob', action: 'restart', scope: 'build 3', targetCount: 1, resultCount: 0, outcome: 'refused', message: 'read-only'},
  ];
  const r = await renderConsole(data);
  await r.press('7');
  const f = await r.waitFor((x) => x.includes('alice'), 'audit');
  assert.ok(f.indexOf('alice') < f.indexOf('bob'));
  assert.match(f, /refused/);
  await r.unmount();
});

test('live updates: a change event refreshes the visible window; p pauses them and the header says so', async () => {
  const data = new FakeData();
  const r = await renderConsole(data);
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  data.builds.push({...data.builds[0]!, id: 501, job: 'fresh-build'});
  data.emit('queue');
  await r.waitFor((f) => f.includes('fresh-build'), 'new build appears');
  await r.press('p');
  await r.waitFor((f) => f.includes('PAUSED'), 'paused');
  data.builds.push({...data.builds[0]!, id: 502, job: 'while-paused'});
  data.emit('queue');
  await new Promise((res) => setTimeout(res, 120));
  assert.doesNotMatch(r.frame(), /while-paused/);
  await r.press('p');
  await r.waitFor((f) => f.includes('while-paused') && !f.includes('PAUSED'), 'resumed');
  await r.unmount();
});

test('header turns into a stall alarm when runnable work has not progressed', async () => {
  const data = new FakeData({header: {progress: {stalled: true, stalledSeconds: 720, thresholdSeconds: 300, lastProgressAt: NOW - 720_000}}});
  const r = await renderConsole(data, {theme: {color: true, unicode: true}});
  const f = await r.waitFor((x) => x.includes('STALLED'), 'stall');
  assert.match(f, /STALLED: no progress for 12m00s with 12 runnable/);
  await r.unmount();
});

test('header in attach mode and with the runner down says so', async () => {
  const data = new FakeData({header: {mode: 'attached', modeNote: 'runner pid 4242 (127.0.0.1:8081)', runnerUp: false}});
  const r = await renderConsole(data);
  await r.waitFor((x) => x.includes('attached to runner pid 4242'), 'attached');
  assert.match(r.frame(), /runner DOWN/);
  await r.unmount();
});

test('NO_COLOR and the ASCII fallback', async () => {
  assert.equal(themeFromEnv({NO_COLOR: '1', LANG: 'en_US.UTF-8'}).color, false);
  assert.equal(themeFromEnv({LANG: 'en_US.UTF-8'}).color, true);
  assert.equal(themeFromEnv({LANG: 'C'}).unicode, false);
  assert.equal(themeFromEnv({LANG: 'en_US.UTF-8'}, {ascii: true}).unicode, false);
  assert.equal(statusStyle({color: false, unicode: false}, {finished: false, buildstatus: null}).glyph, '-');
  assert.equal(statusStyle({color: false, unicode: false}, {finished: true, buildstatus: 4}).glyph, 'c');
  const r = await renderConsole(new FakeData(), {theme: {color: false, unicode: false}});
  await r.press('2');
  const f = await r.waitFor((x) => x.includes('pkg500'), 'builds');
  assert.match(f, /- queued/);
  assert.match(f, /ok success/);
  assert.match(f, /\[##/);
  assert.doesNotMatch(f, /[⏸✔⏵█]/);
  await r.unmount();
  // with colours on, the frame carries ANSI colour codes; with NO_COLOR it has none
  const {render} = await import('ink-testing-library');
  void render;
});

test('sparkline and column fitting', () => {
  const t = {color: false, unicode: true};
  assert.equal(sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8, t), '▁▂▃▄▅▆▇█');
  assert.equal(sparkline([], 4, t), '    ');
  assert.equal(sparkline(Array.from({length: 100}, (_, i) => (i === 50 ? 10 : 0)), 10, t).includes('█'), true);
  const cols = [
    {title: 'a', width: 10},
    {title: 'b', width: 20, flex: true},
    {title: 'c', width: 10, drop: 1},
    {title: 'd', width: 10, drop: 2},
  ];
  assert.deepEqual(fitColumns(cols, 40).map((c) => c.index), [0, 1]);
  assert.equal(fitColumns(cols, 100).find((c) => c.index === 1)!.width, 67);
});

test('the console refuses to start without a terminal, with a message naming the problem', () => {
  assert.match(terminalProblem({isTTY: true}, {isTTY: undefined})!, /standard output is not one/);
  assert.match(terminalProblem({isTTY: undefined}, {isTTY: true})!, /standard input is not one/);
  assert.equal(terminalProblem({isTTY: true}, {isTTY: true}), null);
});

test('stdin without raw mode: the app renders and ignores input instead of crashing', async () => {
  const React = (await import('react')).default;
  const {render} = await import('ink');
  const {PassThrough} = await import('node:stream');
  const {App} = await import('../source/ui/app.js');
  const {ConsoleController} = await import('../source/ui/state/controller.js');
  const stdout = new PassThrough() as unknown as NodeJS.WriteStream & {columns: number; rows: number};
  stdout.columns = 80;
  stdout.rows = 24;
  let out = '';
  (stdout as unknown as InstanceType<typeof PassThrough>).on('data', (d: Buffer) => (out += d.toString()));
  const stdin = new PassThrough() as unknown as NodeJS.ReadStream; // isTTY undefined: no raw mode
  const c = new ConsoleController(new FakeData(), {size: {columns: 80, rows: 24}});
  const ink = render(React.createElement(App, {controller: c, theme: {color: false, unicode: true}, size: {columns: 80, rows: 24}, clockMs: 0}), {stdout, stdin, patchConsole: false, exitOnCtrlC: false});
  c.start();
  await new Promise((res) => setTimeout(res, 50));
  ink.unmount();
  await c.stop();
  assert.match(out, /hydra-ops/);
});

test('starting in the builds view shows the total; fast page keys over a slow source are not lost', async () => {
  const data = new FakeData({builds: 1000});
  const page = data.pageBuilds.bind(data);
  data.pageBuilds = async (q) => {
    await new Promise((res) => setTimeout(res, 40));
    return page(q);
  };
  const r = await renderConsole(data, {controller: {view: 'builds'}});
  await r.waitFor((f) => /— 1 of 1\u2009000/.test(f), 'total on the first view');
  // 18 rows a page at 80×24: six pages down is row 109 (id 892), far past the first 50 loaded rows.
  for (let i = 0; i < 6; i++) r.stdinWrite(KEYS.pgdn);
  await r.waitFor((f) => /^>\s+892 /m.test(f), 'selection completed after the pages arrived', 5000);
  assert.match(r.frame(), /109 of 1\u2009000/);
  await r.unmount();
});

test('evals: 8 shows evaluations with member counts; enter lists its builds; r and ctrl-d confirm the eval-wide scope; refusals and 60×15', async () => {
  const data = new FakeData({
    act: (req) => {
      const ids = req.kind === 'cancel-eval' ? [2, 4, 6] : [1, 3];
      return {ok: true, message: `eval ${req.eval}: ${req.dryRun ? 'would ' : ''}${req.kind} ${ids.length} build(s)`, changed: ids, targets: ids, scope: 'in beta:main (3 not running, 0 running)'};
    },
  });
  const r = await renderConsole(data);
  await r.press('8');
  const f = await r.waitFor((x) => x.includes('Evals') && /^>\s+30 /m.test(x), 'evals');
  assert.match(f, /id\s+project:jobset\s+time\s+builds\s+new\s+succeeded\s+failed\s+queued/);
  assert.match(selectedLine(f), /30\s+beta:main\s+\S+\s+20\s+5\s+12\s+3\s+5/);
  assert.match(f, /Evals — 30/);
  assert.match(f, /r restart failed/);
  // An eval with an error shows it.
  await r.press('j', 'j');
  assert.match(selectedLine(r.frame()), /^>\s+28 /);
  await r.press('k', 'k');
  await r.press('r');
  const dlg = await r.waitFor((x) => x.includes('Restart 2 failed builds of eval 30 in beta:main'), 'restart-failed dialog');
  assert.match(dlg, /builds: 1, 3/);
  assert.deepEqual(data.acts[0], {kind: 'restart-failed', eval: 30, dryRun: true});
  await r.press('y');
  await r.waitFor((x) => x.includes('eval 30: restart-failed 2 build(s)'), 'restarted');
  assert.deepEqual(data.acts[1], {kind: 'restart-failed', eval: 30, dryRun: false});
  await r.press(KEYS.ctrlD);
  await r.waitFor((x) => x.includes('Cancel 3 queued builds of eval 30'), 'cancel-eval dialog');
  await r.press('n');
  await r.waitFor((x) => x.includes('cancelled: nothing changed'), 'declined');
  assert.equal(data.acts.length, 3);
  await r.press(KEYS.enter);
  const b = await r.waitFor((x) => x.includes('filter: eval:30'), 'builds of the eval');
  assert.match(b, /Evals › Builds/);
  assert.ok(data.calls.some((c) => c === 'pageBuilds start eval:30'), data.calls.join('\n'));
  await r.press(KEYS.esc, KEYS.esc);
  await r.waitFor((x) => /^>\s+30 /m.test(x) && x.includes('Evals'), 'back to evals');
  await r.unmount();

  const ro = await renderConsole(new FakeData({caps: {readonly: 'read-only mode (from --readonly): mutations are disabled'}}), {columns: 60, rows: 15});
  await ro.press('8');
  const small = await ro.waitFor((x) => /^>\s+30 /m.test(x), 'evals at 60x15');
  for (const l of small.split('\n')) assert.ok(l.length <= 60, `too wide: ${l}`);
  assert.ok(small.split('\n').length <= 15);
  assert.match(small, /failed/);
  await ro.press('r');
  await ro.waitFor((x) => x.includes('eval action: read-only mode'), 'refusal');
  await ro.unmount();

  // Wide enough, the evaluation error shows (it is the first column dropped when narrow).
  const wide = await renderConsole(new FakeData(), {columns: 120, rows: 30});
  await wide.press('8');
  const w = await wide.waitFor((x) => /^>\s+30 /m.test(x), 'evals at 120 columns');
  assert.match(w, /^\s+28 .*error: attribute mi/m);
  assert.match(w, /^\s+20 .*\(no changes\)$/m);
  await wide.unmount();
});

test('runner: :runner shows dispatch, ingestion, wake-ups, DB pool, retries and unsupported steps from the runner; without one it says so', async () => {
  const data = new FakeData();
  const r = await renderConsole(data);
  await r.press(':');
  await r.type('runner');
  await r.press(KEYS.enter);
  const f = await r.waitFor((x) => x.includes('dispatch rounds'), 'runner view');
  assert.match(f, /source\s+in-process scheduler · data 1s old/);
  assert.match(f, /dispatch rounds\s+4[,\u2009]?321 · total 8[,\u2009]?642 ms · avg 2\.0 ms · last 3\.0 ms/);
  assert.match(f, /ingestion\s+1[,\u2009]?500 builds read · 2\.0 ms per build · 25\.0\/s now/);
  assert.match(f, /queue wake-ups\s+77/);
  assert.match(f, /DB pool\s+6 open · 4 idle · 2 in use · 0 waiting/);
  assert.match(f, /retries\s+9 · most for one step 3/);
  assert.match(f, /unsupported\s+2 steps without a capable machine · 1 failed as unsupported/);
  // Live: a runner change re-reads it.
  const before = data.calls.filter((c) => c === 'runnerStats').length;
  data.emit('runner');
  await r.waitFor(() => data.calls.filter((c) => c === 'runnerStats').length > before, 'refresh');
  await r.unmount();

  const none = await renderConsole(new FakeData({runner: null}), {columns: 60, rows: 15});
  await none.press(':');
  await none.type('runner');
  await none.press(KEYS.enter);
  const n = await none.waitFor((x) => x.includes('no runner data'), 'no runner');
  for (const l of n.split('\n')) assert.ok(l.length <= 60, `too wide: ${l}`);
  await none.unmount();
});

test('x opens the action menu of the view; enter runs the chosen line; y copies via OSC 52 and shows the text; o opens or shows the URL', async () => {
  const written: string[] = [];
  const opened: string[] = [];
  const data = new FakeData();
  const r = await renderConsole(data, {controller: {terminal: (s) => written.push(s), hydraUrl: 'https://hydra.example.org/', openUrl: async (u) => (opened.push(u), false)}});
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  await r.press('x');
  const menu = await r.waitFor((f) => f.includes('Actions — enter runs'), 'menu');
  for (const line of [/restart/, /cancel/, /bump \(Hydra\)/, /bump above every existing bump/, /y\s+copy the drv path/, /o\s+open in Hydra's web UI/]) assert.match(menu, line);
  assert.match(menu, /j\/k choose/);
  // Choose "cancel" by moving to it: the same dialog as ctrl-d.
  const lines = menu.split('\n').filter((l) => /^[> ] \S/.test(l));
  const idx = lines.findIndex((l) => /^[> ] ctrl-d /.test(l));
  assert.ok(idx >= 0, menu);
  for (let i = 0; i < idx; i++) await r.press('j');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('Cancel 1 build in alpha:main'), 'cancel dialog from the menu');
  await r.press('n');
  await r.press('y');
  const copied = await r.waitFor((f) => f.includes('aaaa500-pkg500.drv — drv path copied'), 'copied');
  assert.match(copied, /\/nix\/store\/a+500-pkg500\.drv/);
  assert.deepEqual(written, [`\u001B]52;c;${Buffer.from(data.builds[499]!.drvpath).toString('base64')}\u0007`]);
  await r.press('o');
  await r.waitFor((f) => f.includes('https://hydra.example.org/build/500 — no browser here'), 'url shown');
  assert.deepEqual(opened, ['https://hydra.example.org/build/500']);
  await r.unmount();

  const bare = await renderConsole(new FakeData(), {columns: 60, rows: 15});
  await bare.press('8');
  await bare.waitFor((f) => /^>\s+30 /m.test(f), 'evals');
  await bare.press('o');
  await bare.waitFor((f) => f.includes('open: set the web UI address first'), 'no hydraUrl');
  await bare.press('y');
  await bare.waitFor((f) => f.includes('30 — eval id 30 copy it from here'), 'copy fallback without a terminal hook');
  await bare.press('x');
  const small = await bare.waitFor((f) => f.includes('Actions'), 'menu at 60x15');
  for (const l of small.split('\n')) assert.ok(l.length <= 60, `too wide: ${l}`);
  assert.ok(small.split('\n').length <= 15);
  await bare.press(KEYS.esc);
  await bare.waitFor((f) => !f.includes('Actions — enter'), 'menu closed');
  await bare.unmount();
});

test('s cycles the sort column, S reverses it: every order is read from the source, never sorted here; 60×15 and 80×24', async () => {
  for (const size of [{columns: 80, rows: 24}, {columns: 60, rows: 15}]) {
    const data = new FakeData({builds: 300});
    const r = await renderConsole(data, size);
    await r.press('2');
    await r.waitFor((f) => f.includes('Builds (newest first)') && /^>\s+300 /m.test(f), 'newest first');
    await r.press('s');
    // queue order: bumped builds (every 11th) first, lowest id first among them
    await r.waitFor((f) => f.includes('(queue order)') && /^>\s+22 /m.test(f), 'queue order');
    assert.ok(data.calls.includes('pageBuilds start  [queue]'), data.calls.join('\n'));
    await r.press('S');
    await r.waitFor((f) => f.includes('(queue order, last first)') && /^>\s+300 /m.test(f), 'queue order reversed');
    await r.press('s');
    await r.waitFor((f) => f.includes('(finished, latest first)') && /^>\s+299 /m.test(f), 'latest finished');
    // G in a reversed order is a page read from the other end, and paging down crosses pages by keyset.
    await r.press('S');
    await r.waitFor((f) => f.includes('(finished, earliest first)') && /^>\s+1 /m.test(f), 'earliest finished');
    for (let i = 0; i < 12; i++) await r.press(KEYS.pgdn);
    await r.waitFor(() => data.calls.some((c) => c.startsWith('pageBuilds after') && c.endsWith('[stoptime reversed]')), 'keyset page in reversed order');
    await r.press('s');
    await r.waitFor((f) => f.includes('(newest first)') && /^>\s+300 /m.test(f), 'back to newest first');
    const lines = r.frame().split('\n');
    assert.ok(lines.length <= size.rows);
    for (const l of lines) assert.ok(l.length <= size.columns, `too wide: ${l}`);
    // s in a view without sorting says where it works.
    await r.press('4');
    await r.press('s');
    await r.waitFor((f) => f.includes('sorting works in the Builds view'), 'refusal elsewhere');
    await r.unmount();
  }
});

test('ctrl-space marks a range from the last mark; a marks every build matching the filter, counted in the source; bulk actions confirm the exact count', async () => {
  const data = new FakeData({builds: 500});
  const r = await renderConsole(data, {columns: 80, rows: 24});
  await r.press('2');
  await r.waitFor((f) => /^>\s+500 /m.test(f), 'builds');
  // No mark yet: ctrl-space (NUL from the terminal) starts the range here.
  await r.press('\u0000');
  await r.waitFor((f) => f.includes('range starts here') && f.includes('1 marked'), 'range start');
  await r.press('j', 'j', 'j', '\u0000');
  await r.waitFor((f) => f.includes('marked 4 rows (4 marked)'), 'range marked');
  await r.press(KEYS.ctrlD);
  await r.waitFor((f) => f.includes('Cancel 4 builds'), 'cancel dialog for the range');
  assert.deepEqual(data.acts.at(-1)!.ids, [497, 498, 499, 500]);
  await r.press(KEYS.esc, KEYS.esc);
  await r.waitFor((f) => !f.includes('marked'), 'esc clears the marks');
  // a: the selection is the filter (here with queue order's scope), counted in the source.
  await r.press('/');
  await r.type('project:beta');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('filter: project:beta'), 'filtered');
  await r.press('s');
  await r.waitFor((f) => f.includes('(queue order)'), 'queue order');
  await r.press('a');
  const expected = data.builds.filter((b) => b.project === 'beta' && b.finished === 0).length;
  await r.waitFor((f) => f.includes(`all ${expected} matching marked`), 'mark-all count');
  assert.ok(data.calls.includes('countBuilds project:beta status:queued [id-desc]'), data.calls.join('\n'));
  // space and ctrl-space say what is marked instead of changing it
  await r.press(' ');
  await r.waitFor((f) => f.includes('every build matching the filter is marked'), 'space while all are marked');
  // bump: previewed on the filter, then the exact count typed (above 100? here below: y/N)
  await r.press('b');
  await r.waitFor((f) => f.includes(`Bump ${expected} builds`), 'bump dialog');
  const preview = data.acts.at(-1)!;
  assert.deepEqual({filter: preview.filter, dryRun: preview.dryRun, ids: preview.ids}, {filter: 'project:beta status:queued', dryRun: true, ids: undefined});
  assert.match(r.frame(), /all builds matching: project:beta status:queued/);
  await r.press('y');
  await r.waitFor(() => data.acts.some((a) => !a.dryRun), 'bumped');
  assert.equal(data.acts.at(-1)!.ids!.length, expected);
  assert.equal(data.acts.at(-1)!.filter, undefined, 'the confirmed action runs on the ids counted');
  await r.waitFor((f) => !f.includes('matching marked'), 'marks cleared after the action');
  // c refuses a mark-all (one build at a time)
  await r.press('a');
  await r.waitFor((f) => f.includes('matching marked'), 'marked again');
  await r.press('c');
  await r.waitFor((f) => /check: /.test(f), 'check refused');
  await r.unmount();

  // Above the threshold the count must be typed: all 500 builds with no filter.
  const big = new FakeData({builds: 500});
  const b = await renderConsole(big, {columns: 60, rows: 15});
  await b.press('2');
  await b.waitFor((f) => /^>\s+500 /m.test(f), 'builds');
  await b.press('a');
  await b.waitFor((f) => f.includes('all 500 matching marked'), 'all marked at 60×15');
  await b.press('r');
  await b.waitFor((f) => f.includes('Type 500 to confirm'), 'typed confirmation');
  await b.press('y');
  assert.equal(big.acts.filter((a) => !a.dryRun).length, 0, 'y does not confirm a typed dialog');
  await b.type('500');
  await b.press(KEYS.enter);
  await b.waitFor(() => big.acts.some((a) => !a.dryRun), 'restarted');
  assert.equal(big.acts.at(-1)!.ids!.length, 500);
  for (const l of b.frame().split('\n')) assert.ok(l.length <= 60, `too wide: ${l}`);
  await b.unmount();
});

test('d opens the diff of the selected build\'s last check in the log viewer; no check or no diff is a clear refusal; 60×15', async () => {
  const data = new FakeData({
    checks: [
      {id: 9, build: 500, drvPath: '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-pkg500.drv', originalMachine: 'ssh://b1', checkMachine: 'ssh://b2', verdict: 'not-reproducible', differing: ['out'], diffLogPath: '/tmp/checks/9/diff.log', startedAt: '2026-01-15T11:00:00Z'},
      {id: 4, build: 500, drvPath: '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-pkg500.drv', originalMachine: 'ssh://b1', checkMachine: 'ssh://b2', verdict: 'not-reproducible', differing: ['out'], diffLogPath: '/tmp/checks/4/diff.log', startedAt: '2026-01-15T10:00:00Z'},
      {id: 3, build: 498, drvPath: '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-pkg498.drv', originalMachine: 'ssh://b1', checkMachine: 'ssh://b2', verdict: 'reproducible', differing: [], diffLogPath: null, startedAt: '2026-01-15T10:00:00Z'},
    ],
  });
  const r = await renderConsole(data, {columns: 60, rows: 15});
  await r.press('2');
  await r.waitFor((f) => /^>\s+500 /m.test(f), 'builds');
  await r.press('d');
  await r.waitFor(() => data.calls.includes('openFile /tmp/checks/9/diff.log'), 'the latest check\'s diff opened');
  await r.waitFor((f) => f.includes('log of build 500'), 'log viewer');
  await r.press(KEYS.esc);
  await r.waitFor((f) => /^>\s+500 /m.test(f), 'back');
  await r.press('j');
  await r.press('d');
  await r.waitFor((f) => f.includes('diff: build 499 has no reproducibility'), 'no check');
  await r.press('j');
  await r.press('d');
  await r.waitFor((f) => f.includes('check 3: reproducible — no diff to show'), 'no diff');
  for (const l of r.frame().split('\n')) assert.ok(l.length <= 60, `too wide: ${l}`);
  // Where no build is selected (machines), d says so.
  await r.press('4');
  await r.press('d');
  await r.waitFor((f) => f.includes('diff: no build selected here'), 'elsewhere');
  await r.unmount();
});
