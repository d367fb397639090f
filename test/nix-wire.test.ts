import {test} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtemp, rm, writeFile, mkdir, symlink, chmod} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {PassThrough, Readable} from 'node:stream';
import {createHash} from 'node:crypto';
import {execa} from 'execa';
import {ProtocolError, WireReader, WireWriter, encodeString, encodeU64} from '../source/nix/wire.js';
import {EXPORT_MAGIC, writeExportEnd, writeExportEntry} from '../source/nix/export-format.js';
import {
  NarError,
  dumpLocalPath,
  formatHash,
  nix32Decode,
  nix32Encode,
  parseHash,
  parseNar,
  parseNarStream,
  sameHash,
  type NarEntry,
} from '../source/nix/nar.js';

function readerOf(...parts: Buffer[]): WireReader {
  // Deliver in small pieces to exercise chunk boundaries.
  const all = Buffer.concat(parts);
  const pieces: Buffer[] = [];
  for (let i = 0; i < all.length; i += 5) pieces.push(all.subarray(i, i + 5));
  return new WireReader(Readable.from(pieces), {label: 'test input'});
}

async function collect(write: (w: WireWriter) => void | Promise<void>): Promise<Buffer> {
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (c: Buffer) => chunks.push(c));
  const w = new WireWriter(sink);
  await write(w);
  await w.end();
  return Buffer.concat(chunks);
}

test('u64, bool, string, list and map round trip, with counters', async () => {
  const bytes = await collect(async (w) => {
    w.u64(0).u64(1).u64(Number.MAX_SAFE_INTEGER).u64(-1).bool(true).bool(false);
    w.string('').string('abc').string('exactly8').string(Buffer.from([0, 255, 7]));
    w.strings(['x', 'yy']).stringMap([['k', 'v']]);
    assert.equal(w.bytesWritten, 0);
    assert.equal(w.bufferedBytes, 184);
    await w.flush();
    assert.equal(w.bytesWritten, 184);
    assert.equal(w.bufferedBytes, 0);
  });
  // 6 ints (48) + '' (8) + 'abc' (16) + 'exactly8' (16) + 3 bytes (16) + list (8+16+16) + map (8+16+16)
  assert.equal(bytes.length, 48 + 8 + 16 + 16 + 16 + 40 + 40);
  const r = readerOf(bytes);
  assert.equal(await r.readU64(), 0);
  assert.equal(await r.readInt(), 1);
  assert.equal(await r.readU64(), Number.MAX_SAFE_INTEGER);
  assert.equal(await r.readU64Big(), 0xffff_ffff_ffff_ffffn);
  assert.equal(await r.readBool(), true);
  assert.equal(await r.readBool(), false);
  assert.equal(await r.readString(), '');
  assert.equal(await r.readString(), 'abc');
  assert.equal(await r.readString(), 'exactly8');
  assert.deepEqual(await r.readBytes(), Buffer.from([0, 255, 7]));
  assert.deepEqual(await r.readStrings(), ['x', 'yy']);
  assert.deepEqual(await r.readStringMap(), new Map([['k', 'v']]));
  assert.equal(r.bytesRead, bytes.length);
  assert.equal(await r.atEof(), true);
});

test('encoding is little-endian and padded with zeros', () => {
  assert.deepEqual(encodeU64(0x0102), Buffer.from([2, 1, 0, 0, 0, 0, 0, 0]));
  assert.deepEqual(encodeString('ab'), Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 0x61, 0x62, 0, 0, 0, 0, 0, 0]));
  assert.throws(() => encodeU64(2 ** 53), RangeError);
  assert.throws(() => encodeU64(1.5), RangeError);
});

test('reader rejects non-zero padding, large numbers, bad booleans, oversize strings and truncation', async () => {
  const badPad = Buffer.concat([encodeU64(1), Buffer.from([0x61, 0, 0, 1, 0, 0, 0, 0])]);
  await assert.rejects(readerOf(badPad).readString(), (e: unknown) => e instanceof ProtocolError && /non-zero padding/.test(e.message));
  await assert.rejects(readerOf(encodeU64(2n ** 53n)).readU64(), /does not fit in 53 bits/);
  assert.equal(await readerOf(encodeU64(2n ** 60n)).readU64Big(), 2n ** 60n);
  await assert.rejects(readerOf(encodeU64(2)).readBool(), /expected 0 or 1/);
  await assert.rejects(readerOf(encodeString('toolong')).readString({max: 3, what: 'name'}), /name of 7 bytes exceeds the limit of 3/);
  await assert.rejects(readerOf(encodeU64(5).subarray(0, 6)).readU64(), (e: unknown) => e instanceof ProtocolError && /unexpected end of stream/.test(e.message));
  const truncated = encodeString('hello world').subarray(0, 12);
  await assert.rejects(readerOf(truncated).readString(), /unexpected end of stream/);
  await assert.rejects(readerOf(Buffer.concat([encodeU64(3), encodeString('a')])).readStrings(), /unexpected end of stream/);
});

test('nix32 encoding matches nix-hash and round-trips; parseHash accepts nix32, base16 and SRI', async () => {
  for (const input of ['', 'hello', 'hydra-ops']) {
    const digest = createHash('sha256').update(input).digest();
    const hex = digest.toString('hex');
    const {stdout} = await execa('nix-hash', ['--type', 'sha256', '--to-base32', hex]);
    assert.equal(nix32Encode(digest), stdout.trim());
    assert.deepEqual(nix32Decode(stdout.trim(), 32), digest);
    const parsed = parseHash(`sha256:${stdout.trim()}`);
    assert.deepEqual(parsed.digest, digest);
    assert.deepEqual(parseHash(`sha256:${hex}`).digest, digest);
    assert.deepEqual(parseHash(`sha256-${digest.toString('base64')}`).digest, digest);
    assert.equal(formatHash('sha256', digest, 'base16'), `sha256:${hex}`);
    assert.ok(sameHash(`sha256:${hex}`, formatHash('sha256', digest)));
  }
  const sha1 = createHash('sha1').update('x').digest();
  const {stdout} = await execa('nix-hash', ['--type', 'sha1', '--to-base32', sha1.toString('hex')]);
  assert.equal(nix32Encode(sha1), stdout.trim());
  assert.throws(() => nix32Decode('e'.repeat(52), 32), /bad character 'e'/);
  assert.throws(() => nix32Decode('z'.repeat(52), 32), /overflows/);
  assert.throws(() => parseHash('sha256:abc'), /wrong length/);
  assert.throws(() => parseHash('md6:abc'), /unknown or missing hash algorithm/);
});

async function nixStore(...args: string[]): Promise<string> {
  return (await execa('nix-store', args)).stdout.trim();
}

test('NARs of real store paths parse to the hash nix-store reports, with entries and contents', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hydra-ops-nar-'));
  try {
    const file = join(dir, 'plain.txt');
    await writeFile(file, 'plain file for hydra-ops NAR test\n');
    const exe = join(dir, 'tool.sh');
    await writeFile(exe, '#!/bin/sh\necho hydra-ops nar test\n');
    await chmod(exe, 0o755);
    const tree = join(dir, 'tree');
    await mkdir(join(tree, 'nix-support'), {recursive: true});
    await mkdir(join(tree, 'bin'));
    await writeFile(join(tree, 'nix-support', 'hydra-build-products'), 'doc none $out/README\n');
    await writeFile(join(tree, 'README'), 'x'.repeat(20_000));
    await writeFile(join(tree, 'bin', 'run'), '#!/bin/sh\n');
    await chmod(join(tree, 'bin', 'run'), 0o755);
    await writeFile(join(tree, 'Z-upper'), '');
    await symlink('README', join(tree, 'link'));

    const added = (await nixStore('--add', file, exe, tree)).split('\n');
    assert.equal(added.length, 3);
    const results: {entries: NarEntry[]; contents: Map<string, string>}[] = [];
    for (const path of added) {
      const entries: NarEntry[] = [];
      const contents = new Map<string, string>();
      const teeChunks: Buffer[] = [];
      const tee = new PassThrough();
      tee.on('data', (c: Buffer) => teeChunks.push(c));
      const dump = execa('nix-store', ['--dump', path], {encoding: 'buffer', buffer: false});
      const result = await parseNarStream(dump.stdout, {
        visitor: (entry, data) => {
          entries.push(entry);
          if (data) contents.set(entry.path, data.toString('utf8'));
        },
        tee,
        contentsCap: 1024,
      });
      await dump;
      assert.equal(result.narHash, await nixStore('--query', '--hash', path), path);
      assert.equal(String(result.narSize), await nixStore('--query', '--size', path));
      const teed = Buffer.concat(teeChunks);
      assert.equal(teed.length, result.narSize);
      assert.equal(formatHash('sha256', createHash('sha256').update(teed).digest()), result.narHash);
      results.push({entries, contents});
    }
    assert.deepEqual(results[0]!.entries, [{path: '', type: 'regular', executable: false, size: 34}]);
    assert.equal(results[0]!.contents.get(''), 'plain file for hydra-ops NAR test\n');
    assert.equal(results[1]!.entries[0]!.executable, true);
    const treeEntries = results[2]!.entries;
    assert.deepEqual(
      treeEntries.map((e) => `${e.type}:${e.path}`),
      ['directory:', 'regular:README', 'regular:Z-upper', 'directory:bin', 'regular:bin/run', 'symlink:link', 'directory:nix-support', 'regular:nix-support/hydra-build-products'],
    );
    assert.equal(treeEntries.find((e) => e.path === 'link')!.target, 'README');
    assert.equal(treeEntries.find((e) => e.path === 'bin/run')!.executable, true);
    assert.equal(treeEntries.find((e) => e.path === 'README')!.size, 20_000);
    // Over the cap: no contents; under it: delivered.
    assert.equal(results[2]!.contents.has('README'), false);
    assert.equal(results[2]!.contents.get('nix-support/hydra-build-products'), 'doc none $out/README\n');
    // The lazy local dump: starts on iteration, so a late consumer loses nothing.
    const lazy = dumpLocalPath(added[2]!);
    await new Promise((r) => setTimeout(r, 200));
    const viaLazy = await parseNarStream(Readable.from(lazy));
    assert.equal(viaLazy.narHash, await nixStore('--query', '--hash', added[2]!));
    await assert.rejects(parseNarStream(Readable.from(dumpLocalPath(join(dir, 'missing')))), /nix-store --dump .*missing failed/);
  } finally {
    await rm(dir, {recursive: true, force: true});
  }
});

// Builders for hand-made NARs.
const s = (x: string | Buffer) => encodeString(x);
function narRegular(contents: string, executable = false): Buffer[] {
  return [s('('), s('type'), s('regular'), ...(executable ? [s('executable'), s('')] : []), s('contents'), s(contents), s(')')];
}
function narDir(entries: [string | Buffer, Buffer[]][]): Buffer[] {
  const out = [s('('), s('type'), s('directory')];
  for (const [name, node] of entries) out.push(s('entry'), s('('), s('name'), s(name), s('node'), ...node, s(')'));
  out.push(s(')'));
  return out;
}
const nar = (node: Buffer[], magic = 'nix-archive-1') => Buffer.concat([s(magic), ...node]);

test('hand-made NAR is delimited exactly inside a longer stream', async () => {
  const one = nar(narDir([['a', narRegular('1')], ['b', narRegular('22', true)]]));
  const r = readerOf(one, encodeU64(EXPORT_MAGIC));
  const res = await parseNar(r);
  assert.equal(res.narSize, one.length);
  assert.equal(res.entries, 3);
  assert.equal(await r.readU64(), EXPORT_MAGIC);
});

test('malformed NARs are rejected with a clear message', async () => {
  const cases: [string, Buffer, RegExp][] = [
    ['bad magic', nar(narRegular('x'), 'nix-archive-2'), /doesn't look like a Nix archive/],
    ['not a NAR at all', Buffer.from('hello world, this is text'), /doesn't look like a Nix archive/],
    ['unsorted', nar(narDir([['b', narRegular('')], ['a', narRegular('')]])), /not sorted: 'a' follows 'b'/],
    ['duplicate', nar(narDir([['a', narRegular('')], ['a', narRegular('')]])), /not sorted/],
    ['dot-dot', nar(narDir([['..', narRegular('')]])), /invalid entry name '\.\.'/],
    ['dot', nar(narDir([['.', narRegular('')]])), /invalid entry name '\.'/],
    ['empty name', nar(narDir([['', narRegular('')]])), /empty entry name/],
    ['slash', nar(narDir([['a/b', narRegular('')]])), /contains '\/'/],
    ['nul', nar(narDir([[Buffer.from('a\0b'), narRegular('')]])), /contains NUL/],
    ['unknown type', nar([s('('), s('type'), s('fifo'), s(')')]), /unknown file type 'fifo'/],
    ['executable marker', nar([s('('), s('type'), s('regular'), s('executable'), s('x'), s('contents'), s(''), s(')')]), /executable marker/],
    ['missing close', nar([s('('), s('type'), s('regular'), s('contents'), s('abc')]), /unexpected end of stream/],
    ['truncated contents', nar(narRegular('0123456789')).subarray(0, 100), /unexpected end of stream/],
  ];
  for (const [name, bytes, pattern] of cases) {
    await assert.rejects(parseNar(readerOf(bytes)), (e: unknown) => {
      assert.ok(e instanceof NarError, `${name}: ${String(e)}`);
      assert.match((e as Error).message, pattern, name);
      return true;
    });
  }
  // Bad padding after file contents.
  const good = nar(narRegular('abc'));
  const padAt = good.length - 16 - 5; // 'abc' padding sits before the final ')' frame
  const bad = Buffer.from(good);
  bad[padAt] = 1;
  await assert.rejects(parseNar(readerOf(bad)), /non-zero padding/);
  // Limits.
  const deep = nar(narDir([['a', narDir([['b', narRegular('')]])]]));
  await assert.rejects(parseNar(readerOf(deep), {limits: {maxDepth: 1}}), /nesting deeper than 1/);
  await assert.rejects(parseNar(readerOf(nar(narRegular('abcdef'))), {limits: {maxFileSize: 3}}), /exceeds the limit of 3/);
  await assert.rejects(parseNarStream(Readable.from([Buffer.concat([good, encodeU64(0)])])), /trailing data/);
});

test('export entries frame a NAR with path, sorted references and deriver', async () => {
  const narBytes = nar(narRegular('payload'));
  const out = await collect(async (w) => {
    const r = await writeExportEntry(w, Readable.from([narBytes.subarray(0, 7), narBytes.subarray(7)]), '/nix/store/p', ['/nix/store/b', '/nix/store/a'], '');
    assert.equal(r.narSize, narBytes.length);
    writeExportEnd(w);
  });
  const r = readerOf(out);
  assert.equal(await r.readU64(), 1);
  await parseNar(r);
  assert.equal(await r.readU64(), EXPORT_MAGIC);
  assert.equal(await r.readString(), '/nix/store/p');
  assert.deepEqual(await r.readStrings(), ['/nix/store/a', '/nix/store/b']);
  assert.equal(await r.readString(), '');
  assert.equal(await r.readU64(), 0);
  assert.equal(await r.readU64(), 0);
  assert.equal(await r.atEof(), true);
  // A truncated NAR source fails before the trailer is written.
  await assert.rejects(
    collect((w) => writeExportEntry(w, Readable.from([narBytes.subarray(0, 40)]), '/nix/store/p', [], null).then(() => undefined)),
    /unexpected end of stream/,
  );
});
