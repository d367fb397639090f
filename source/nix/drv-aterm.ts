// Store derivations (`.drv` files, ATerm syntax): the Derivation type and a single-pass parser (NixOS/nix
// src/libstore/derivations.cc, parseDerivation). The attributes the step graph reads are drv-attrs.ts; the
// BasicDerivation sent with BuildDerivation is basic-derivation.ts; drv.ts is the entry point for all three.
//
// Grammar (what Nix writes; Nix never emits whitespace):
//   drv      = 'Derive(' body ')' | 'DrvWithVersion(' string ',' body ')'
//   body     = '[' output,* ']' ',' '[' inputDrv,* ']' ',' '[' string,* ']' ','
//              string ',' string ',' '[' string,* ']' ',' '[' envPair,* ']'
//   output   = '(' name ',' path ',' hashAlgo ',' hash ')'
//   inputDrv = '(' drvPath ',' '[' string,* ']' ')'            (versioned form also: '(' outs ',' '[' child,* ']' ')')
//   envPair  = '(' string ',' string ')'
//   string   = '"' ( char | '\' char )* '"'    with \n \r \t mapped, any other escaped char taken literally

import {readFile} from 'node:fs/promises';
import {isStorePath} from './store-path.js';

export interface DrvOutput {
  /** Output path; empty for floating content-addressed or deferred outputs. */
  path: string;
  /** Empty for input-addressed outputs, e.g. `r:sha256`, `sha256`, `text:sha256` otherwise. */
  hashAlgo: string;
  /** Empty, or the fixed output hash (base 16). */
  hash: string;
}

export interface Derivation {
  path?: string;
  outputs: Map<string, DrvOutput>;
  /** Input derivation path → wanted output names. */
  inputDrvs: Map<string, string[]>;
  inputSrcs: string[];
  platform: string;
  builder: string;
  args: string[];
  /** Environment; structured attributes stay in it as `__json`. */
  env: Map<string, string>;
  /** Set for `DrvWithVersion(...)` files, e.g. `xp-dyn-drv`. */
  version?: string;
  /** True when an input uses the dynamic-derivation form (outputs of outputs); only direct outputs are kept. */
  hasDynamicInputs?: boolean;
}

/** Malformed derivation text. `offset` counts bytes of the UTF-8 text. */
export class DrvParseError extends Error {
  constructor(
    readonly file: string | undefined,
    readonly offset: number,
    readonly expected: string,
    readonly found: string,
  ) {
    super(`${file ?? 'derivation'}: malformed derivation at byte ${offset}: expected ${expected}, found ${found}`);
    this.name = 'DrvParseError';
  }
}

const QUOTE = 34; // "
const BACKSLASH = 92; // \
const COMMA = 44;
const LPAREN = 40;
const RPAREN = 41;
const LBRACKET = 91;
const RBRACKET = 93;

function describeAt(s: string, pos: number): string {
  if (pos >= s.length) return 'end of input';
  const snippet = s.slice(pos, pos + 12);
  return JSON.stringify(snippet) + (pos + 12 < s.length ? '…' : '');
}

class Scanner {
  pos = 0;
  /** Position of the next backslash at or after `pos` (or -1 when none is left). Cached: keeps scans linear. */
  private nextBs: number;

  constructor(
    readonly s: string,
    readonly file: string | undefined,
  ) {
    this.nextBs = s.indexOf('\\');
  }

  fail(expected: string, at = this.pos): never {
    const byteOffset = Buffer.byteLength(this.s.slice(0, at), 'utf8');
    throw new DrvParseError(this.file, byteOffset, expected, describeAt(this.s, at));
  }

  expect(code: number, what: string): void {
    if (this.s.charCodeAt(this.pos) !== code) this.fail(what);
    this.pos++;
  }

  expectWord(word: string): void {
    if (!this.s.startsWith(word, this.pos)) this.fail(`'${word}'`);
    this.pos += word.length;
  }

  peek(): number {
    return this.s.charCodeAt(this.pos);
  }

  /** After a list element: true at `]` (consumed), false at `,` (consumed), error otherwise. */
  endOfList(what: string): boolean {
    const c = this.s.charCodeAt(this.pos);
    if (c === COMMA) {
      this.pos++;
      return false;
    }
    if (c === RBRACKET) {
      this.pos++;
      return true;
    }
    return this.fail(`',' or ']' in ${what}`);
  }

  /** Consumes `[`; returns true when the list is empty (`]` consumed too). */
  openList(what: string): boolean {
    this.expect(LBRACKET, `'[' starting ${what}`);
    if (this.s.charCodeAt(this.pos) === RBRACKET) {
      this.pos++;
      return true;
    }
    return false;
  }

  string(what: string): string {
    const s = this.s;
    const start = this.pos;
    if (s.charCodeAt(start) !== QUOTE) this.fail(`'"' starting ${what}`);
    let p = start + 1;
    const q = s.indexOf('"', p);
    if (q < 0) this.fail(`closing '"' of ${what}`, start);
    let bs = this.nextBs;
    if (bs >= 0 && bs < p) bs = this.nextBs = s.indexOf('\\', p);
    if (bs < 0 || bs > q) {
      // Fast path: no escapes inside.
      this.pos = q + 1;
      return s.slice(p, q);
    }
    // Slow path: unescape piecewise.
    let out = '';
    let quote = q;
    for (;;) {
      if (quote >= 0 && quote < p) quote = s.indexOf('"', p);
      if (bs >= 0 && (quote < 0 || bs < quote)) {
        if (bs + 1 >= s.length) this.fail(`closing '"' of ${what}`, start);
        out += s.slice(p, bs);
        const c = s.charCodeAt(bs + 1);
        out += c === 110 ? '\n' : c === 114 ? '\r' : c === 116 ? '\t' : s[bs + 1];
        p = bs + 2;
        bs = s.indexOf('\\', p);
        continue;
      }
      if (quote < 0) this.fail(`closing '"' of ${what}`, start);
      out += s.slice(p, quote);
      this.pos = quote + 1;
      this.nextBs = bs;
      return out;
    }
  }

  storePath(what: string): string {
    const at = this.pos;
    const p = this.string(what);
    if (!isStorePath(p)) this.fail(`a store path as ${what}`, at);
    return p;
  }

  stringList(what: string, elementWhat: string): string[] {
    const res: string[] = [];
    if (this.openList(what)) return res;
    do res.push(this.string(elementWhat));
    while (!this.endOfList(what));
    return res;
  }
}

function parseOutputs(sc: Scanner, outputs: Map<string, DrvOutput>): void {
  if (sc.openList('the outputs list')) return;
  do {
    sc.expect(LPAREN, "'(' starting an output");
    const nameAt = sc.pos;
    const name = sc.string('an output name');
    if (name.length === 0) sc.fail('a non-empty output name', nameAt);
    if (outputs.has(name)) sc.fail(`a unique output name (duplicate '${name}')`, nameAt);
    sc.expect(COMMA, "',' after the output name");
    const pathAt = sc.pos;
    const path = sc.string(`the path of output '${name}'`);
    if (path.length > 0 && !isStorePath(path)) sc.fail(`a store path for output '${name}'`, pathAt);
    sc.expect(COMMA, "',' after the output path");
    const hashAlgo = sc.string(`the hash algorithm of output '${name}'`);
    sc.expect(COMMA, "',' after the hash algorithm");
    const hash = sc.string(`the hash of output '${name}'`);
    sc.expect(RPAREN, "')' closing the output");
    outputs.set(name, {path, hashAlgo, hash});
  } while (!sc.endOfList('the outputs list'));
}

/** Versioned form only: `[names]` or `([names],[("name", node),...])`. Returns the direct output names. */
function parseDynamicNode(sc: Scanner, drv: Derivation): string[] {
  if (sc.peek() === LBRACKET) return sc.stringList('the wanted outputs', 'an output name');
  sc.expect(LPAREN, "'[' or '(' starting the wanted outputs");
  const names = sc.stringList('the wanted outputs', 'an output name');
  sc.expect(COMMA, "',' after the wanted outputs");
  if (!sc.openList('the dynamic outputs')) {
    drv.hasDynamicInputs = true;
    do {
      sc.expect(LPAREN, "'(' starting a dynamic output");
      sc.string('an output name');
      sc.expect(COMMA, "',' after the output name");
      parseDynamicNode(sc, drv);
      sc.expect(RPAREN, "')' closing the dynamic output");
    } while (!sc.endOfList('the dynamic outputs'));
  }
  sc.expect(RPAREN, "')' closing the wanted outputs");
  return names;
}

function parseInputDrvs(sc: Scanner, drv: Derivation): void {
  if (sc.openList('the input derivations list')) return;
  do {
    sc.expect(LPAREN, "'(' starting an input derivation");
    const pathAt = sc.pos;
    const path = sc.storePath('an input derivation path');
    if (!path.endsWith('.drv')) sc.fail('an input derivation path ending in .drv', pathAt);
    sc.expect(COMMA, "',' after the input derivation path");
    const namesAt = sc.pos;
    const names =
      drv.version !== undefined ? parseDynamicNode(sc, drv) : sc.stringList('the wanted outputs', 'an output name');
    if (names.length === 0 && !drv.hasDynamicInputs) sc.fail(`at least one wanted output of ${path}`, namesAt);
    sc.expect(RPAREN, "')' closing the input derivation");
    drv.inputDrvs.set(path, names);
  } while (!sc.endOfList('the input derivations list'));
}

/**
 * Parses the text of a `.drv` file. `path` (the drv's store path or file name) is kept on the result and named in
 * errors. Throws DrvParseError on malformed input.
 */
export function parseDrv(text: string, path?: string): Derivation {
  const sc = new Scanner(text, path);
  const drv: Derivation = {
    outputs: new Map(),
    inputDrvs: new Map(),
    inputSrcs: [],
    platform: '',
    builder: '',
    args: [],
    env: new Map(),
  };
  if (path !== undefined) drv.path = path;

  if (text.startsWith('Derive(')) {
    sc.pos = 7;
  } else if (text.startsWith('DrvWithVersion(')) {
    sc.pos = 15;
    const at = sc.pos;
    const version = sc.string('the format version');
    if (version !== 'xp-dyn-drv') sc.fail("format version 'xp-dyn-drv'", at);
    drv.version = version;
    sc.expect(COMMA, "',' after the format version");
  } else {
    sc.fail("'Derive(' or 'DrvWithVersion('");
  }

  parseOutputs(sc, drv.outputs);
  sc.expect(COMMA, "',' after the outputs");
  parseInputDrvs(sc, drv);
  sc.expect(COMMA, "',' after the input derivations");
  if (!sc.openList('the input sources list')) {
    do drv.inputSrcs.push(sc.storePath('an input source'));
    while (!sc.endOfList('the input sources list'));
  }
  sc.expect(COMMA, "',' after the input sources");
  drv.platform = sc.string('the platform');
  sc.expect(COMMA, "',' after the platform");
  drv.builder = sc.string('the builder');
  sc.expect(COMMA, "',' after the builder");
  drv.args = sc.stringList('the arguments list', 'an argument');
  sc.expect(COMMA, "',' after the arguments");
  if (!sc.openList('the environment list')) {
    const env = drv.env;
    do {
      sc.expect(LPAREN, "'(' starting an environment variable");
      const key = sc.string('a variable name');
      sc.expect(COMMA, "',' after the variable name");
      const value = sc.string(`the value of '${key}'`);
      sc.expect(RPAREN, "')' closing the environment variable");
      env.set(key, value);
    } while (!sc.endOfList('the environment list'));
  }
  sc.expect(RPAREN, "')' closing the derivation");
  // Nix writes nothing after the closing parenthesis; tolerate trailing whitespace only.
  for (let i = sc.pos; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 10 && c !== 9 && c !== 13) sc.fail('end of input', i);
  }
  return drv;
}

/** Reads and parses a `.drv` file (UTF-8). */
export async function readDrv(path: string): Promise<Derivation> {
  const text = await readFile(path, 'utf8');
  return parseDrv(text, path);
}

/**
 * Byte-order comparison of strings as Nix sorts them (UTF-8 byte order = code point order; differs from UTF-16
 * code unit order only around surrogates).
 */
export function compareBytes(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x < 0xd800 && y < 0xd800) return x - y;
    return (a.codePointAt(i) ?? 0) - (b.codePointAt(i) ?? 0);
  }
  return a.length - b.length;
}
