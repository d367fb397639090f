// Parsers for a build's `<out>/nix-support/` files (build products, release name, metrics, failure marker).
// Every byte of these files is hostile input: lines that do not match exactly are skipped, paths must stay inside
// the build's own outputs, and files are read through an injectable reader (local store, or members seen while a
// NAR streams in) with a size cap.
//
// Longer than the other modules because it is one directory's parsers sharing one hostile-input reader (size cap,
// paths kept inside the outputs).

import {createHash} from 'node:crypto';
import {createReadStream} from 'node:fs';
import {lstat, open} from 'node:fs/promises';
import {canonPath, compareStorePaths, isWithin, storeDir as defaultStoreDir, storePathName} from './store-path.js';
import type {BuildMetric} from '../db/runner-sql.js';
import type {NewBuildProduct} from '../db/queries/builds.js';

export type ProductFileType = 'regular' | 'directory' | 'symlink' | 'missing';

export interface ProductFileEntry {
  type: ProductFileType;
  /** Regular files only. */
  size?: number;
  /** Regular files only: SHA-256 of the contents, lower-case base 16. */
  sha256?: string;
}

/**
 * Type (and for regular files size and SHA-256) of the output member at an absolute, canonical path, not
 * following symlinks anywhere below the output root; `missing` when it is not a member of an output.
 */
export type ProductFileInfo = (path: string) => Promise<ProductFileEntry>;

export type {BuildMetric} from '../db/runner-sql.js';
export type {NewBuildProduct} from '../db/queries/builds.js';

export interface ProductContext {
  /** Store directory (default: the local one). */
  storeDir?: string;
  /** The build's output paths; a product must be one of them or lie below one. */
  outputs: readonly string[];
  fileInfo: ProductFileInfo;
  /** Products already taken (by earlier outputs' files); at most MAX_BUILD_PRODUCTS in all. Default 0. */
  taken?: number;
  /** Member path → its entry, shared across products files: each file is looked at (hashed) once. */
  infoCache?: Map<string, Promise<ProductFileEntry>>;
  /** Lines beyond the product cap and similar notes. */
  onWarning?(message: string): void;
  /** Stops the work (rejects with the signal's reason) when aborted. */
  signal?: AbortSignal;
}

/**
 * Most products a build records (hydra-ops rule; Hydra has none): a products file is hostile input, and each
 * product is a row in BuildProducts plus a hash of its file. Products beyond it are dropped with a warning.
 */
export const MAX_BUILD_PRODUCTS = 1000;

// POSIX [[:space:]]: space, \t, \n, \v, \f, \r.
const SPACE = '[ \\t\\n\\v\\f\\r]';
// Anchored, no nested quantifiers: linear in the line length.
const PRODUCT_LINE = new RegExp(
  `^([a-zA-Z0-9_-]+)${SPACE}+([a-zA-Z0-9_-]+)${SPACE}+("[^"]+"|[^ \\t\\n\\v\\f\\r<>"]+)(?:${SPACE}+([^ \\t\\n\\v\\f\\r<>]+))?$`,
);
const PRODUCT_NAME = /^[a-zA-Z0-9.@:_ -]*$/;
const RELEASE_NAME = /^[a-zA-Z0-9.@:_-]+$/;
const METRIC_NAME = /^[a-zA-Z0-9._-]+$/;
const METRIC_UNIT = /^[a-zA-Z0-9._%-]+$/;

/** Splits on `\n` and drops empty pieces (Nix's tokenizeString). */
function nonEmptyLines(text: string): string[] {
  return text.split('\n').filter((l) => l.length > 0);
}

/** One line of `hydra-build-products`, before any path checks; null when it does not match as a whole. */
export function parseProductLine(line: string): {type: string; subtype: string; path: string; defaultPath: string} | null {
  const m = PRODUCT_LINE.exec(line);
  if (m === null) return null;
  const raw = m[3]!;
  const path = raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1) : raw;
  return {type: m[1]!, subtype: m[2]!, path, defaultPath: m[4] ?? ''};
}

/**
 * Products declared in a `hydra-build-products` file. Lines that do not match, paths that are relative, outside
 * the store, outside the build's outputs or not present are skipped. `firstNr` numbers the first product.
 */
export async function parseBuildProducts(text: string, ctx: ProductContext, firstNr = 1): Promise<NewBuildProduct[]> {
  const dir = ctx.storeDir ?? defaultStoreDir();
  const outputs = ctx.outputs.map(canonPath);
  const cache = ctx.infoCache ?? new Map<string, Promise<ProductFileEntry>>();
  const res: NewBuildProduct[] = [];
  let dropped = 0;
  for (const line of nonEmptyLines(text)) {
    ctx.signal?.throwIfAborted();
    const parsed = parseProductLine(line);
    if (parsed === null) continue;
    if (parsed.path.length === 0 || !parsed.path.startsWith('/') || parsed.path.includes('\0')) continue;
    const path = canonPath(parsed.path);
    if (!isWithin(path, dir) || path === dir) continue;
    const output = outputs.find((o) => isWithin(path, o));
    if (output === undefined) continue;
    if ((ctx.taken ?? 0) + res.length >= MAX_BUILD_PRODUCTS) {
      dropped++;
      continue;
    }
    let pending = cache.get(path);
    if (pending === undefined) cache.set(path, (pending = ctx.fileInfo(path)));
    const info = await pending;
    if (info.type === 'missing') continue;
    let name = path === output ? '' : path.slice(path.lastIndexOf('/') + 1);
    if (!PRODUCT_NAME.test(name)) name = '';
    const regular = info.type === 'regular';
    res.push({
      productnr: firstNr + res.length,
      type: parsed.type,
      subtype: parsed.subtype,
      filesize: regular && info.size !== undefined ? info.size : null,
      sha256hash: regular && info.sha256 !== undefined ? info.sha256 : null,
      path,
      name,
      defaultpath: parsed.defaultPath,
    });
  }
  if (dropped > 0) ctx.onWarning?.(`${dropped} build product${dropped === 1 ? '' : 's'} dropped: a build records at most ${MAX_BUILD_PRODUCTS}`);
  return res;
}

/**
 * Products when no output has a products file: every output that is a directory becomes type `nix-build`,
 * subtype '' for `out` else the output name, name = the store path's name part. Outputs in name order.
 */
export function defaultProducts(
  outputs: readonly {name: string; path: string; type: ProductFileType}[],
): NewBuildProduct[] {
  const res: NewBuildProduct[] = [];
  const sorted = [...outputs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const o of sorted) {
    if (o.type !== 'directory') continue;
    res.push({
      productnr: res.length + 1,
      type: 'nix-build',
      subtype: o.name === 'out' ? '' : o.name,
      filesize: null,
      sha256hash: null,
      path: o.path,
      name: storePathName(o.path),
      defaultpath: '',
    });
  }
  return res;
}

/** Trims space, \n, \r and \t at both ends (Nix's trim). */
function trimNix(s: string): string {
  let a = 0;
  let b = s.length;
  const ws = (c: number) => c === 32 || c === 10 || c === 13 || c === 9;
  while (a < b && ws(s.charCodeAt(a))) a++;
  while (b > a && ws(s.charCodeAt(b - 1))) b--;
  return s.slice(a, b);
}

/** Contents of `hydra-release-name`, trimmed; null unless it matches `[a-zA-Z0-9.@:_-]+`. */
export function parseReleaseName(text: string): string | null {
  const s = trimNix(text);
  return RELEASE_NAME.test(s) ? s : null;
}

// The prefix of a string that C's strtod accepts (after leading whitespace, which the tokenizer already removed).
const DECIMAL_PREFIX = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/;
const HEX_PREFIX = /^[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?/;
const SPECIAL_PREFIX = /^([+-]?)(?:(inf(?:inity)?)|(nan(?:\([0-9a-zA-Z_]*\))?))/i;
const MIN_NORMAL = 2.2250738585072014e-308;

function parseHexFloat(s: string): number {
  const m = /^([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?$/.exec(s)!;
  const intPart = m[2] ?? '';
  const frac = m[3] ?? '';
  let mant = 0;
  for (const c of intPart + frac) mant = mant * 16 + parseInt(c, 16);
  const exp = Number(m[4] ?? '0') - 4 * frac.length;
  const v = mant * Math.pow(2, exp);
  return m[1] === '-' ? -v : v;
}

/**
 * A metric value the way C++ `std::stod` reads it: the longest numeric prefix (decimal, hexadecimal, inf, nan);
 * null when there is none or the value is out of range (overflow or underflow).
 */
export function parseMetricValue(field: string): number | null {
  const special = SPECIAL_PREFIX.exec(field);
  if (special) {
    const neg = special[1] === '-';
    if (special[2] !== undefined) return neg ? -Infinity : Infinity;
    return NaN;
  }
  let v: number;
  let digits: string;
  const hex = HEX_PREFIX.exec(field);
  if (hex) {
    v = parseHexFloat(hex[0]);
    digits = hex[0].replace(/^[+-]?0[xX]/, '').replace(/[pP].*$/, '');
  } else {
    const dec = DECIMAL_PREFIX.exec(field);
    if (!dec) return null;
    v = Number(dec[0]);
    digits = dec[0].replace(/[eE].*$/, '');
  }
  if (!Number.isFinite(v)) return null; // overflow
  const nonZero = /[1-9a-fA-F]/.test(digits);
  if (nonZero && (v === 0 || Math.abs(v) < MIN_NORMAL)) return null; // underflow
  return v;
}

/** `hydra-metrics`: `name value [unit]` per line; invalid lines skipped; a later line for the same name wins. */
export function parseMetrics(text: string, into = new Map<string, BuildMetric>()): Map<string, BuildMetric> {
  for (const line of nonEmptyLines(text)) {
    const fields = line.split(/[ \t\n\r]+/).filter((f) => f.length > 0);
    if (fields.length < 2) continue;
    const name = fields[0]!;
    if (!METRIC_NAME.test(name)) continue;
    const value = parseMetricValue(fields[1]!);
    if (value === null) continue;
    const unit = fields.length >= 3 && METRIC_UNIT.test(fields[2]!) ? fields[2]! : null;
    into.delete(name);
    into.set(name, {name, value, unit});
  }
  return into;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the files

/** Result of reading a member: missing / not a regular file, too large, or the bytes. */
export type MemberContents = {kind: 'absent'} | {kind: 'too-large'; size: number} | {kind: 'ok'; data: Buffer};

/** Read access to the members of a build's outputs (local store, or a NAR being streamed). */
export interface NixSupportFs {
  /** See ProductFileInfo. */
  fileInfo: ProductFileInfo;
  /** Like fileInfo without size and hash (cheap: no hashing of large files). */
  typeOf(path: string): Promise<ProductFileType>;
  /** Contents of a regular-file member; `absent` for other types or when missing; `too-large` beyond `maxBytes`. */
  readRegular(path: string, maxBytes: number): Promise<MemberContents>;
}

export interface NixSupportResult {
  products: NewBuildProduct[];
  releaseName: string | null;
  /** Keyed by metric name. */
  metrics: Map<string, BuildMetric>;
  /** Some output has `nix-support/failed` (any file type) → build status 6. */
  failed: boolean;
  /** Files that were ignored (too large), for logging. */
  warnings: string[];
}

/** Largest nix-support file read (hydra-ops rule: bounds memory on hostile outputs). */
export const NIX_SUPPORT_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Reads `<out>/nix-support/{failed,hydra-build-products,hydra-release-name,hydra-metrics}` of every output and
 * builds products (numbered from 1), release name (a later output wins), metrics (a later line wins) and the
 * failure marker. Outputs are visited in store-path order, as Hydra does; with no products file anywhere, each
 * directory output becomes a default product.
 */
export async function collectNixSupport(
  outputs: readonly {name: string; path: string}[],
  fs: NixSupportFs,
  options: {storeDir?: string; maxBytes?: number; signal?: AbortSignal} = {},
): Promise<NixSupportResult> {
  const maxBytes = options.maxBytes ?? NIX_SUPPORT_MAX_BYTES;
  const outputPaths = outputs.map((o) => canonPath(o.path));
  const byPath = [...new Set(outputPaths)].sort(compareStorePaths);
  const result: NixSupportResult = {products: [], releaseName: null, metrics: new Map(), failed: false, warnings: []};
  let explicitProducts = false;

  const signal = options.signal;
  const read = async (file: string): Promise<string | null> => {
    signal?.throwIfAborted();
    const r = await fs.readRegular(file, maxBytes);
    if (r.kind === 'absent') return null;
    if (r.kind === 'too-large') {
      result.warnings.push(`${file}: ignored, ${r.size} bytes exceeds the ${maxBytes}-byte limit`);
      return '';
    }
    return r.data.toString('utf8');
  };

  const ctx: ProductContext = {
    outputs: outputPaths,
    fileInfo: fs.fileInfo,
    infoCache: new Map(),
    onWarning: (w) => result.warnings.push(w),
  };
  if (options.storeDir !== undefined) ctx.storeDir = options.storeDir;
  if (signal !== undefined) ctx.signal = signal;
  for (const out of byPath) {
    const support = `${out}/nix-support`;
    if ((await fs.typeOf(`${support}/failed`)) !== 'missing') result.failed = true;
    const products = await read(`${support}/hydra-build-products`);
    if (products === null) continue;
    explicitProducts = true;
    ctx.taken = result.products.length;
    result.products.push(...(await parseBuildProducts(products, ctx, result.products.length + 1)));
  }

  if (!explicitProducts) {
    const typed = [];
    for (const o of outputs) typed.push({name: o.name, path: canonPath(o.path), type: await fs.typeOf(canonPath(o.path))});
    result.products = defaultProducts(typed);
  }

  for (const out of byPath) {
    const text = await read(`${out}/nix-support/hydra-release-name`);
    if (text === null) continue;
    const name = parseReleaseName(text);
    if (name !== null) result.releaseName = name;
  }

  for (const out of byPath) {
    const text = await read(`${out}/nix-support/hydra-metrics`);
    if (text !== null) parseMetrics(text, result.metrics);
  }
  signal?.throwIfAborted();
  return result;
}

/** An in-memory member, e.g. recorded while a NAR streams in. `contents` only for the files worth keeping. */
export interface RecordedMember {
  type: Exclude<ProductFileType, 'missing'>;
  size?: number;
  sha256?: string;
  contents?: Buffer;
}

/** A NixSupportFs over members recorded elsewhere (keyed by absolute path, e.g. while streaming a NAR). */
export function memberMapFs(members: ReadonlyMap<string, RecordedMember>): NixSupportFs {
  return {
    fileInfo: async (path) => {
      const m = members.get(path);
      if (m === undefined) return {type: 'missing'};
      const e: ProductFileEntry = {type: m.type};
      if (m.type === 'regular') {
        if (m.size !== undefined) e.size = m.size;
        if (m.sha256 !== undefined) e.sha256 = m.sha256;
      }
      return e;
    },
    typeOf: async (path) => members.get(path)?.type ?? 'missing',
    readRegular: async (path, maxBytes) => {
      const m = members.get(path);
      if (m === undefined || m.type !== 'regular' || m.contents === undefined) return {kind: 'absent'};
      if (m.contents.length > maxBytes) return {kind: 'too-large', size: m.contents.length};
      return {kind: 'ok', data: m.contents};
    },
  };
}

/**
 * A NixSupportFs over the local file system, confined to `outputs`: a path is a member only if it is an output
 * or lies below one and no component below the output root is a symlink (as in the NAR, where a symlinked
 * directory has no members).
 */
export function localNixSupportFs(outputs: readonly string[], signal?: AbortSignal): NixSupportFs {
  const roots = outputs.map(canonPath);

  /** lstat of the member, or null when it is not a member. */
  const memberStat = async (path: string) => {
    const p = canonPath(path);
    const root = roots.find((r) => isWithin(p, r));
    if (root === undefined) return null;
    let cur = root;
    const rest = p.length > root.length ? p.slice(root.length + 1).split('/') : [];
    try {
      let st = await lstat(cur);
      for (const part of rest) {
        if (!st.isDirectory()) return null;
        cur = `${cur}/${part}`;
        st = await lstat(cur);
      }
      return st;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw e;
    }
  };

  const typeOf = async (path: string): Promise<ProductFileType> => {
    const st = await memberStat(path);
    if (st === null) return 'missing';
    if (st.isDirectory()) return 'directory';
    if (st.isSymbolicLink()) return 'symlink';
    return st.isFile() ? 'regular' : 'missing';
  };

  return {
    typeOf,
    fileInfo: async (path) => {
      const st = await memberStat(path);
      if (st === null) return {type: 'missing'};
      if (st.isDirectory()) return {type: 'directory'};
      if (st.isSymbolicLink()) return {type: 'symlink'};
      if (!st.isFile()) return {type: 'missing'};
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of createReadStream(path, signal ? {signal} : {})) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      return {type: 'regular', size, sha256: hash.digest('hex')};
    },
    readRegular: async (path, maxBytes) => {
      const st = await memberStat(path);
      if (st === null || !st.isFile()) return {kind: 'absent'};
      if (st.size > maxBytes) return {kind: 'too-large', size: st.size};
      const fh = await open(path, 'r');
      try {
        const buf = Buffer.alloc(Math.min(st.size, maxBytes) + 1);
        let n = 0;
        for (;;) {
          const {bytesRead} = await fh.read(buf, n, buf.length - n, n);
          if (bytesRead === 0) break;
          n += bytesRead;
          if (n === buf.length) break;
        }
        if (n > maxBytes) return {kind: 'too-large', size: n};
        return {kind: 'ok', data: buf.subarray(0, n)};
      } finally {
        await fh.close();
      }
    },
  };
}
