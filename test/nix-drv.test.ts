import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {execa} from 'execa';
import {readFile, writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {
  DrvAttributeError,
  DrvParseError,
  InputResolutionError,
  isDeterministic,
  outputPathMap,
  outputPaths,
  parseDrv,
  preferLocalBuild,
  readDrv,
  requiredSystemFeatures,
  resolveFromDrvFiles,
  systemType,
  toBasicDerivation,
  type Derivation,
} from '../source/nix/drv.js';
import {nixFixture, type NixFixture} from './support/nix-fixtures.js';

let fx: NixFixture;
let topDrv: string;
let depDrv: string;
let saDrv: string;
let fodDrv: string;

// Strings with every kind of character the ATerm escaping has to carry.
const TRICKY = String.raw`a "quoted" word, a back\slash, $(echo sub) and ${'$'}{x}, spaces   and \\n literal`;

before(async () => {
  fx = await nixFixture('drv');
  await writeFile(join(fx.dir, 'local-src.txt'), 'a source added by a path literal\n');
  const [top, sa, fod] = await fx.instantiate(`
    let
      dep = derivation {
        name = "dep-${fx.nonce}";
        system = builtins.currentSystem;
        builder = "/bin/sh";
        outputs = [ "out" "dev" "doc" ];
        args = [ "-c" "echo a > $out; echo b > $dev; echo c > $doc" ];
      };
    in [
      (derivation {
        name = "top-${fx.nonce}";
        system = builtins.currentSystem;
        builder = "/bin/sh";
        args = [ "-c" "echo \${dep} \${dep.dev} > $out" "second arg" ];
        tricky = ${JSON.stringify(TRICKY).replace(/\$/g, '\\$')};
        multiline = "line one\\nline two\\ttabbed\\r\\nwindows";
        unicode = "caf\u00e9 \u2713";
        src = builtins.toFile "to-file-${fx.nonce}.txt" "hello";
        local = ./local-src.txt;
        requiredSystemFeatures = [ "kvm" "big-parallel" ];
        isDetermistic = "1";
        empty = "";
      })
      (derivation {
        name = "sa-${fx.nonce}";
        system = builtins.currentSystem;
        builder = "/bin/sh";
        args = [ "-c" "echo > $out" ];
        __structuredAttrs = true;
        requiredSystemFeatures = [ "nixos-test" "benchmark" ];
        preferLocalBuild = true;
        nested = { list = [ 1 "two \\"quoted\\"" { three = 3; } ]; };
        dep = dep.dev;
      })
      (derivation {
        name = "fod-${fx.nonce}";
        system = builtins.currentSystem;
        builder = "/bin/sh";
        args = [ "-c" "echo -n hello > $out" ];
        outputHashMode = "flat";
        outputHashAlgo = "sha256";
        outputHash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
      })
    ]
  `);
  topDrv = top!;
  saDrv = sa!;
  fodDrv = fod!;
  const top0 = await readDrv(topDrv);
  depDrv = [...top0.inputDrvs.keys()][0]!;
});

after(async () => {
  await fx?.cleanup();
});

/** `nix show-derivation` as the reference (Nix 2.8 needs the nix-command feature flag). */
async function showDerivation(drvPath: string): Promise<any> {
  const r = await execa('nix', ['--extra-experimental-features', 'nix-command', 'show-derivation', drvPath]);
  return JSON.parse(r.stdout)[drvPath];
}

function assertMatchesNix(drv: Derivation, ref: any): void {
  assert.deepEqual(
    Object.fromEntries([...drv.outputs].map(([name, o]) => [name, o])),
    Object.fromEntries(
      Object.entries(ref.outputs as Record<string, any>).map(([name, o]) => [
        name,
        {path: o.path ?? '', hashAlgo: o.hashAlgo ?? '', hash: o.hash ?? ''},
      ]),
    ),
  );
  assert.deepEqual(Object.fromEntries(drv.inputDrvs), ref.inputDrvs);
  assert.deepEqual(drv.inputSrcs, ref.inputSrcs);
  assert.equal(drv.platform, ref.system);
  assert.equal(drv.builder, ref.builder);
  assert.deepEqual(drv.args, ref.args);
  assert.deepEqual(Object.fromEntries(drv.env), ref.env);
}

test('parses real derivations exactly as nix show-derivation reads them', async () => {
  for (const p of [topDrv, depDrv, saDrv, fodDrv]) {
    const drv = await readDrv(p);
    assert.equal(drv.path, p);
    assertMatchesNix(drv, await showDerivation(p));
  }
});

test('multiple outputs, input derivation with output names, input sources, escaped strings', async () => {
  const dep = await readDrv(depDrv);
  assert.deepEqual([...dep.outputs.keys()].sort(), ['dev', 'doc', 'out']);
  const top = await readDrv(topDrv);
  assert.deepEqual([...top.inputDrvs.entries()], [[depDrv, ['dev', 'out']]]);
  assert.equal(top.inputSrcs.length, 2);
  assert.ok(top.inputSrcs.some((p) => p.endsWith(`-to-file-${fx.nonce}.txt`)));
  assert.ok(top.inputSrcs.some((p) => p.endsWith('-local-src.txt')));
  assert.equal(top.builder, '/bin/sh');
  assert.deepEqual([top.args[0], top.args[2]], ['-c', 'second arg']);
  assert.equal(top.env.get('tricky'), TRICKY);
  assert.equal(top.env.get('multiline'), 'line one\nline two\ttabbed\r\nwindows');
  assert.equal(top.env.get('unicode'), 'caf\u00e9 \u2713');
  assert.equal(top.env.get('empty'), '');
  // The raw file really uses the escapes.
  const raw = await readFile(topDrv, 'utf8');
  assert.ok(raw.includes(String.raw`\"quoted\"`) && raw.includes(String.raw`\n`) && raw.includes(String.raw`\t`));
  assert.ok(raw.includes(String.raw`\r`) && raw.includes(String.raw`back\\slash`));
});

test('attributes: features, preferLocalBuild, isDetermistic, systemType; env and structured attrs', async () => {
  const top = await readDrv(topDrv);
  assert.deepEqual(requiredSystemFeatures(top), ['big-parallel', 'kvm']);
  assert.equal(preferLocalBuild(top), false);
  assert.equal(isDeterministic(top), true);
  assert.equal(systemType(top, requiredSystemFeatures(top), false), `${top.platform}:big-parallel,kvm`);

  const sa = await readDrv(saDrv);
  assert.ok(sa.env.has('__json'));
  assert.equal(sa.env.has('requiredSystemFeatures'), false);
  assert.deepEqual(requiredSystemFeatures(sa), ['benchmark', 'nixos-test']);
  assert.equal(preferLocalBuild(sa), true);
  assert.equal(isDeterministic(sa), false);
  assert.equal(systemType(sa, requiredSystemFeatures(sa), true), `${sa.platform}:benchmark,local,nixos-test`);
  assert.deepEqual(JSON.parse(sa.env.get('__json')!).nested, {list: [1, 'two "quoted"', {three: 3}]});

  const dep = await readDrv(depDrv);
  assert.deepEqual(requiredSystemFeatures(dep), []);
  assert.equal(systemType(dep, [], false), dep.platform);
  assert.equal(systemType(dep, [], true), `${dep.platform}:local`);
  assert.deepEqual(outputPaths(dep), [...outputPathMap(dep).values()]);
  assert.deepEqual([...outputPathMap(dep).keys()], ['dev', 'doc', 'out']);
});

test('fixed-output derivation keeps hash algorithm and hash', async () => {
  const fod = await readDrv(fodDrv);
  const out = fod.outputs.get('out')!;
  assert.equal(out.hashAlgo, 'sha256');
  assert.equal(out.hash, '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
  assert.ok(out.path.length > 0);
  assert.deepEqual(requiredSystemFeatures(fod), []);
});

test('attribute type errors name the derivation and attribute', () => {
  const base = 'Derive([("out","/nix/store/0123456789abcdfghijklmnpqrsvwxyz-x","","")],[],[],"x86_64-linux","/bin/sh",[],';
  const bad = parseDrv(base + '[("__json","{\\"requiredSystemFeatures\\":\\"kvm\\"}")])', 'bad.drv');
  assert.throws(() => requiredSystemFeatures(bad), (e: unknown) => e instanceof DrvAttributeError && /bad\.drv: attribute 'requiredSystemFeatures' must be a list of strings/.test(e.message));
  const badBool = parseDrv(base + '[("__json","{\\"preferLocalBuild\\":1}")])', 'b.drv');
  assert.throws(() => preferLocalBuild(badBool), /attribute 'preferLocalBuild' must be a Boolean/);
  const badJson = parseDrv(base + '[("__json","{nope")])', 'j.drv');
  assert.throws(() => requiredSystemFeatures(badJson), /j\.drv: attribute '__json' is not valid JSON/);
  // A floating content-addressed output adds the ca-derivations feature.
  const ca = parseDrv('Derive([("out","","r:sha256","")],[],[],"x86_64-linux","/bin/sh",[],[("requiredSystemFeatures","kvm")])');
  assert.deepEqual(requiredSystemFeatures(ca), ['ca-derivations', 'kvm']);
  assert.deepEqual(outputPaths(ca), []);
  assert.deepEqual([...outputPathMap(ca)], [['out', null]]);
});

test('toBasicDerivation replaces input derivations by their wanted output paths', async () => {
  const top = await readDrv(topDrv);
  const resolver = resolveFromDrvFiles();
  const basic = await toBasicDerivation(top, resolver);
  const depOutputs = (await execa('nix-store', ['--query', '--outputs', depDrv])).stdout.split('\n');
  const dep = await readDrv(depDrv);
  const wanted = [dep.outputs.get('dev')!.path, dep.outputs.get('out')!.path];
  for (const p of wanted) assert.ok(depOutputs.includes(p));
  assert.deepEqual(basic.inputSrcs, [...top.inputSrcs, ...wanted].sort());
  assert.ok(!basic.inputSrcs.includes(dep.outputs.get('doc')!.path), 'unwanted output left out');
  assert.deepEqual(basic.outputs, [{name: 'out', ...top.outputs.get('out')!}]);
  assert.equal(basic.platform, top.platform);
  assert.equal(basic.builder, '/bin/sh');
  assert.deepEqual(basic.args, top.args);
  const keys = basic.env.map(([k]) => k);
  assert.deepEqual(keys, [...keys].sort());
  assert.deepEqual(new Map(basic.env), top.env);
  assert.equal(resolver.cache.size, 1);

  // Outputs sorted by name, duplicates in inputSrcs removed.
  const multi = await toBasicDerivation(dep, () => []);
  assert.deepEqual(multi.outputs.map((o) => o.name), ['dev', 'doc', 'out']);
  const dup = await toBasicDerivation(top, () => [top.inputSrcs[0]!]);
  assert.deepEqual(dup.inputSrcs, [...top.inputSrcs].sort());
});

test('resolveFromDrvFiles: unknown output, content-addressed output, unreadable drv, cache bound', async () => {
  const resolver = resolveFromDrvFiles({cacheSize: 1});
  await assert.rejects(resolver(depDrv, ['nope']), (e: unknown) => e instanceof InputResolutionError && e.message.includes(`${depDrv}: output 'nope' does not exist`));
  await assert.rejects(resolver('/nonexistent/0123456789abcdfghijklmnpqrsvwxyz-x.drv', ['out']), /ENOENT/);
  const caResolver = resolveFromDrvFiles({
    read: async (p) => parseDrv('Derive([("out","","r:sha256","")],[],[],"x","/bin/sh",[],[])', p),
  });
  await assert.rejects(caResolver('/nix/store/0123456789abcdfghijklmnpqrsvwxyz-ca.drv', ['out']), /no statically known path/);
  await resolver(depDrv, ['out']);
  await resolver(topDrv, ['out']);
  assert.deepEqual([...resolver.cache.keys()], [topDrv]);
});

test('readDrv names the file when it is missing', async () => {
  await assert.rejects(readDrv('/nonexistent/x.drv'), /\/nonexistent\/x\.drv/);
});

const GOOD =
  'Derive([("out","/nix/store/0123456789abcdfghijklmnpqrsvwxyz-x","","")],' +
  '[("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-d.drv",["out"])],' +
  '["/nix/store/0123456789abcdfghijklmnpqrsvwxyz-s"],"x86_64-linux","/bin/sh",["-c","echo"],[("k","v")])';

test('the well-formed sample parses (baseline for the malformed cases)', () => {
  const d = parseDrv(GOOD, 'good.drv');
  assert.equal(d.env.get('k'), 'v');
  assert.deepEqual(d.inputSrcs, ['/nix/store/0123456789abcdfghijklmnpqrsvwxyz-s']);
  assert.deepEqual(parseDrv(GOOD + '\n').args, ['-c', 'echo']);
});

test('malformed derivations → DrvParseError with file, byte offset and what was expected', () => {
  const cases: [string, string, number | null, RegExp][] = [
    ['empty input', '', 0, /'Derive\(' or 'DrvWithVersion\('/],
    ['wrong head', 'Derivation([', 0, /'Derive\('/],
    ['unknown version', 'DrvWithVersion("v9",[],[],[],"","",[],[])', 15, /format version 'xp-dyn-drv'/],
    ['truncated', GOOD.slice(0, 40), null, /closing '"'/],
    ['missing comma in output', GOOD.replace('"out","/nix', '"out" "/nix'), 14, /',' after the output name/],
    ['unterminated string', 'Derive([("out', 9, /closing '"' of an output name/],
    ['backslash at end of input', 'Derive([("o\\', 9, /closing '"'/],
    ['relative output path', GOOD.replace('"/nix/store/0123456789abcdfghijklmnpqrsvwxyz-x"', '"nix/x"'), 15, /a store path for output 'out'/],
    ['bad hash part in input source', GOOD.replace('"/nix/store/0123456789abcdfghijklmnpqrsvwxyz-s"', '"/nix/store/eeee-s"'), null, /a store path as an input source/],
    ['input derivation not a .drv', GOOD.replace('-d.drv', '-d'), null, /ending in \.drv/],
    ['input derivation without outputs', GOOD.replace('["out"])', '[])'), null, /at least one wanted output/],
    ['duplicate output', GOOD.replace('"","")]', '"",""),("out","","","")]'), null, /unique output name/],
    ['empty output name', GOOD.replace('("out",', '("",'), 9, /non-empty output name/],
    ['missing closing paren', GOOD.slice(0, -1), GOOD.length - 1, /'\)' closing the derivation/],
    ['trailing garbage', GOOD + 'x', GOOD.length, /end of input/],
    ['list separator', GOOD.replace('["-c","echo"]', '["-c";"echo"]'), null, /',' or '\]' in the arguments list/],
    ['number instead of string', GOOD.replace('"x86_64-linux"', '42'), null, /'"' starting the platform/],
    ['env pair with three fields', GOOD.replace('("k","v")', '("k","v","w")'), null, /'\)' closing the environment variable/],
    ['leading comma in list', GOOD.replace('["-c"', '[,"-c"'), null, /'"' starting an argument/],
    ['missing list bracket', GOOD.replace(',["-c","echo"]', ',"-c"'), null, /'\[' starting the arguments list/],
  ];
  assert.ok(cases.length >= 15);
  for (const [label, text, offset, expected] of cases) {
    assert.throws(
      () => parseDrv(text, `case-${label}.drv`),
      (e: unknown) => {
        assert.ok(e instanceof DrvParseError, `${label}: not a DrvParseError: ${e}`);
        assert.equal(e.file, `case-${label}.drv`, label);
        assert.match(e.message, expected, label);
        assert.match(e.message, new RegExp(`^case-${label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.drv: malformed derivation at byte \\d+`));
        if (offset !== null) assert.equal(e.offset, offset, `${label}: offset`);
        assert.ok(e.offset >= 0 && e.offset <= Buffer.byteLength(text), label);
        return true;
      },
      label,
    );
  }
});

test('error offsets count bytes, not UTF-16 units', () => {
  const text = 'Derive([("\u00e9\u2713",x';
  assert.throws(() => parseDrv(text), (e: unknown) => e instanceof DrvParseError && e.offset === Buffer.byteLength('Derive([("\u00e9\u2713",'));
});

test('versioned (dynamic-derivation) form', () => {
  const text =
    'DrvWithVersion("xp-dyn-drv",[("out","","r:sha256","")],' +
    '[("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a.drv",(["out"],[("out",["lib"])])),' +
    '("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-b.drv",["dev"])],[],"x86_64-linux","/bin/sh",[],[])';
  const d = parseDrv(text);
  assert.equal(d.version, 'xp-dyn-drv');
  assert.equal(d.hasDynamicInputs, true);
  assert.deepEqual(Object.fromEntries(d.inputDrvs), {
    '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a.drv': ['out'],
    '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-b.drv': ['dev'],
  });
});

/** Nix's printString escaping. */
function aterm(s: string): string {
  return '"' + s.replace(/[\\"\n\r\t]/g, (c) => ({'\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t'})[c]!) + '"';
}

test('escaping round trip on generated strings (escapes at every position and density)', () => {
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed % n);
  const alphabet = ['a', 'b', ' ', '"', '\\', '\n', '\r', '\t', '$', '(', ')', ',', '[', ']', '\u00e9', '\u{1f600}'];
  const env: [string, string][] = [];
  for (let i = 0; i < 300; i++) {
    let v = '';
    const len = rand(40);
    for (let j = 0; j < len; j++) v += alphabet[rand(alphabet.length)];
    env.push([`k${i}`, v]);
  }
  const text =
    'Derive([("out","/nix/store/0123456789abcdfghijklmnpqrsvwxyz-x","","")],[],[],"p","b",[' +
    env.map(([, v]) => aterm(v)).join(',') +
    '],[' +
    env.map(([k, v]) => `(${aterm(k)},${aterm(v)})`).join(',') +
    '])';
  const d = parseDrv(text);
  assert.deepEqual(d.args, env.map(([, v]) => v));
  assert.deepEqual([...d.env], env);
  // Unknown escapes are taken literally, as Nix does.
  assert.equal(parseDrv(text.replace('"p"', '"\\p\\q"')).platform, 'pq');
});
