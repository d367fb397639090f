import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {createHash} from 'node:crypto';
import {mkdir, mkdtemp, rm, symlink, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {
  collectNixSupport,
  defaultProducts,
  localNixSupportFs,
  memberMapFs,
  parseBuildProducts,
  parseMetrics,
  parseMetricValue,
  parseProductLine,
  parseReleaseName,
  type RecordedMember,
} from '../source/nix/nix-support.js';
import {nixFixture, type NixFixture} from './support/nix-fixtures.js';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

// A fake store layout in memory, as recorded while output NARs stream in.
const SD = '/nix/store';
const OUT = `${SD}/0123456789abcdfghijklmnpqrsvwxyz-pkg-1.0`;
const DOC = `${SD}/abcdfghijklmnpqrsvwxyz0123456789-pkg-1.0-doc`;
const OTHER = `${SD}/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-other`;

function members(extra: [string, RecordedMember][] = []): Map<string, RecordedMember> {
  const file = (s: string): RecordedMember => ({type: 'regular', size: Buffer.byteLength(s), sha256: sha(s), contents: Buffer.from(s)});
  return new Map<string, RecordedMember>([
    [OUT, {type: 'directory'}],
    [`${OUT}/text.txt`, file('hello\n')],
    [`${OUT}/some text.txt`, file('spaced')],
    [`${OUT}/share`, {type: 'directory'}],
    [`${OUT}/link`, {type: 'symlink'}],
    [`${OUT}/wéird`, file('x')],
    [`${OUT}/nix-support`, {type: 'directory'}],
    [DOC, {type: 'directory'}],
    [`${DOC}/manual.html`, file('<html/>')],
    [OTHER, {type: 'directory'}],
    [`${OTHER}/secret`, file('secret')],
    ...extra,
  ]);
}

const ctx = (m = members()) => ({storeDir: SD, outputs: [OUT, DOC], fileInfo: memberMapFs(m).fileInfo});

test('product lines: the exact examples, quoting, default path', async () => {
  const products = await parseBuildProducts(
    [`doc none ${OUT}/text.txt`, `file binary "${OUT}/some text.txt" index.html`, `doc manual ${DOC}/manual.html`].join('\n'),
    ctx(),
  );
  assert.deepEqual(products, [
    {productnr: 1, type: 'doc', subtype: 'none', filesize: 6, sha256hash: sha('hello\n'), path: `${OUT}/text.txt`, name: 'text.txt', defaultpath: ''},
    {productnr: 2, type: 'file', subtype: 'binary', filesize: 6, sha256hash: sha('spaced'), path: `${OUT}/some text.txt`, name: 'some text.txt', defaultpath: 'index.html'},
    {productnr: 3, type: 'doc', subtype: 'manual', filesize: 7, sha256hash: sha('<html/>'), path: `${DOC}/manual.html`, name: 'manual.html', defaultpath: ''},
  ]);
  assert.deepEqual(parseProductLine('a-b c_d /x/y'), {type: 'a-b', subtype: 'c_d', path: '/x/y', defaultPath: ''});
  assert.deepEqual(parseProductLine('a\tb\t\t"/x y/z"  def"ault'), {type: 'a', subtype: 'b', path: '/x y/z', defaultPath: 'def"ault'});
});

test('products: hostile paths and lines are skipped', async () => {
  const lines = [
    `doc none text.txt`, // relative
    `doc none ./text.txt`,
    `doc none ${OUT}/../../../etc/passwd`, // escapes the store
    `doc none ${OUT}/../zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-other/secret`, // in the store, not an output
    `doc none ${OTHER}/secret`,
    `doc none ${SD}`,
    `doc none /etc/passwd`,
    `doc none ${OUT}/missing.txt`,
    `doc none ${OUT}/link/inside`, // below a symlink: not a member
    `d@c none ${OUT}/text.txt`, // bad type
    `doc no.ne ${OUT}/text.txt`, // bad subtype
    `doc none ${OUT}/text.txt extra more`, // too many fields
    `doc none ${OUT}/text.txt\r`, // CR makes the line not match as a whole
    `doc none "${OUT}/text.txt`, // unbalanced quote
    `doc none ""`,
    `doc none <${OUT}/text.txt>`,
    `doc`,
    `   `,
    `doc none ${OUT}/te\0xt.txt`,
  ];
  assert.deepEqual(await parseBuildProducts(lines.join('\n'), ctx()), []);
});

test('products: canonicalisation, output itself, names, non-regular types', async () => {
  const products = await parseBuildProducts(
    [
      `doc none ${OUT}//share/../text.txt`,
      `nix-build out ${OUT}`,
      `dir share ${OUT}/share/`,
      `link l ${OUT}/link`,
      `doc none ${OUT}/wéird`,
      '',
      `doc none ${DOC}/./manual.html`,
    ].join('\n'),
    ctx(),
  );
  assert.deepEqual(
    products.map((p) => [p.productnr, p.path, p.name, p.filesize, p.sha256hash]),
    [
      [1, `${OUT}/text.txt`, 'text.txt', 6, sha('hello\n')],
      [2, OUT, '', null, null],
      [3, `${OUT}/share`, 'share', null, null],
      [4, `${OUT}/link`, 'link', null, null],
      [5, `${OUT}/wéird`, '', 1, sha('x')],
      [6, `${DOC}/manual.html`, 'manual.html', 7, sha('<html/>')],
    ],
  );
});

test('default products: directory outputs only, subtype by output name', () => {
  const products = defaultProducts([
    {name: 'out', path: OUT, type: 'directory'},
    {name: 'doc', path: DOC, type: 'directory'},
    {name: 'bin', path: `${SD}/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-plain-file`, type: 'regular'},
  ]);
  assert.deepEqual(products, [
    {productnr: 1, type: 'nix-build', subtype: 'doc', filesize: null, sha256hash: null, path: DOC, name: 'pkg-1.0-doc', defaultpath: ''},
    {productnr: 2, type: 'nix-build', subtype: '', filesize: null, sha256hash: null, path: OUT, name: 'pkg-1.0', defaultpath: ''},
  ]);
});

test('release name: trimmed, validated', () => {
  assert.equal(parseReleaseName('  my-release_1.0:rc@2 \n'), 'my-release_1.0:rc@2');
  assert.equal(parseReleaseName('two words'), null);
  assert.equal(parseReleaseName(''), null);
  assert.equal(parseReleaseName('\n\t'), null);
  assert.equal(parseReleaseName('a/b'), null);
  assert.equal(parseReleaseName('x\ny'), null);
  assert.equal(parseReleaseName('\u00a0abc'), null);
  assert.equal(parseReleaseName('<script>'), null);
});

test('metrics: bad names, bad values, bad units, later line wins', () => {
  const m = parseMetrics(
    [
      'time 12.5 s',
      'size 100',
      'time 13 ms', // later wins
      'bad@name 1',
      'nameonly',
      'novalue abc',
      'unit 5 m/s', // bad unit → NULL
      'pct 50 %',
      'sci 1.5e3 ms',
      'prefix 12abc', // numeric prefix, as strtod reads it
      'hex -0x1p3',
      'huge 1e999', // out of range
      'tiny 1e-400', // underflow
      'zero 0e-400',
      '  padded\t7\tunits  ',
      'crlf 3 kB\r',
      'x'.repeat(10) + ' 1 ' + 'u'.repeat(5),
    ].join('\n'),
  );
  const plain = Object.fromEntries([...m.values()].map((x) => [x.name, [x.value, x.unit]]));
  assert.deepEqual(plain, {
    time: [13, 'ms'],
    size: [100, null],
    unit: [5, null],
    pct: [50, '%'],
    sci: [1500, 'ms'],
    prefix: [12, null],
    hex: [-8, null],
    zero: [0, null],
    padded: [7, 'units'],
    crlf: [3, 'kB'],
    xxxxxxxxxx: [1, 'uuuuu'],
  });
  assert.equal(parseMetricValue('inf'), Infinity);
  assert.ok(Number.isNaN(parseMetricValue('nan')));
  assert.equal(parseMetricValue('-.5'), -0.5);
  assert.equal(parseMetricValue('.'), null);
  assert.equal(parseMetricValue('e5'), null);
});

test('collectNixSupport over recorded members: products, failed marker, release name, metrics', async () => {
  const file = (s: string): RecordedMember => ({type: 'regular', size: Buffer.byteLength(s), sha256: sha(s), contents: Buffer.from(s)});
  const m = members([
    [`${OUT}/nix-support/hydra-build-products`, file(`doc none ${OUT}/text.txt\nbogus line\n`)],
    [`${OUT}/nix-support/hydra-release-name`, file('pkg-1.0\n')],
    [`${OUT}/nix-support/hydra-metrics`, file('a 1\nb 2 s\n')],
    [`${DOC}/nix-support`, {type: 'directory'}],
    [`${DOC}/nix-support/failed`, {type: 'symlink'}],
    [`${DOC}/nix-support/hydra-build-products`, file(`doc manual ${DOC}/manual.html\n`)],
    [`${DOC}/nix-support/hydra-metrics`, file('a 3\n')],
  ]);
  // Given in name order (doc, out) but visited in store-path order: OUT (0123…) before DOC (abcd…).
  const outputs = [{name: 'doc', path: DOC}, {name: 'out', path: OUT}];
  const r = await collectNixSupport(outputs, memberMapFs(m), {storeDir: SD});
  assert.deepEqual(r.products.map((p) => [p.productnr, p.name]), [[1, 'text.txt'], [2, 'manual.html']]);
  assert.equal(r.failed, true);
  assert.equal(r.releaseName, 'pkg-1.0');
  assert.deepEqual([...r.metrics.values()], [{name: 'b', value: 2, unit: 's'}, {name: 'a', value: 3, unit: null}]);
  assert.deepEqual(r.warnings, []);

  // No products file anywhere → default products; nothing failed.
  const none = await collectNixSupport(outputs, memberMapFs(members()), {storeDir: SD});
  assert.deepEqual(none.products.map((p) => [p.type, p.subtype, p.path]), [['nix-build', 'doc', DOC], ['nix-build', '', OUT]]);
  assert.equal(none.failed, false);
  assert.equal(none.releaseName, null);
  assert.equal(none.metrics.size, 0);

  // A products file that is not a regular file does not count; an oversized one counts but yields nothing.
  const dirProducts = members([[`${OUT}/nix-support/hydra-build-products`, {type: 'directory'}]]);
  assert.equal((await collectNixSupport(outputs, memberMapFs(dirProducts), {storeDir: SD})).products.length, 2);
  const big = members([[`${OUT}/nix-support/hydra-build-products`, file(`doc none ${OUT}/text.txt\n`.repeat(100))]]);
  const capped = await collectNixSupport(outputs, memberMapFs(big), {storeDir: SD, maxBytes: 1000});
  assert.deepEqual(capped.products, []);
  assert.match(capped.warnings[0]!, /hydra-build-products: ignored, \d+ bytes exceeds the 1000-byte limit/);
});

let scratch: string;
let fx: NixFixture;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'hydra-ops-nix-support-'));
  fx = await nixFixture('support');
});
after(async () => {
  await fx?.cleanup();
  if (scratch) await rm(scratch, {recursive: true, force: true});
});

test('local file system reader: confined to outputs, never follows symlinks', async () => {
  const sd = join(scratch, 'store');
  const out = join(sd, '0123456789abcdfghijklmnpqrsvwxyz-local');
  const outside = join(scratch, 'outside');
  await mkdir(join(out, 'nix-support'), {recursive: true});
  await mkdir(outside);
  await writeFile(join(outside, 'secret'), 'secret');
  await writeFile(join(out, 'a.txt'), 'aaa');
  await symlink(outside, join(out, 'escape'));
  await symlink(join(outside, 'secret'), join(out, 'nix-support', 'hydra-metrics'));
  await writeFile(
    join(out, 'nix-support', 'hydra-build-products'),
    `doc none ${out}/a.txt\ndoc none ${out}/escape/secret\nlink l ${out}/escape\ndoc none ${outside}/secret\n`,
  );
  const fs = localNixSupportFs([out]);
  assert.deepEqual(await fs.fileInfo(`${out}/a.txt`), {type: 'regular', size: 3, sha256: sha('aaa')});
  assert.deepEqual(await fs.fileInfo(`${out}/escape/secret`), {type: 'missing'});
  assert.deepEqual(await fs.fileInfo(`${outside}/secret`), {type: 'missing'});
  assert.deepEqual(await fs.fileInfo(`${out}/a.txt/x`), {type: 'missing'});
  assert.equal(await fs.typeOf(`${out}/escape`), 'symlink');
  assert.equal(await fs.typeOf(out), 'directory');
  assert.equal(await fs.typeOf(`${out}/escape/secret`), 'missing');
  assert.deepEqual(await fs.readRegular(`${out}/nix-support/hydra-metrics`, 100), {kind: 'absent'}, 'symlinked file not read');
  const r = await collectNixSupport([{name: 'out', path: out}], fs, {storeDir: sd});
  assert.deepEqual(r.products.map((p) => [p.name, p.filesize]), [['a.txt', 3], ['escape', null]]);
  assert.equal(r.metrics.size, 0);
});

test('end to end: nix-support files of a real built output', async () => {
  const outs = await fx.build(`
    derivation {
      name = "products-${fx.nonce}";
      system = builtins.currentSystem;
      builder = "/bin/sh";
      outputs = [ "out" "dev" ];
      args = [ "-c" ''
        /bin/mkdir -p $out/nix-support $dev/nix-support $out/share
        echo hello > $out/text.txt
        echo spaced > "$out/some text.txt"
        /bin/ln -s /etc $out/etc-link
        echo "doc none $out/text.txt" > $out/nix-support/hydra-build-products
        echo "doc none \\"$out/some text.txt\\"" >> $out/nix-support/hydra-build-products
        echo "doc none $out/../../../etc/passwd" >> $out/nix-support/hydra-build-products
        echo "doc none $out/etc-link/passwd" >> $out/nix-support/hydra-build-products
        echo "dir share $out/share index.html" >> $out/nix-support/hydra-build-products
        echo "  release-1.2.3  " > $out/nix-support/hydra-release-name
        printf 'lines 120 loc\\nbad-value x\\nlines 130\\ncoverage 87.5 %%\\n' > $out/nix-support/hydra-metrics
        : > $dev/nix-support/failed
      '' ];
    }
  `);
  const out = outs.find((p) => !p.endsWith('-dev'))!;
  const dev = outs.find((p) => p.endsWith('-dev'))!;
  assert.ok(out && dev, `outputs: ${outs.join(' ')}`);
  const r = await collectNixSupport([{name: 'out', path: out}, {name: 'dev', path: dev}], localNixSupportFs([out, dev]));
  assert.deepEqual(r.products, [
    {productnr: 1, type: 'doc', subtype: 'none', filesize: 6, sha256hash: sha('hello\n'), path: `${out}/text.txt`, name: 'text.txt', defaultpath: ''},
    {productnr: 2, type: 'doc', subtype: 'none', filesize: 7, sha256hash: sha('spaced\n'), path: `${out}/some text.txt`, name: 'some text.txt', defaultpath: ''},
    {productnr: 3, type: 'dir', subtype: 'share', filesize: null, sha256hash: null, path: `${out}/share`, name: 'share', defaultpath: 'index.html'},
  ]);
  assert.equal(r.releaseName, 'release-1.2.3');
  assert.equal(r.failed, true);
  assert.deepEqual([...r.metrics.values()].sort((a, b) => a.name.localeCompare(b.name)), [
    {name: 'coverage', value: 87.5, unit: '%'},
    {name: 'lines', value: 130, unit: null},
  ]);
});
