// Files that hold secrets (the embedded server's password file for initdb, its identity record):
// created with mode 0600 by open(2) itself (O_CREAT|O_EXCL with the mode), so they are never
// readable by anyone else, not even for a moment and whatever the umask (a umask can only remove
// bits). Content goes to a fresh temporary file next to the target that is renamed over it, so a
// reader sees the old or the new content, never a half-written file.
import {closeSync, fchownSync, fsyncSync, openSync, renameSync, rmSync, writeSync} from 'node:fs';
import {randomBytes} from 'node:crypto';
import {basename, dirname, join} from 'node:path';

export const PRIVATE_FILE_MODE = 0o600;

export interface PrivateFileOptions {
  /** Give the file to this uid/gid before any content is written (root handing a file to `postgres`). */
  owner?: {uid: number; gid: number};
}

/** Creates a new file with mode 0600 and writes `data`; fails with EEXIST when `path` exists. */
export function createPrivateFile(path: string, data: string | Buffer, opts: PrivateFileOptions = {}): void {
  const fd = openSync(path, 'wx', PRIVATE_FILE_MODE);
  try {
    if (opts.owner) fchownSync(fd, opts.owner.uid, opts.owner.gid);
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    rmSync(path, {force: true});
    throw error;
  }
  closeSync(fd);
}

/** Replaces (or creates) `path` atomically with a mode-0600 file holding `data`. */
export function writePrivateFile(path: string, data: string | Buffer, opts: PrivateFileOptions = {}): void {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  createPrivateFile(temp, data, opts);
  try {
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, {force: true});
    throw error;
  }
}
