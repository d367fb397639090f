// `t` in the log view: the time each line arrived. Key paths with ink-testing-library over the fake data source,
// and the log file's own record of arrival times (growth, a partial line that grows, truncation) on real files.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {appendFileSync, mkdtempSync, rmSync, truncateSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {FakeData, NOW} from './support/ui-fake.js';
import {KEYS, renderConsole} from './support/ui-render.js';
import {clockTime} from '../source/ui/format.js';
import {LogFile} from '../source/ui/state/log-file.js';
import {menuItems} from '../source/ui/state/keys.js';

test('t shows when each line arrived; lines there at opening say they have no time; t again hides them; x lists it', async () => {
  const data = new FakeData({logLines: 40});
  const r = await renderConsole(data);
  await r.press(':');
  await r.type('log 5/1');
  await r.press(KEYS.enter);
  await r.waitFor((f) => f.includes('line 40 of the build output'), 'log');
  assert.doesNotMatch(r.frame(), /--:--:--/);
  assert.match(r.frame(), /t times/, 'the footer offers t');
  await r.press('t');
  const opened = clockTime(data.log.openedAt);
  const on = await r.waitFor((f) => f.includes('--:--:-- line 40 of the build output'), 'unknown times');
  assert.match(on, new RegExp(`timestamps on \\(--:--:--: already there when opened at ${opened}\\)`));
  assert.match(on, new RegExp(`times \\(--:--:-- before ${opened}\\)`));
  // Lines that arrive while the log is open carry their time; the view follows them.
  data.log.append(['compiling foo.c', 'linking foo'], NOW - 5000);
  const grown = await r.waitFor((f) => f.includes('linking foo'), 'growth');
  const at = clockTime(NOW - 5000);
  assert.match(grown, new RegExp(`${at} compiling foo\\.c`));
  assert.match(grown, new RegExp(`${at} linking foo`));
  assert.match(grown, /--:--:-- line 40 of the build output/);
  for (const l of grown.split('\n')) assert.ok(l.length <= 80, `too wide: ${l}`);
  // x lists t among the log's actions, from the key table.
  assert.ok(menuItems(r.controller.getState()).some((i) => i.key === 't' && i.what === 'no times'), JSON.stringify(menuItems(r.controller.getState())));
  await r.press('t');
  const off = await r.waitFor((f) => f.includes('timestamps off'), 'off');
  assert.doesNotMatch(off, /--:--:--|\d\d:\d\d:\d\d compiling/);
  assert.match(off, /compiling foo\.c/);
  await r.unmount();
});

test('t at 60×15 keeps the lines within the width; t outside the log does nothing', async () => {
  const data = new FakeData({logLines: 200});
  const r = await renderConsole(data, {columns: 60, rows: 15});
  await r.press('2');
  await r.waitFor((f) => f.includes('pkg500'), 'builds');
  const before = r.controller.getState();
  await r.press('t');
  assert.equal(r.controller.getState().view, 'builds');
  assert.equal(r.controller.getState().log, before.log);
  await r.press('l');
  await r.waitFor((f) => f.includes('line 200 of the build output'), 'log');
  await r.press('t');
  const f = await r.waitFor((x) => x.includes('--:--:-- line 200'), 'times at 60x15');
  for (const l of f.split('\n')) assert.ok(l.length <= 60, `too wide: ${l}`);
  assert.ok(f.split('\n').length <= 15);
  await r.unmount();
});

test('a log file records when lines arrive: none for the lines there at opening, one time per read for the rest', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-log-times-'));
  try {
    const path = join(dir, 'log');
    writeFileSync(path, 'old 1\nold 2\npartial');
    const log = await LogFile.open(path);
    assert.ok(log.openedAt > 0 && log.openedAt <= Date.now());
    assert.deepEqual(log.times(0, 3), [null, null, null]);
    const t0 = Date.now();
    appendFileSync(path, ' grown\nnew 1\nnew 2\n');
    assert.equal(await log.refresh(), true);
    const t1 = Date.now();
    // The partial line that grew keeps "no time"; the lines after it arrived with this read.
    const times = log.times(0, 5);
    assert.deepEqual(times.slice(0, 3), [null, null, null]);
    for (const t of times.slice(3)) assert.ok(t !== null && t >= t0 && t <= t1, String(t));
    assert.deepEqual(await log.lines(2, 3), ['partial grown', 'new 1', 'new 2']);
    await new Promise((res) => setTimeout(res, 20));
    appendFileSync(path, 'newer\n');
    await log.refresh();
    const [a, b] = log.times(4, 2);
    assert.ok(b! > a!, 'a later read, a later time');
    assert.deepEqual(log.times(5, 10), [b], 'no times beyond the end');
    // Truncated and written again: what is read again arrived after opening.
    truncateSync(path, 0);
    writeFileSync(path, 'again\n');
    await log.refresh();
    const [again] = log.times(0, 1);
    assert.ok(again !== null && again! >= b!);
    await log.close();
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});
