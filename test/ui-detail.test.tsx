// The build detail pane's tabs with ink-testing-library and the fake data source: `[` / `]` through Summary,
// Steps, Log, Deps and History at 80×24 (full-screen) and 160×40 (beside the table), `enter` per tab, and the
// refusals (tabs outside a build, the log of a step that has not started).
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {FakeData} from './support/ui-fake.js';
import {KEYS, renderConsole} from './support/ui-render.js';

function fits(frame: string, columns: number, rows: number): void {
  const lines = frame.split('\n');
  assert.ok(lines.length <= rows, `${lines.length} lines > ${rows}`);
  for (const l of lines) assert.ok(l.length <= columns, `too wide (${l.length}): ${l}`);
}

test('80×24: the detail is full-screen; [ and ] cycle Summary, Steps, Log, Deps, History and wrap', async () => {
  const data = new FakeData({logLines: 300});
  const r = await renderConsole(data);
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  await r.press('j', 'j', KEYS.enter);
  let f = await r.waitFor((x) => x.includes('build 498') && x.includes('[Summary]'), 'summary tab');
  assert.doesNotMatch(f, /pkg500/, 'full-screen: the table is gone at 80 columns');
  assert.match(f, /latest ok: build 496 · hydra-ops latest beta\/main\/pkg498$/m);
  assert.match(f, /Why it is not building yet/);
  assert.match(f, /\[\/\] tabs/, 'footer names the tab keys');
  fits(f, 80, 24);

  await r.press(']');
  f = await r.waitFor((x) => x.includes('[Steps]'), 'steps tab');
  assert.match(f, /started/);
  assert.match(f, /dep-of-498/);
  assert.match(f, /Builds › build 498 · Steps/);
  fits(f, 80, 24);

  await r.press(']');
  f = await r.waitFor((x) => x.includes('[Log]') && x.includes('line 300 of the build output'), 'log tab tail');
  assert.match(f, /step 1 · last \d+ of 300 lines/);
  assert.ok(data.calls.includes('openLog 498/1'), data.calls.join(', '));
  fits(f, 80, 24);
  // enter opens the full log viewer on that step; esc comes back to the same tab.
  await r.press(KEYS.enter);
  await r.waitFor((x) => x.includes('log of build 498 step 1'), 'full log');
  await r.press(KEYS.esc);
  await r.waitFor((x) => x.includes('[Log]'), 'back on the Log tab');

  await r.press(']');
  f = await r.waitFor((x) => x.includes('[Deps]'), 'deps tab');
  assert.match(f, /waiting for libfoo-for-498 on ssh:\/\/builder2/);
  assert.match(f, /libbar-for-498/);
  assert.match(f, /waiting for 1 dependency/);
  assert.match(f, /pkg498 \(this build\)/);
  fits(f, 80, 24);
  // The running dependency has a step row: enter opens its log. The waiting one has none: refused with the reason.
  await r.press(KEYS.enter);
  await r.waitFor((x) => x.includes('log of build 498 step 3'), 'log of the running dependency');
  await r.press(KEYS.esc);
  await r.waitFor((x) => x.includes('[Deps]'), 'deps again');
  await r.press('j', KEYS.enter);
  await r.waitFor((x) => x.includes('libbar-for-498 has not started: no log yet'), 'refusal for a step without a row');

  await r.press(']');
  f = await r.waitFor((x) => x.includes('[History]'), 'history tab');
  assert.match(f, /duration \(oldest → newest\) [▁▂▃▄▅▆▇█]+/);
  assert.match(f, /last 12: 9 ok, 3 failed/);
  assert.match(f, /j\/k build  enter open build  \[\/\] tabs/, 'the footer says what j/k and enter do in this tab');
  assert.match(f, /^>\s+498\* .*✔ success .*12m00s/m);
  assert.match(f, /497 .*⚠ failed .*11m00s/);
  fits(f, 80, 24);

  await r.press(']');
  await r.waitFor((x) => x.includes('[Summary]'), 'wraps to Summary');
  await r.press('[');
  await r.waitFor((x) => x.includes('[History]'), '[ goes back, wrapping');
  await r.unmount();
});

test('160×40: the detail pane sits beside the builds table; History enter shows another build in the same pane', async () => {
  const data = new FakeData();
  const r = await renderConsole(data, {columns: 160, rows: 40});
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  await r.press('j', KEYS.enter);
  let f = await r.waitFor((x) => x.includes('build 499') && x.includes('[Summary]'), 'side pane');
  // One screen line holds a row of the table and a line of the pane.
  assert.ok(
    f.split('\n').some((l) => /pkg500/.test(l) && /\[Summary\]/.test(l)),
    `table and pane on the same lines:\n${f}`,
  );
  assert.match(f, /^>.*pkg499/m, 'the table keeps the selected row');
  fits(f, 160, 40);
  await r.press('[');
  f = await r.waitFor((x) => x.includes('[History]'), 'history in the pane');
  assert.ok(f.split('\n').some((l) => /pkg\d+/.test(l) && /duration \(oldest → newest\)/.test(l)), f);
  assert.match(f, /latest ok: build 499 \(this one\)|last 12: 9 ok, 3 failed/);
  fits(f, 160, 40);
  await r.press('j', KEYS.enter);
  f = await r.waitFor((x) => x.includes('build 498 ⏸ queued') && x.includes('[History]'), 'another build of the job, same tab');
  assert.match(f, /Builds › build 498 · History/, 'replaced in place: the back stack is still the table');
  await r.press(KEYS.esc);
  await r.waitFor((x) => x.includes('Builds (newest first)') && !x.includes('[History]'), 'esc: back to the table alone');
  await r.unmount();
});

test('tab keys outside a build detail say where they work; a build with no steps says there is no log', async () => {
  const data = new FakeData();
  const r = await renderConsole(data);
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  await r.press(']');
  await r.waitFor((f) => f.includes('tabs: open a build first'), 'refusal in the builds view');
  await r.press('[');
  assert.match(r.frame(), /tabs: open a build first/);
  // A build the data source has no steps for.
  data.buildDetail = async (id) => ({...(await FakeData.prototype.buildDetail.call(data, id))!, steps: [], history: [], deps: []});
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('build 500') && f.includes('no steps recorded yet'), 'detail without steps');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('build 500 has no steps yet: no log'), 'enter refuses with the reason');
  await r.press('[');
  await r.waitFor((f) => f.includes('no finished build of pkg500 yet'), 'empty history explains itself');
  await r.press('[');
  await r.waitFor((f) => f.includes('[Deps]') && f.includes('no steps known yet'), 'deps of a build with no steps');
  await r.unmount();
});
