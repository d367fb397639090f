// Restoring a NAR (Nix archive) into a plain directory tree outside the store: regular files (with the
// executable bit), directories and symlinks, streamed (file contents never sit in memory whole). The archive's
// grammar and its checks are nar.ts's parseNar (entry names as Nix checks them: non-empty, not `.` or `..`, no
// `/` or NUL, strictly increasing within a directory; limits on depth, entries, sizes); this module only writes.
//
// Safety: files are created with O_EXCL | O_NOFOLLOW and directories with a plain mkdir, so nothing is ever
// written through a symlink or outside the target. Modes and times follow the store's canonical form (files
// 0444 / 0555, directories 0555, mtime 1), so a diff against a store path shows content differences only.
// `removeUnpacked` makes such a tree writable again and deletes it.

import {constants} from 'node:fs';
import {chmod, lstat, lutimes, mkdir, open, readdir, rm, symlink, utimes} from 'node:fs/promises';
import {join} from 'node:path';
import type {Readable} from 'node:stream';
import {NarError, parseNar, type NarLimits} from './nar.js';
import {WireReader} from './wire.js';

export interface UnpackResult {
  /** Entries restored (files, directories and symlinks). */
  entries: number;
  /** Bytes of regular-file contents written. */
  bytes: number;
}

/**
 * Unpacks the NAR read from `source` at `target`, which must not exist yet (its parent must). On failure the
 * source stream is destroyed (so its producer stops) and what was written so far stays for inspection.
 */
export async function unpackNar(source: Readable | AsyncIterable<Buffer>, target: string, options: {label?: string; limits?: Partial<NarLimits>} = {}): Promise<UnpackResult> {
  const label = options.label ? `NAR of ${options.label}` : 'NAR';
  const reader = new WireReader(source, {label});
  const at = (rel: string) => (rel === '' ? target : join(target, rel));
  let bytes = 0;
  const dirs: string[] = [];
  try {
    const result = await parseNar(reader, {
      label: options.label,
      limits: options.limits,
      contentsCap: 0,
      wantContents: () => false,
      fileSink: async (entry) => {
        const fh = await open(at(entry.path), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
        return {
          write: async (piece) => {
            await fh.write(piece);
            bytes += piece.length;
          },
          close: () => fh.close(),
        };
      },
      visitor: async (entry) => {
        const path = at(entry.path);
        if (entry.type === 'directory') {
          await mkdir(path, {mode: 0o700});
          dirs.push(path);
        } else if (entry.type === 'regular') {
          await chmod(path, entry.executable ? 0o555 : 0o444);
          await utimes(path, 1, 1);
        } else {
          await symlink(entry.target!, path);
          await lutimes(path, 1, 1).catch(() => undefined);
        }
      },
    });
    if (!(await reader.atEof())) throw new NarError(`bad ${label}: trailing data after the archive`, result.narSize);
    // Directories become read-only last (children first), as in the store.
    for (const d of dirs.reverse()) {
      await chmod(d, 0o555);
      await utimes(d, 1, 1);
    }
    return {entries: result.entries, bytes};
  } catch (error) {
    // Stop the producer: a stream nobody reads any more would otherwise block it (and its process) forever.
    const s = source as {destroy?: (e?: Error) => void};
    if (typeof s.destroy === 'function') s.destroy(error instanceof Error ? error : undefined);
    throw error;
  }
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
