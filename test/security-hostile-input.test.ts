// Hostile input that used to cost quadratic time or memory, or kept working after a cancel: the built-in diff of
// a reproducibility check on long, entirely different files; a products file listing one file thousands of
// times; post-processing of a cancelled step. Real files, real Nix builds in this machine's store.
import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, mkdirSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {diffTrees, unifiedDiff} from '../source/fleet/tree-diff.js';
import {collectNixSupport, localNixSupportFs, MAX_BUILD_PRODUCTS, type NixSupportFs} from '../source/nix/nix-support.js';
import {parseMachinesText} from '../source/fleet/machines-file.js';
import {FleetExecutor} from '../source/fleet/step-runner.js';
import {readDrv} from '../source/nix/drv.js';
import {drvLogBucketPath} from '../source/nix/store.js';
import {nixFixture, type NixFixture} from './support/nix-fixtures.js';

const scratch = mkdtempSync(join(tmpdir(), 'hydra-ops-hostile-'));
let fx: NixFixture | undefined;
after(async () => {
  rmSync(scratch, {recursive: true, force: true});
  await fx?.cleanup();
});

/** Samples the event loop: the longest gap between 5 ms timer ticks and the peak RSS while it runs. */
function loopWatch() {
  let last = performance.now();
  let maxGap = 0;
  let peakRss = process.memoryUsage.rss();
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, 5);
  return {
    stop() {
      clearInterval(timer);
      return {maxGap, peakRss};
    },
  };
}

test('diff of two entirely different 20k-line files (was an O(n·m) 1.6 GB table, seconds of blocked event loop): quick, bounded, says truncated, the loop keeps ticking', {timeout: 60_000}, async () => {
  const a = join(scratch, 'a');
  const b = join(scratch, 'b');
  mkdirSync(a);
  mkdirSync(b);
  const n = 20_000;
  writeFileSync(join(a, 'big.txt'), Array.from({length: n}, (_, i) => `old line ${i} ${'x'.repeat(i % 17)}`).join('\n') + '\n');
  writeFileSync(join(b, 'big.txt'), Array.from({length: n}, (_, i) => `new line ${i} ${'y'.repeat(i % 13)}`).join('\n') + '\n');
  global.gc?.();
  const baseRss = process.memoryUsage.rss();
  const watch = loopWatch();
  const t0 = performance.now();
  const r = await diffTrees(a, b);
  const ms = performance.now() - t0;
  const {maxGap, peakRss} = watch.stop();
  assert.deepEqual(r.differing, ['big.txt']);
  assert.match(r.text, /differs \(text\): big\.txt/);
  assert.match(r.text, /diff truncated: the files differ in more than 2000 lines \(first difference at line 1 of old, 1 of new; 20000 → 20000 lines\)/);
  assert.ok(ms < 15_000, `the diff took ${Math.round(ms)} ms`);
  assert.ok(maxGap < 300, `the event loop was blocked for ${Math.round(maxGap)} ms`);
  const grown = (peakRss - baseRss) / 2 ** 20;
  assert.ok(grown < 300, `RSS grew by ${grown.toFixed(0)} MiB`);
});

test('diff time bound: a tiny time budget stops the diff with "diff truncated: gave up after"', async () => {
  const a = Array.from({length: 20_000}, (_, i) => `a${i}`);
  const b = Array.from({length: 20_000}, (_, i) => `b${i}`);
  const d = await unifiedDiff(a, b, 3, {maxEdits: 1_000_000, maxMs: 50});
  assert.deepEqual(d.lines, []);
  assert.match(d.truncated ?? '', /^diff truncated: gave up after \d+ ms/);
});

test('diff of 20k-line files with scattered changes is complete and exact (applying it gives the new file)', async () => {
  const a = Array.from({length: 20_000}, (_, i) => `line ${i}`);
  const b = [...a];
  for (let i = 100; i < 20_000; i += 997) b[i] = `changed ${i}`;
  b.splice(5000, 3);
  b.splice(12_000, 0, 'inserted 1', 'inserted 2');
  const d = await unifiedDiff(a, b, 3);
  assert.equal(d.truncated, null);
  // Apply the hunks to `a`.
  const out: string[] = [];
  let pos = 0;
  for (const line of d.lines) {
    const h = /^@@ -(\d+),(\d+) \+\d+,\d+ @@$/.exec(line);
    if (h) {
      const start = Number(h[2]) === 0 ? Number(h[1]) : Number(h[1]) - 1;
      while (pos < start) out.push(a[pos++]!);
      continue;
    }
    if (line.startsWith(' ')) {
      assert.equal(line.slice(1), a[pos]);
      out.push(a[pos++]!);
    } else if (line.startsWith('-')) {
      assert.equal(line.slice(1), a[pos]);
      pos++;
    } else out.push(line.slice(1));
  }
  while (pos < a.length) out.push(a[pos++]!);
  assert.deepEqual(out, b);
  assert.equal(d.lines.filter((l) => l.startsWith('-')).length, 20 + 3);
});

/** Counts the file look-ups (each one hashes a regular file) of a reader. */
function counting(fs: NixSupportFs, onCall?: (n: number) => void) {
  const c = {calls: 0, fs: undefined as unknown as NixSupportFs};
  c.fs = {
    ...fs,
    fileInfo: async (p) => {
      c.calls++;
      onCall?.(c.calls);
      return fs.fileInfo(p);
    },
  };
  return c;
}

test(`a products file listing one file 10,000 times (was 10,000 hashes of it and 10,000 rows): hashed once, products beyond ${MAX_BUILD_PRODUCTS} dropped with a warning`, {timeout: 120_000}, async () => {
  fx ??= await nixFixture('hostile');
  const [out] = await fx.build(`derivation {
    name = "many-products-${fx.nonce}"; system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/usr/bin:/bin";
    args = [ "-c" "mkdir -p $out/nix-support; i=0; while [ $i -lt 4096 ]; do echo 0123456789abcdef; i=$((i+1)); done > $out/big.bin; i=0; while [ $i -lt 10000 ]; do echo \\"file binary-dist $out/big.bin\\"; i=$((i+1)); done > $out/nix-support/hydra-build-products" ];
  }`);
  assert.ok(out);
  const c = counting(localNixSupportFs([out]));
  const r = await collectNixSupport([{name: 'out', path: out}], c.fs);
  assert.equal(c.calls, 1, 'the listed file is looked at (hashed) once');
  assert.equal(r.products.length, MAX_BUILD_PRODUCTS);
  assert.ok(r.products.every((p) => p.path === `${out}/big.bin` && p.filesize === 4096 * 17 && /^[0-9a-f]{64}$/.test(p.sha256hash ?? '')));
  assert.deepEqual(r.products.slice(0, 3).map((p) => p.productnr), [1, 2, 3]);
  assert.deepEqual(r.warnings, [`${10_000 - MAX_BUILD_PRODUCTS} build products dropped: a build records at most ${MAX_BUILD_PRODUCTS}`]);
});

test('cancel during post-processing (was: the step reported 4 while hashing every product went on): the hashing stops', {timeout: 120_000}, async () => {
  fx ??= await nixFixture('hostile');
  const drvPath = (
    await fx.instantiate(`derivation {
    name = "cancel-postprocessing-${fx.nonce}"; system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/usr/bin:/bin";
    args = [ "-c" "mkdir -p $out/nix-support; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do echo $i > $out/f$i; echo \\"file doc $out/f$i\\" >> $out/nix-support/hydra-build-products; done" ];
  }`)
  )[0]!;
  const parsed = parseMachinesText(`localhost ${process.arch === 'arm64' ? 'aarch64-linux' : 'x86_64-linux'} - 1 1\n`, 'machines');
  assert.deepEqual(parsed.errors, []);
  const controller = new AbortController();
  let calls = 0;
  const executor = new FleetExecutor({
    localStoreIsDestination: true,
    localServe: {extraArgs: ['--option', 'build-users-group', '', '--option', 'substituters', '']},
    wrapNixSupportFs: (fs) => ({
      ...fs,
      fileInfo: async (p) => {
        calls++;
        if (calls === 1) controller.abort();
        // Slow look-ups: work that goes on after the cancel shows up in the count.
        await new Promise((r) => setTimeout(r, 20));
        return fs.fileInfo(p);
      },
    }),
  });
  try {
    const phases: string[] = [];
    const r = await executor.run({
      machine: parsed.machines[0]!,
      drvPath,
      drv: await readDrv(drvPath),
      maxSilentTime: 60,
      buildTimeout: 120,
      maxLogSize: 1 << 20,
      maxOutputSize: 0,
      logPath: drvLogBucketPath(join(fx.dir, 'logs'), drvPath),
      signal: controller.signal,
      onPhase: (p) => void phases.push(p),
    });
    assert.equal(r.status, 4);
    assert.equal(phases.at(-1), 'postprocessing');
    await new Promise((res) => setTimeout(res, 600));
    assert.ok(calls <= 2, `${calls} product files were looked at after the cancel`);
  } finally {
    await executor.close();
  }
});
