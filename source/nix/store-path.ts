// Store path syntax: `<store dir>/<32 nix-base32 chars>-<name>`.
// Pure string checks, no file system access.

import {posix} from 'node:path';

/** Characters of Nix's base-32 alphabet (no e, o, u, t). */
export const NIX_BASE32_ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz';

const HASH_LEN = 32;
const MAX_NAME_LEN = 211;

// Lookup tables indexed by char code (ASCII only).
const IS_BASE32 = new Uint8Array(128);
for (const c of NIX_BASE32_ALPHABET) IS_BASE32[c.charCodeAt(0)] = 1;
const IS_NAME_CHAR = new Uint8Array(128);
for (const c of 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-._?=') IS_NAME_CHAR[c.charCodeAt(0)] = 1;

/** The store directory: `$NIX_STORE_DIR`, else `/nix/store`. Trailing slashes are dropped. */
export function storeDir(): string {
  const fromEnv = process.env.NIX_STORE_DIR;
  const dir = fromEnv && fromEnv.length > 0 ? fromEnv : '/nix/store';
  return dir.length > 1 ? dir.replace(/\/+$/, '') : dir;
}

/** True when `base` is a valid store object basename (`<hash>-<name>`). */
export function isStoreBasename(base: string): boolean {
  const n = base.length;
  if (n < HASH_LEN + 2 || n > HASH_LEN + 1 + MAX_NAME_LEN) return false;
  for (let i = 0; i < HASH_LEN; i++) {
    const c = base.charCodeAt(i);
    if (c >= 128 || IS_BASE32[c] === 0) return false;
  }
  if (base.charCodeAt(HASH_LEN) !== 45 /* - */) return false;
  for (let i = HASH_LEN + 1; i < n; i++) {
    const c = base.charCodeAt(i);
    if (c >= 128 || IS_NAME_CHAR[c] === 0) return false;
  }
  return true;
}

/**
 * True when `p` is syntactically a top-level store path. With `dir` the path must lie directly in that store
 * directory; without it any absolute directory is accepted (derivations may come from another store).
 */
export function isStorePath(p: string, dir?: string): boolean {
  const slash = p.lastIndexOf('/');
  if (slash <= 0 || p.charCodeAt(0) !== 47 /* / */) return false;
  if (dir !== undefined && (slash !== dir.length || !p.startsWith(dir))) return false;
  return isStoreBasename(p.slice(slash + 1));
}

/** The basename of a store path (`<hash>-<name>`). */
export function storePathBasename(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

/** The name part of a store path (after `<hash>-`). */
export function storePathName(p: string): string {
  return storePathBasename(p).slice(HASH_LEN + 1);
}

/** The hash part of a store path (the 32 base-32 characters). */
export function storePathHashPart(p: string): string {
  return storePathBasename(p).slice(0, HASH_LEN);
}

/**
 * Canonical form of an absolute path without touching the file system: collapses `//`, resolves `.` and `..`
 * (never above `/`), drops a trailing slash.
 */
export function canonPath(p: string): string {
  const out = posix.normalize(p);
  return out.length > 1 && out.endsWith('/') ? out.slice(0, -1) : out;
}

/** True when `p` is `dir` itself or lies below it (both canonical). */
export function isWithin(p: string, dir: string): boolean {
  return p === dir || (p.length > dir.length && p.startsWith(dir) && p.charCodeAt(dir.length) === 47);
}

/** Lower-case nix-base32 encoding of bytes (Nix's own bit order: last character first). */
export function toNixBase32(bytes: Uint8Array): string {
  const len = Math.ceil((bytes.length * 8) / 5);
  let s = '';
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    const c = (bytes[i]! >> j) | (i + 1 < bytes.length ? bytes[i + 1]! << (8 - j) : 0);
    s += NIX_BASE32_ALPHABET[c & 0x1f];
  }
  return s;
}

/** `sha256:<nix-base32>` (the form `nix-store --query --hash` prints) from a base-16 SHA-256 digest. */
export function sha256HexToNix(hex: string): string {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error(`not a base-16 SHA-256 digest: '${hex}'`);
  return 'sha256:' + toNixBase32(Buffer.from(hex, 'hex'));
}

/** Order of store paths in Nix's sets: by basename (`<hash>-<name>`), bytewise. */
export function compareStorePaths(a: string, b: string): number {
  const x = storePathBasename(a);
  const y = storePathBasename(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
