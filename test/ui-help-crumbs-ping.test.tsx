// The smaller pieces of the console spec: the `?` help is searchable (`/`) and contextual (keys that do not act
// in the current view are dim), the crumb says where the build is (project:jobset › job › step), and the
// Machines view has a last-ping column. Key paths with ink-testing-library over the fake data source.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {FakeData} from './support/ui-fake.js';
import {KEYS, renderConsole} from './support/ui-render.js';
import {helpLines} from '../source/ui/state/help.js';

test('? then / narrows the help to the lines containing the text; enter keeps it, esc brings the whole help back, another key closes it', async () => {
  const r = await renderConsole(new FakeData());
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  await r.press('?');
  await r.waitFor((f) => f.includes('Actions') && f.includes('/ search the help'), 'help with its search hint');
  await r.press('/');
  await r.type('timest');
  const found = await r.waitFor((f) => f.includes('help /timest'), 'typing');
  assert.match(found, /^Log$/m);
  assert.match(found, /^ {2}t {14}timestamps/m);
  assert.doesNotMatch(found, /^Actions$/m, 'sections without a match are left out');
  await r.press(KEYS.enter);
  await r.waitFor((f) => !f.includes('help /timest') && f.includes('timestamps'), 'search kept');
  await r.press('/');
  await r.type('zzzz');
  await r.waitFor((f) => f.includes('nothing in the help contains "zzzz"'), 'no match says so');
  await r.press(KEYS.esc);
  await r.waitFor((f) => f.includes('Actions') && f.includes('Global'), 'whole help again');
  // The `:` commands are in the help too, searchable.
  await r.press('/');
  await r.type('runner');
  await r.waitFor((f) => /^Commands$/m.test(f) && f.includes(':runner :scheduler'), 'commands');
  await r.press(KEYS.enter, 'x');
  await r.waitFor((f) => f.includes('Builds (newest first)') && !f.includes('Commands'), 'closed');
  assert.equal(r.controller.getState().mode, 'normal');
  await r.unmount();
});

test('the help is contextual: keys that do not act in the current view are marked', () => {
  const inBuilds = helpLines('builds', null);
  const line = (re: RegExp) => inBuilds.find((l) => re.test(l.text))!;
  assert.equal(line(/^ {2}f {14}follow/).elsewhere, true, 'f follows logs only');
  assert.equal(line(/^ {2}r {14}restart/).elsewhere, false);
  assert.equal(line(/^ {2}e E /).elsewhere, true, 'machines only');
  assert.equal(helpLines('machines', null).find((l) => /^ {2}e E /.test(l.text))!.elsewhere, false);
  assert.deepEqual(helpLines('builds', 'ping').map((l) => l.text.trim().split(/\s+/)[0]), ['Actions', 'i']);
});

test('the crumb says where the build is: the way back, the tab, then project:jobset › job › step', async () => {
  const r = await renderConsole(new FakeData());
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  await r.press('j', 'j', KEYS.enter);
  await r.waitFor((f) => f.includes('Builds › build 498 · Summary · beta:main › pkg498 › step 1'), 'crumb with the step');
  await r.press('j');
  await r.waitFor((f) => f.includes('· beta:main › pkg498 › step 2'), 'the selected step');
  await r.press(']', ']');
  await r.waitFor((f) => /Builds › build 498 · Log · beta:main › pkg498$/m.test(f), 'no step on the Log tab');
  await r.unmount();
});

test('Machines: the last ping, how long ago and its verdict, where the width allows', async () => {
  const r = await renderConsole(new FakeData(), {columns: 120});
  await r.press('4');
  const f = await r.waitFor((x) => x.includes('builder2') && x.includes('ping'), 'machines at 120 columns');
  assert.match(f.split('\n').find((l) => l.includes('builder1'))!, /2m00s ✔/);
  await r.unmount();
});

test('ctrl-c quits from anywhere: a dialog, the action menu, a text line, the help', async () => {
  const opens: Record<string, string[]> = {dialog: ['2', KEYS.ctrlD], menu: ['2', 'x'], 'text line': ['/', 'ab'], help: ['?', '/', 'ab']};
  for (const [what, keys] of Object.entries(opens)) {
    const r = await renderConsole(new FakeData());
    await r.press('2');
    await r.waitFor((f) => f.includes('pkg500'), 'builds');
    for (const k of keys) await r.press(k);
    if (what === 'dialog') await r.waitFor((f) => f.includes('Cancel 1 build'), 'the cancel dialog');
    await r.press(KEYS.ctrlC);
    assert.equal(r.quitCalls, 1, what);
    await r.unmount();
  }
});
