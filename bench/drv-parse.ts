// Parse-rate benchmark for the .drv parser.
//   node --import tsx bench/drv-parse.ts [N]        N generated derivations (default 20000)
//   node --import tsx bench/drv-parse.ts --store    every *.drv in the store directory
// Prints files/s and MB/s (best of several rounds, after a warm-up).

import {readdirSync, readFileSync} from 'node:fs';
import {join} from 'node:path';
import {parseDrv} from '../source/nix/drv.js';
import {NIX_BASE32_ALPHABET, storeDir} from '../source/nix/store-path.js';

let seed = 12345;
function rand(n: number): number {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
}
function hash(): string {
  let s = '';
  for (let i = 0; i < 32; i++) s += NIX_BASE32_ALPHABET[rand(32)];
  return s;
}
function quote(s: string): string {
  return '"' + s.replace(/[\\"]/g, (c) => '\\' + c).replace(/\n/g, '\\n').replace(/\t/g, '\\t').replace(/\r/g, '\\r') + '"';
}
const NAMES = ['glibc', 'zlib', 'openssl', 'perl', 'python3', 'bash', 'coreutils', 'gnumake', 'pkg-config', 'curl'];

/** A derivation shaped like a typical stdenv package: ~15 inputs, a few sources, ~30 env vars, one long script. */
function generate(): string {
  const sd = storeDir();
  const name = `${NAMES[rand(NAMES.length)]}-${rand(10)}.${rand(20)}.${rand(9)}`;
  const outs = rand(3) === 0 ? ['out', 'dev', 'lib', 'man'] : ['out'];
  const outPaths = outs.map((o) => `${sd}/${hash()}-${name}${o === 'out' ? '' : '-' + o}`);
  const inputDrvs: string[] = [];
  const nIn = 5 + rand(20);
  for (let i = 0; i < nIn; i++) {
    const wanted = rand(2) === 0 ? '["out"]' : '["dev","out"]';
    inputDrvs.push(`(${quote(`${sd}/${hash()}-${NAMES[rand(NAMES.length)]}-${i}.drv`)},${wanted})`);
  }
  inputDrvs.sort();
  const srcs: string[] = [];
  for (let i = 0; i < 1 + rand(4); i++) srcs.push(quote(`${sd}/${hash()}-source-${i}.sh`));
  const script = Array.from({length: 20 + rand(60)}, (_, i) =>
    rand(3) === 0
      ? `  if [ -e "$out/lib/${i}" ]; then\n\tsubstituteInPlace "$f" --replace '\\$HOME' "$(pwd)"\n  fi`
      : `  echo building step ${i} for ${name} with flags $NIX_CFLAGS_COMPILE`,
  ).join('\n');
  const env: [string, string][] = [
    ['buildInputs', inputDrvs.slice(0, 4).map(() => `${sd}/${hash()}-dep`).join(' ')],
    ['builder', `${sd}/${hash()}-bash-5.2/bin/bash`],
    ['configureFlags', '--enable-shared --disable-static --with-openssl'],
    ['depsBuildBuild', ''],
    ['doCheck', '1'],
    ['installPhase', script],
    ['name', name],
    ['nativeBuildInputs', `${sd}/${hash()}-pkg-config ${sd}/${hash()}-autoconf`],
    ['outputs', outs.join(' ')],
    ['patches', ''],
    ['pname', name.split('-')[0]!],
    ['src', `${sd}/${hash()}-${name}.tar.gz`],
    ['stdenv', `${sd}/${hash()}-stdenv-linux`],
    ['strictDeps', ''],
    ['system', 'x86_64-linux'],
    ['version', name.split('-')[1]!],
    ...outs.map((o, i): [string, string] => [o, outPaths[i]!]),
  ];
  env.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return (
    'Derive([' +
    outs.map((o, i) => `(${quote(o)},${quote(outPaths[i]!)},"","")`).join(',') +
    '],[' +
    inputDrvs.join(',') +
    '],[' +
    srcs.sort().join(',') +
    '],"x86_64-linux",' +
    quote(`${sd}/${hash()}-bash-5.2/bin/bash`) +
    ',["-e",' +
    quote(`${sd}/${hash()}-default-builder.sh`) +
    '],[' +
    env.map(([k, v]) => `(${quote(k)},${quote(v)})`).join(',') +
    '])'
  );
}

function corpus(): {label: string; texts: string[]} {
  if (process.argv.includes('--store')) {
    const dir = storeDir();
    const files = readdirSync(dir).filter((f) => f.endsWith('.drv'));
    return {label: `${files.length} .drv files from ${dir}`, texts: files.map((f) => readFileSync(join(dir, f), 'utf8'))};
  }
  const n = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 20000);
  return {label: `${n} generated derivations`, texts: Array.from({length: n}, generate)};
}

const {label, texts} = corpus();
if (texts.length === 0) {
  console.error('no derivations to parse');
  process.exit(1);
}
const bytes = texts.reduce((sum, t) => sum + Buffer.byteLength(t), 0);
let checksum = 0;
function round(): number {
  const t0 = process.hrtime.bigint();
  for (const t of texts) checksum += parseDrv(t).env.size;
  return Number(process.hrtime.bigint() - t0) / 1e9;
}
round(); // warm-up
const rounds = 5;
let best = Infinity;
for (let i = 0; i < rounds; i++) best = Math.min(best, round());
console.log(`${label}, ${(bytes / 1e6).toFixed(1)} MB (avg ${Math.round(bytes / texts.length)} B/file)`);
console.log(
  `best of ${rounds}: ${(best * 1000).toFixed(1)} ms → ${Math.round(texts.length / best)} files/s, ` +
    `${(bytes / 1e6 / best).toFixed(1)} MB/s (checksum ${checksum})`,
);
