// Restoring a NAR (Nix archive) into a plain directory tree outside the store: regular files (with the
// executable bit), directories and symlinks, streamed (file contents never sit in memory whole).
//
// Safety: every entry name is checked as Nix does (non-empty, not `.` or `..`, no `/` or NUL, strictly
// increasing within a directory), files are created with O_EXCL | O_NOFOLLOW and directories with a plain
// mkdir, so nothing is ever written through a symlink or outside the target. Modes and times follow the
// store's canonical form (files 0444 / 0555, directories 0555, mtime 1), so a diff against a store path shows
// content differences only. `removeUnpacked` makes such a tree writable again and deletes it.

import {constants} from 'node:fs';
import {chmod, lstat, lutimes, mkdir, open, readdir, rm, symlink, utimes} from 'node:fs/promises';
import {join} from 'node:path';
import type {Readable} from 'node:stream';
import {NAR_MAGIC, NarError, DEFAULT_NAR_LIMITS, type NarLimits} from './nar.js';
import {ProtocolError, WireReader} from './wire.js';

export interface UnpackResult {
  /** Entries restored (files, directories and symlinks). */
  entries: number;
  /** Bytes of regular-file contents written. */
  bytes: number;
}

const MAX_TOKEN = 64;

/**
 * Unpacks the NAR read from `source` at `target`, which must not exist yet (its parent must). On failure the
 * source stream is destroyed (so its producer stops) and what was written so far stays for inspection.
 */
export async function unpackNar(source: Readable | AsyncIterable<Buffer>, target: string, options: {label?: string; limits?: Partial<NarLimits>} = {}): Promise<UnpackResult> {
  const limits: NarLimits = {...DEFAULT_NAR_LIMITS, ...options.limits};
  const label = options.label ? `NAR of ${options.label}` : 'NAR';
  const reader = new WireReader(source, {label});
  const fail = (message: string): never => {
    throw new NarError(`bad ${label}: ${message}`, reader.bytesRead);
  };
  const wrap = async <T>(body: () => Promise<T>): Promise<T> => {
    try {
      return await body();
    } catch (error) {
      if (error instanceof ProtocolError && !(error instanceof NarError)) fail(error.message.replace(/ \(at byte \d+\)$/, ''));
      throw error;
    }
  };
  const token = (what: string) => wrap(async () => (await reader.readBytes({max: MAX_TOKEN, what})).toString('latin1'));
  const expect = async (expected: string, what: string) => {
    const got = await token(what);
    if (got !== expected) fail(`expected '${expected}' (${what}), got '${got.slice(0, 40)}'`);
  };
  let entries = 0;
  let bytes = 0;
  const dirs: string[] = [];

  const node = async (path: string, rel: string, depth: number): Promise<void> => {
    if (++entries > limits.maxEntries) fail(`more than ${limits.maxEntries} entries`);
    if (depth > limits.maxDepth) fail(`nesting deeper than ${limits.maxDepth} at '${rel}'`);
    await expect('(', 'open tag');
    await expect('type', 'type field');
    const type = await token('file type');
    if (type === 'regular') {
      let executable = false;
      let field = await token('field');
      if (field === 'executable') {
        if ((await token('executable marker')) !== '') fail(`executable marker has a value at '${rel}'`);
        executable = true;
        field = await token('field');
      }
      if (field !== 'contents') fail(`expected 'contents' at '${rel}', got '${field.slice(0, 40)}'`);
      const len = await wrap(() => reader.readU64(`size of '${rel}'`));
      if (len > limits.maxFileSize) fail(`file '${rel}' of ${len} bytes exceeds the limit of ${limits.maxFileSize}`);
      const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        await wrap(() => reader.readStreaming(len, (piece) => fh.write(piece).then(() => undefined), `contents of '${rel}'`));
        await wrap(() => reader.readPadding(len, `contents of '${rel}'`));
      } finally {
        await fh.close();
      }
      bytes += len;
      await chmod(path, executable ? 0o555 : 0o444);
      await utimes(path, 1, 1);
      await expect(')', `close tag of '${rel}'`);
    } else if (type === 'symlink') {
      await expect('target', `target field of '${rel}'`);
      const raw = await wrap(() => reader.readBytes({max: limits.maxTargetLength, what: `symlink target of '${rel}'`}));
      if (raw.length === 0) fail(`symlink '${rel}' has an empty target`);
      if (raw.includes(0)) fail(`symlink '${rel}' target contains NUL`);
      await symlink(raw.toString('utf8'), path);
      await lutimes(path, 1, 1).catch(() => undefined);
      await expect(')', `close tag of '${rel}'`);
    } else if (type === 'directory') {
      await mkdir(path, {mode: 0o700});
      dirs.push(path);
      let previous: Buffer | undefined;
      for (;;) {
        const field = await token(`field of directory '${rel}'`);
        if (field === ')') break;
        if (field !== 'entry') fail(`expected 'entry' or ')' in directory '${rel}', got '${field.slice(0, 40)}'`);
        await expect('(', 'open tag of entry');
        await expect('name', 'name field');
        const name = await wrap(() => reader.readBytes({max: limits.maxNameLength, what: `entry name in '${rel}'`}));
        const text = name.toString('utf8');
        if (name.length === 0) fail(`empty entry name in directory '${rel}'`);
        if (text === '.' || text === '..') fail(`invalid entry name '${text}' in directory '${rel}'`);
        if (name.includes(0x2f) || name.includes(0)) fail(`entry name in directory '${rel}' contains '/' or NUL`);
        if (previous && Buffer.compare(previous, name) >= 0) fail(`directory '${rel}' is not sorted at '${text}'`);
        previous = name;
        await expect('node', 'node field');
        await node(join(path, text), rel === '' ? text : `${rel}/${text}`, depth + 1);
        await expect(')', `close tag of entry '${text}'`);
      }
    } else {
      fail(`unknown file type '${type.slice(0, 40)}' at '${rel}'`);
    }
  };

  try {
    const magic = await token('magic');
    if (magic !== NAR_MAGIC) fail(`input doesn't look like a Nix archive (magic '${magic.slice(0, 40)}')`);
    await node(target, '', 0);
    if (!(await reader.atEof())) fail('trailing data after the archive');
  } catch (error) {
    // Stop the producer: a stream nobody reads any more would otherwise block it (and its process) forever.
    const s = source as {destroy?: (e?: Error) => void};
    if (typeof s.destroy === 'function') s.destroy(error instanceof Error ? error : undefined);
    throw error;
  }
  // Directories become read-only last (children first), as in the store.
  for (const d of dirs.reverse()) {
    await chmod(d, 0o555);
    await utimes(d, 1, 1);
  }
  return {entries, bytes};
}

/** Deletes a tree written by unpackNar (restoring write permission on its directories first). */
export async function removeUnpacked(path: string): Promise<void> {
  const makeWritable = async (p: string): Promise<void> => {
    let st;
    try {
      st = await lstat(p);
    } catch {
      return;
    }
    if (!st.isDirectory()) return;
    await chmod(p, 0o755);
    for (const name of await readdir(p)) await makeWritable(join(p, name));
  };
  await makeWritable(path);
  await rm(path, {recursive: true, force: true});
}
