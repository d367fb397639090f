// The login name as Hydra reads it ($LOGNAME), for defaults such as gc_roots_dir and the Hydra user.
import {userInfo} from 'node:os';
import type {Env} from './dbi.js';

/** $LOGNAME, else $USER, else the passwd entry of this process's uid (`uid N` when it has none). */
export function loginName(env: Env): string {
  if (env.LOGNAME) return env.LOGNAME;
  if (env.USER) return env.USER;
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}
