import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {execa} from 'execa';
import {mkdtemp, readdir, rm, stat, writeFile, mkdir, readFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {
  addGcRoot,
  closureNarSize,
  drvLogBucketPath,
  findDrvLog,
  isValidPath,
  parseValidityRegistration,
  queryClosure,
  queryPathInfos,
  queryValidPaths,
  ReferenceCycleError,
  storeDir,
  topoSortPaths,
  NixStoreError,
} from '../source/nix/store.js';
import {nixFixture, type NixFixture} from './support/nix-fixtures.js';

let fx: NixFixture;
let leaf: string; // no references
let mid: string; // references leaf and itself
let top: string; // references mid
let topDrv: string;
let scratch: string;

before(async () => {
  fx = await nixFixture('store');
  scratch = await mkdtemp(join(tmpdir(), 'hydra-ops-store-scratch-'));
  const expr = `
    let
      mk = name: script: derivation { name = "\${name}-${fx.nonce}"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" script ]; };
      leaf = mk "leaf" "echo leaf > $out";
      mid = mk "mid" "echo \${leaf} > $out; echo $out >> $out";
    in mk "top" "/bin/mkdir $out; echo \${mid} > $out/ref"
  `;
  [top] = await fx.build(expr);
  [topDrv] = await fx.instantiate(expr);
  const refs = (p: string) => execa('nix-store', ['--query', '--references', p]).then((r) => r.stdout.split('\n'));
  mid = (await refs(top!)).find((p) => p.includes('-mid-'))!;
  leaf = (await refs(mid)).find((p) => p.includes('-leaf-'))!;
  assert.ok(top && mid && leaf && topDrv);
});

after(async () => {
  await fx?.cleanup();
  if (scratch) await rm(scratch, {recursive: true, force: true});
});

test('storeDir is /nix/store unless NIX_STORE_DIR says otherwise', () => {
  const saved = process.env.NIX_STORE_DIR;
  try {
    delete process.env.NIX_STORE_DIR;
    assert.equal(storeDir(), '/nix/store');
    process.env.NIX_STORE_DIR = '/custom/store/';
    assert.equal(storeDir(), '/custom/store');
  } finally {
    if (saved === undefined) delete process.env.NIX_STORE_DIR;
    else process.env.NIX_STORE_DIR = saved;
  }
});

test('queryValidPaths: one call for many paths, invalid and non-store paths just absent', async () => {
  const missing = `${storeDir()}/0000000000000000000000000000000a-not-there-${fx.nonce}`;
  const valid = await queryValidPaths([top, mid, leaf, topDrv, missing, '/tmp/not-in-store', 'garbage', `${top}/ref`, top]);
  assert.deepEqual([...valid].sort(), [top, mid, leaf, topDrv].sort());
  assert.equal(await isValidPath(top), true);
  assert.equal(await isValidPath(missing), false);
  assert.equal(await isValidPath('relative/path'), false);
  assert.deepEqual(await queryValidPaths([]), new Set());
});

test('queryPathInfos agrees with nix-store --query for hash, size, references, deriver', async () => {
  const missing = `${storeDir()}/0000000000000000000000000000000a-not-there-${fx.nonce}`;
  const infos = await queryPathInfos([top, mid, leaf, topDrv, missing]);
  assert.deepEqual([...infos.keys()].sort(), [top, mid, leaf, topDrv].sort());
  for (const p of [top, mid, leaf, topDrv]) {
    const q = async (flag: string) => (await execa('nix-store', ['--query', flag, p])).stdout.split('\n').filter(Boolean);
    const info = infos.get(p)!;
    assert.equal(info.narHash, (await q('--hash'))[0], `${p} hash`);
    assert.equal(info.narSize, Number((await q('--size'))[0]), `${p} size`);
    assert.deepEqual(info.references, (await q('--references')).sort(), `${p} references`);
    const deriver = (await q('--deriver'))[0];
    assert.equal(info.deriver, deriver === 'unknown-deriver' ? null : deriver, `${p} deriver`);
  }
  assert.deepEqual(infos.get(mid)!.references, [leaf, mid].sort(), 'self-reference kept');
  assert.equal(infos.get(top)!.deriver, topDrv);
  assert.equal((await queryPathInfos([])).size, 0);
});

test('parseValidityRegistration rejects truncated or garbled output with a clear message', () => {
  assert.throws(() => parseValidityRegistration('/nix/store/x\n' + 'ab'.repeat(32) + '\n12\n\n2\n/nix/store/y\n'), /ended early: expected a reference/);
  assert.throws(() => parseValidityRegistration('/nix/store/x\nabc\nbig\n\n0\n'), /bad size 'big'/);
  assert.throws(() => parseValidityRegistration('/nix/store/x\nabc\n12\n\n0\n'), /bad NAR hash 'abc'/);
  const ok = parseValidityRegistration('/nix/store/x\n' + '00'.repeat(32) + '\n12\n\n1\n/nix/store/y\n');
  assert.deepEqual(ok.get('/nix/store/x'), {narHash: 'sha256:' + '0'.repeat(52), narSize: 12, references: ['/nix/store/y'], deriver: null});
});

test('queryClosure returns the requisites; invalid paths are a NixStoreError', async () => {
  const closure = await queryClosure([top]);
  assert.deepEqual([...closure].sort(), [top, mid, leaf].sort());
  assert.deepEqual((await queryClosure([leaf, mid])).sort(), [leaf, mid].sort());
  assert.deepEqual(await queryClosure([]), []);
  const missing = `${storeDir()}/0000000000000000000000000000000a-not-there-${fx.nonce}`;
  await assert.rejects(queryClosure([missing]), (e: unknown) => e instanceof NixStoreError && /not valid/.test(e.message));
});

test('closureNarSize: the closure\'s NAR sizes summed, with at most chunkSize paths per nix-store command line', async () => {
  const calls = join(scratch, 'closure-size-calls');
  const wrapper = join(scratch, 'nix-store-logging');
  const real = (await execa('sh', ['-c', 'command -v nix-store'])).stdout.trim();
  await writeFile(wrapper, `#!/bin/sh\necho "$#:$1:$2" >> '${calls}'\nexec '${real}' "$@"\n`, {mode: 0o755});
  const infos = await queryPathInfos([top, mid, leaf]);
  const expected = [...infos.values()].reduce((n, i) => n + i.narSize, 0);
  assert.equal(await closureNarSize([top], {nixStore: wrapper, chunkSize: 1}), expected);
  const lines = (await readFile(calls, 'utf8')).trim().split('\n');
  // Each call: 2 options + at most 1 path. One --requisites call for the one root, then one --size call per path.
  assert.deepEqual(lines.filter((l) => l.endsWith(':--requisites')), ['3:--query:--requisites']);
  assert.deepEqual(lines.filter((l) => l.endsWith(':--size')), ['3:--query:--size', '3:--query:--size', '3:--query:--size']);
  await rm(calls);
  assert.equal(await closureNarSize([top, mid, leaf], {nixStore: wrapper}), expected, 'the default chunk fits all three');
  assert.equal((await readFile(calls, 'utf8')).trim().split('\n').length, 2);
  assert.equal(await closureNarSize([]), 0);
});

test('topoSortPaths puts dependencies first on real references', async () => {
  const infos = await queryPathInfos(await queryClosure([top]));
  const refsOf = (p: string) => infos.get(p)?.references;
  for (const order of [[top, mid, leaf], [leaf, top, mid], [mid, leaf, top]]) {
    assert.deepEqual(topoSortPaths(order, refsOf), [leaf, mid, top]);
  }
  // Only references inside the set count.
  assert.deepEqual(topoSortPaths([top, leaf], refsOf), [top, leaf]);
});

test('topoSortPaths: stable order, self-references ignored, cycles reported, deep chains', () => {
  const g: Record<string, string[]> = {a: ['a'], b: ['c'], c: [], d: []};
  assert.deepEqual(topoSortPaths(['a', 'b', 'd', 'c'], (p) => g[p]), ['a', 'c', 'b', 'd']);
  const cyc: Record<string, string[]> = {x: ['y'], y: ['z'], z: ['x'], w: []};
  assert.throws(
    () => topoSortPaths(['w', 'x', 'y', 'z'], (p) => cyc[p]),
    (e: unknown) => e instanceof ReferenceCycleError && e.message.includes('x -> y -> z -> x'),
  );
  const n = 50000;
  const chain = Array.from({length: n}, (_, i) => `p${i}`);
  const sorted = topoSortPaths(chain, (p) => (p === `p${n - 1}` ? [] : [`p${Number(p.slice(1)) + 1}`]));
  assert.equal(sorted[0], `p${n - 1}`);
  assert.equal(sorted[n - 1], 'p0');
});

test('addGcRoot creates an empty file named after the basename, once', async () => {
  const dir = join(scratch, 'gcroots', 'hydra');
  const root = await addGcRoot(dir, top);
  assert.equal(root, join(dir, top.slice(top.lastIndexOf('/') + 1)));
  assert.equal((await stat(root)).size, 0);
  assert.equal(await addGcRoot(dir, top), root);
  assert.deepEqual(await readdir(dir), [top.slice(top.lastIndexOf('/') + 1)]);
  await assert.rejects(addGcRoot(dir, '/etc/passwd'), /not a store path/);
  await assert.rejects(addGcRoot(dir, `${storeDir()}/../etc`), /not a store path/);
});

test('drvLogBucketPath and findDrvLog: plain, then .bz2, then .zst', async () => {
  const dataDir = join(scratch, 'hydra');
  const drv = `${storeDir()}/abcdfghijklmnpqrsvwxyz0123456789-hello-2.12.drv`;
  const bucket = drvLogBucketPath(dataDir, drv);
  assert.equal(bucket, join(dataDir, 'build-logs', 'ab', 'cdfghijklmnpqrsvwxyz0123456789-hello-2.12.drv'));
  assert.equal(await findDrvLog(dataDir, drv), null);
  await mkdir(join(dataDir, 'build-logs', 'ab'), {recursive: true});
  await writeFile(`${bucket}.zst`, 'zst');
  assert.equal(await findDrvLog(dataDir, drv), `${bucket}.zst`);
  await writeFile(`${bucket}.bz2`, 'bz2');
  assert.equal(await findDrvLog(dataDir, drv), `${bucket}.bz2`);
  await writeFile(bucket, 'plain');
  assert.equal(await findDrvLog(dataDir, drv), bucket);
  assert.equal(await readFile(bucket, 'utf8'), 'plain');
  assert.throws(() => drvLogBucketPath(dataDir, '/nix/store/'), /not a derivation path/);
  assert.throws(() => drvLogBucketPath(dataDir, '/nix/store/../../etc/passwd'), /not a derivation path/);
  assert.throws(() => drvLogBucketPath(dataDir, '..x.drv'), /not a derivation path/);
});
