// NAR unpacking into plain directories (the `.check` trees of reproducibility checks) and the built-in diff
// summary, on real store paths and on hand-made hostile archives.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, writeFileSync, mkdirSync, symlinkSync, chmodSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {Readable} from 'node:stream';
import {nixFixture} from './support/nix-fixtures.js';
import {dumpLocalPath} from '../source/nix/nar.js';
import {removeUnpacked, unpackNar} from '../source/nix/nar-unpack.js';
import {diffTrees, unifiedDiff} from '../source/fleet/tree-diff.js';

/** NAR wire string: u64 length, bytes, zero padding to 8. */
function str(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s) : s;
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(b.length));
  return Buffer.concat([len, b, Buffer.alloc((8 - (b.length % 8)) % 8)]);
}
const nar = (...tokens: (string | Buffer)[]) => Buffer.concat(tokens.map(str));
const file = (contents: string) => ['(', 'type', 'regular', 'contents', contents, ')'];
const entry = (name: string, node: string[]) => ['entry', '(', 'name', name, 'node', ...node, ')'];

test('a real store path unpacks to an identical tree with store modes; removeUnpacked deletes it', {timeout: 60_000}, async () => {
  const nix = await nixFixture('repro_unpack');
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-unpack-'));
  try {
    const [out] = await nix.build(`derivation { name = "tree"; system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; nonce = "${nix.nonce}";
      args = [ "-c" "mkdir -p $out/bin $out/share/empty; echo data > $out/share/file; printf '#!/bin/sh\\n' > $out/bin/run; chmod +x $out/bin/run; ln -s ../share/file $out/bin/link; head -c 300000 /dev/zero > $out/big" ]; }`);
    const target = join(dir, 'tree.check');
    const r = await unpackNar(Readable.from(dumpLocalPath(out!)), target, {label: out});
    assert.ok(r.entries >= 8);
    assert.equal(r.bytes, 300000 + 5 + 10);
    const same = await diffTrees(out!, target);
    assert.deepEqual(same.differing, [], same.text);
    assert.equal(lstatSync(join(target, 'bin', 'run')).mode & 0o777, 0o555);
    assert.equal(lstatSync(join(target, 'share', 'file')).mode & 0o777, 0o444);
    assert.equal(lstatSync(join(target, 'bin')).mode & 0o777, 0o555);
    assert.equal(readlinkSync(join(target, 'bin', 'link')), '../share/file');
    assert.deepEqual(readdirSync(join(target, 'share', 'empty')), []);
    await assert.rejects(unpackNar(Readable.from(dumpLocalPath(out!)), target), /EEXIST/, 'an existing target is never overwritten');
    await removeUnpacked(target);
    assert.equal(existsSync(target), false);
  } finally {
    await nix.cleanup();
    await removeUnpacked(dir);
  }
});

test('hostile archives are rejected and nothing escapes the target', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-unpack-'));
  try {
    const cases: Array<[string, Buffer, RegExp]> = [
      ['dotdot', nar('nix-archive-1', '(', 'type', 'directory', ...entry('..', file('x')), ')'), /invalid entry name '\.\.'/],
      ['slash', nar('nix-archive-1', '(', 'type', 'directory', ...entry('a/b', file('x')), ')'), /contains '\/'/],
      ['unsorted', nar('nix-archive-1', '(', 'type', 'directory', ...entry('b', file('x')), ...entry('a', file('y')), ')'), /not sorted/],
      ['duplicate', nar('nix-archive-1', '(', 'type', 'directory', ...entry('a', file('x')), ...entry('a', file('y')), ')'), /not sorted/],
      ['magic', nar('not-a-nar'), /doesn't look like a Nix archive/],
      ['truncated', nar('nix-archive-1', '(', 'type', 'regular', 'contents').subarray(0, 60), /bad NAR/],
      ['trailing', Buffer.concat([nar('nix-archive-1', ...file('x')), str('junk')]), /trailing data/],
    ];
    for (const [name, bytes, error] of cases) {
      const sub = join(dir, name);
      mkdirSync(sub);
      await assert.rejects(unpackNar(Readable.from([bytes]), join(sub, 'out')), error, name);
      for (const e of readdirSync(sub)) assert.equal(e, 'out', `${name}: only the target was created`);
    }
    assert.deepEqual(readdirSync(dir).sort(), cases.map((c) => c[0]).sort(), 'nothing was written next to the targets');
    // A symlink in the archive is restored as a link, never followed.
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    const linkNar = nar('nix-archive-1', '(', 'type', 'directory', ...entry('l', ['(', 'type', 'symlink', 'target', outside, ')']), ')');
    await unpackNar(Readable.from([linkNar]), join(dir, 'links'));
    assert.equal(readlinkSync(join(dir, 'links', 'l')), outside);
    assert.deepEqual(readdirSync(outside), []);
  } finally {
    await removeUnpacked(dir);
  }
});

test('the built-in diff summary lists one-sided entries, type, mode and content changes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-treediff-'));
  try {
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    for (const d of [a, b]) mkdirSync(join(d, 'sub'), {recursive: true});
    writeFileSync(join(a, 'same'), 'x\n');
    writeFileSync(join(b, 'same'), 'x\n');
    writeFileSync(join(a, 'text'), 'one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n');
    writeFileSync(join(b, 'text'), 'one\ntwo\nTHREE\nfour\nfive\nsix\nseven\neight\nnine\nten\neleven\n');
    writeFileSync(join(a, 'bin'), Buffer.from([0, 1, 2, 3]));
    writeFileSync(join(b, 'bin'), Buffer.from([0, 1, 9, 3, 4]));
    writeFileSync(join(a, 'only-old'), '');
    writeFileSync(join(b, 'sub', 'only-new'), '');
    writeFileSync(join(a, 'exe'), 'same');
    writeFileSync(join(b, 'exe'), 'same');
    chmodSync(join(b, 'exe'), 0o755);
    symlinkSync('same', join(a, 'link'));
    symlinkSync('text', join(b, 'link'));
    writeFileSync(join(a, 'kind'), '');
    mkdirSync(join(b, 'kind'));
    const r = await diffTrees(a, b);
    assert.deepEqual(r.onlyOld, ['only-old']);
    assert.deepEqual(r.onlyNew, ['sub/only-new']);
    assert.deepEqual([...r.differing].sort(), ['bin', 'exe', 'kind', 'link', 'only-old', 'sub/only-new', 'text']);
    // Two hunks: the changes are more than 2 × 3 context lines apart.
    assert.match(r.text, /differs \(text\): text\n--- old\/text\n\+\+\+ new\/text\n@@ -1,6 \+1,6 @@\n one\n two\n-three\n\+THREE\n four\n/);
    assert.match(r.text, /@@ -8,3 \+8,4 @@\n eight\n nine\n ten\n\+eleven\n\n/);
    assert.match(r.text, /^-three$/m);
    assert.match(r.text, /^\+THREE$/m);
    assert.match(r.text, /^\+eleven$/m);
    assert.match(r.text, /differs \(binary\): bin: 4 bytes sha256:[0-9a-f]{64} → 5 bytes sha256:[0-9a-f]{64}; first difference at byte 2/);
    assert.match(r.text, /mode differs: exe: regular file → executable file/);
    assert.match(r.text, /symlink target differs: link: "same" → "text"/);
    assert.match(r.text, /type differs: kind: regular file → directory/);
    assert.match(r.text, /summary: 7 differing entries \(1 only in old, 1 only in new\)/);
    assert.ok(!r.text.includes('same\n---'), 'identical files are not listed');
    assert.equal(readFileSync(join(a, 'same'), 'utf8'), 'x\n');
  } finally {
    await removeUnpacked(dir);
  }
});

test('unified diff hunks: separate hunks for distant changes, context limited', async () => {
  const a = Array.from({length: 30}, (_, i) => `line ${i + 1}`);
  const b = [...a];
  b[1] = 'changed 2';
  b[25] = 'changed 26';
  const {lines: d, truncated} = await unifiedDiff(a, b, 3);
  assert.equal(truncated, null);
  assert.deepEqual(d.filter((l) => l.startsWith('@@')), ['@@ -1,5 +1,5 @@', '@@ -23,7 +23,7 @@']);
  assert.ok(d.includes('-line 2') && d.includes('+changed 2') && d.includes('-line 26') && d.includes('+changed 26'));
  assert.deepEqual((await unifiedDiff(['a'], ['a'])).lines, []);
  assert.deepEqual((await unifiedDiff([], ['new'])).lines, ['@@ -0,0 +1,1 @@', '+new']);
});
