// Pictures of the last hour: each machine's utilisation strip (jobs/maxJobs a minute, on a fixed scale) in the
// Machines view, each system's queue-length sparkline in the Overview, and the bounded per-minute series they
// are drawn from. Key paths with ink-testing-library over the fake data source (the SQL source's sampling is
// tested in ui-sql-data.test.ts).
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {FakeData, NOW} from './support/ui-fake.js';
import {renderConsole} from './support/ui-render.js';
import {HourSeries, MINUTES} from '../source/ui/state/hour-series.js';
import {sparkline} from '../source/ui/components/Sparkline.js';

const row = (frame: string, name: string) => frame.split('\n').find((l) => l.includes(name)) ?? '';

test('Machines: a utilisation strip over the last hour per machine (idle ▁, full █, blank: no sample); it fits 80 columns and gives way at 60', async () => {
  const r = await renderConsole(new FakeData());
  await r.press('4');
  const f = await r.waitFor((x) => x.includes('builder2') && x.includes('last hour'), 'machines');
  // builder1: idle the first half hour, full the second — twelve columns of five minutes.
  assert.match(row(f, 'builder1'), /2\/4 ▁▁▁▁▁▁██████ /);
  // builder2 has no samples: blank, not "idle".
  assert.match(row(f, 'builder2'), /0\/2 {14}/);
  for (const l of f.split('\n')) assert.ok(l.length <= 80, `too wide: ${l}`);
  await r.unmount();
  const small = await renderConsole(new FakeData(), {columns: 60, rows: 15});
  await small.press('4');
  const s = await small.waitFor((x) => x.includes('builder2'), 'machines at 60x15');
  assert.doesNotMatch(s.split('\n').find((l) => l.includes('machine') && l.includes('state'))!, /last hour/, 'the column gives way');
  for (const l of s.split('\n')) assert.ok(l.length <= 60, `too wide: ${l}`);
  await small.unmount();
});

test('Overview: a queue-length sparkline per system beside the totals (blank where the console has no sample)', async () => {
  const r = await renderConsole(new FakeData());
  const f = await r.waitFor((x) => x.includes('aarch64-linux') && x.includes('last hour'), 'overview');
  // x86_64-linux: sampled in the last 20 minutes only, growing.
  assert.match(row(f, 'x86_64-linux  '), / {8}▃▅▆█ /);
  assert.match(row(f, 'aarch64-linux'), /████████████/);
  assert.match(f, /built\/min/);
  for (const l of f.split('\n')) assert.ok(l.length <= 80, `too wide: ${l}`);
  await r.unmount();
});

test('sparklines: a fixed scale for utilisation, blanks for minutes without a sample', () => {
  const t = {color: false, unicode: true};
  assert.equal(sparkline([0, 0.5, 1, null], 4, t, {max: 1}), '▁▅█ ');
  assert.equal(sparkline([0.1, 0.1, 0.1], 3, t, {max: 1}), '▂▂▂', 'a low flat load stays low on the fixed scale');
  assert.equal(sparkline([null, null], 2, t), '  ');
  assert.equal(sparkline([0, 1, 2, 3, 4], 5, {color: false, unicode: false}), '_.-=#');
});

test('the per-minute series: means of a minute, null where nothing was sampled, 60 minutes kept, keys bounded', () => {
  const h = new HourSeries(3);
  const t0 = Math.floor(NOW / 60_000) * 60_000;
  h.add('a', 1, t0);
  h.add('a', 3, t0 + 30_000);
  h.add('a', 5, t0 + 120_000);
  const a = h.get('a', t0 + 120_000);
  assert.equal(a.length, MINUTES);
  assert.deepEqual(a.slice(-3), [2, null, 5]);
  assert.deepEqual(h.get('nothing', t0), Array(MINUTES).fill(null));
  // A slot is reused an hour later: the old minute is not mixed into the new one.
  h.add('a', 7, t0 + 3600_000);
  assert.deepEqual(h.get('a', t0 + 3600_000).filter((v) => v !== null), [5, 7]);
  // At most three keys: a fourth evicts the one sampled longest ago.
  h.add('b', 1, t0 + 3600_000);
  h.add('c', 1, t0 + 3600_000);
  h.add('d', 1, t0 + 3600_000 + 60_000);
  assert.equal(h.size, 3);
  assert.ok(!h.has('a') || !h.has('b') || !h.has('c'));
  assert.ok(h.has('d'));
  // A key without a sample for an hour is dropped.
  h.prune(t0 + 3 * 3600_000);
  assert.equal(h.size, 0);
});
