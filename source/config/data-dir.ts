// Where hydra-ops keeps state (build logs, runner lock, the embedded PostgreSQL), and whether a
// directory is reachable by the user the embedded PostgreSQL runs as.
//
// Choice, first match wins:
//   1. $HYDRA_DATA (Hydra's own variable; a Hydra host sets it for all its services);
//   2. /var/lib/hydra when it exists and is writable (a Hydra host without the variable);
//   3. for root: /var/lib/hydra-ops — root's home is 0700, so XDG locations under it are not
//      reachable by the `postgres` user the embedded server runs as when started by root;
//   4. $XDG_DATA_HOME/hydra-ops, else $HOME/.local/share/hydra-ops.

import {accessSync, constants, statSync} from 'node:fs';
import {homedir} from 'node:os';
import {dirname, join, resolve} from 'node:path';
import {ConfigError} from './errors.js';
import type {Env} from './dbi.js';

export type DataDirSource = '--data-dir' | 'HYDRA_DATA' | 'system' | 'root' | 'XDG_DATA_HOME' | 'home';

export interface DataDirChoice {
  dir: string;
  source: DataDirSource;
  /** One sentence for `config show` / `db status`. */
  reason: string;
}

export interface DataDirOptions {
  /** Hydra's system state directory (default /var/lib/hydra). */
  systemDir?: string;
  /** Root's data directory when no Hydra directory is usable (default /var/lib/hydra-ops). */
  rootDir?: string;
  /** Effective uid (default the process's). */
  uid?: number;
  /** Home directory when $HOME is unset (default the OS's). */
  homeDir?: string;
}

export const SYSTEM_DATA_DIR = '/var/lib/hydra';
export const ROOT_DATA_DIR = '/var/lib/hydra-ops';

function writableDirectory(path: string): boolean {
  try {
    if (!statSync(path).isDirectory()) return false;
    accessSync(path, constants.W_OK | constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function resolveDataDir(env: Env, opts: DataDirOptions = {}): DataDirChoice {
  if (env.HYDRA_DATA) {
    return {dir: resolve(env.HYDRA_DATA), source: 'HYDRA_DATA', reason: 'from $HYDRA_DATA'};
  }
  const systemDir = opts.systemDir ?? SYSTEM_DATA_DIR;
  if (writableDirectory(systemDir)) {
    return {dir: systemDir, source: 'system', reason: `${systemDir} exists and is writable ($HYDRA_DATA unset)`};
  }
  const uid = opts.uid ?? process.getuid?.() ?? -1;
  if (uid === 0) {
    const rootDir = opts.rootDir ?? ROOT_DATA_DIR;
    return {
      dir: rootDir,
      source: 'root',
      reason: `running as root and ${systemDir} is not usable; root's home is not reachable by the postgres user`,
    };
  }
  if (env.XDG_DATA_HOME && env.XDG_DATA_HOME.startsWith('/')) {
    return {dir: join(env.XDG_DATA_HOME, 'hydra-ops'), source: 'XDG_DATA_HOME', reason: 'from $XDG_DATA_HOME'};
  }
  const home = env.HOME || opts.homeDir || homedir();
  if (!home) throw new ConfigError('cannot choose a data directory: neither HYDRA_DATA nor HOME is set', {field: 'HYDRA_DATA'});
  return {
    dir: join(home, '.local', 'share', 'hydra-ops'),
    source: 'home',
    reason: `${systemDir} is not usable; per-user default under $HOME`,
  };
}

/** The embedded PostgreSQL data directory inside the data directory. */
export function embeddedPgDir(dataDir: string): string {
  return join(dataDir, 'pg');
}

export type Reachability =
  | {ok: true}
  | {
      ok: false;
      /** First directory on the way that the user cannot traverse. */
      dir: string;
      /** Its permission bits, e.g. 0o700. */
      mode: number;
      /** The execute bit the user needs: 'u+x', 'g+x' or 'o+x'. */
      needed: 'u+x' | 'g+x' | 'o+x';
      message: string;
    };

/**
 * Walks from `/` to `path` and reports the first existing directory that `uid`/`gid` (plus
 * supplementary `groups`) cannot traverse. Components that do not exist yet are not checked
 * (whoever creates them decides their mode). uid 0 can traverse everything.
 */
export function checkReachableByUser(path: string, uid: number, gid: number, groups: readonly number[] = []): Reachability {
  if (uid === 0) return {ok: true};
  const absolute = resolve(path);
  const chain: string[] = [];
  for (let dir = absolute; ; dir = dirname(dir)) {
    chain.unshift(dir);
    if (dir === dirname(dir)) break;
  }
  for (const dir of chain) {
    let st;
    try {
      st = statSync(dir);
    } catch {
      return {ok: true};
    }
    if (!st.isDirectory()) {
      if (dir === absolute) return {ok: true};
      continue;
    }
    const mode = st.mode & 0o7777;
    let needed: 'u+x' | 'g+x' | 'o+x';
    let allowed: boolean;
    if (st.uid === uid) {
      needed = 'u+x';
      allowed = (mode & 0o100) !== 0;
    } else if (st.gid === gid || groups.includes(st.gid)) {
      needed = 'g+x';
      allowed = (mode & 0o010) !== 0;
    } else {
      needed = 'o+x';
      allowed = (mode & 0o001) !== 0;
    }
    if (!allowed) {
      const octal = '0' + mode.toString(8).padStart(3, '0');
      const fixed = '0' + (mode | (needed === 'u+x' ? 0o100 : needed === 'g+x' ? 0o010 : 0o001)).toString(8).padStart(3, '0');
      return {
        ok: false,
        dir,
        mode,
        needed,
        message:
          `directory ${dir} (mode ${octal}, owner ${st.uid}:${st.gid}) cannot be traversed by uid ${uid} ` +
          `gid ${gid}: it needs ${needed} (e.g. chmod ${fixed} ${dir}), or choose a data directory outside it`,
      };
    }
  }
  return {ok: true};
}
