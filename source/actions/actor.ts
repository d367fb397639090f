// Who performs an action: the Hydra user the operator maps to, plus the local facts the audit log records.
import {hostname, userInfo} from 'node:os';

export interface Actor {
  /** Hydra Users.userName checked against UserRoles / Projects / ProjectMembers. */
  hydraUser: string;
  /** Where hydraUser came from (`--user`, `HYDRA_OPS_USER`, `settings`, `OS login name`). */
  hydraUserSource: string;
  /** Explicit trusted-local-admin setting: treated as a Hydra admin even when not in Users. */
  localAdmin: boolean;
  /** Read-only mode: every mutation is refused. */
  readonly: boolean;
  /** Where read-only mode came from (`--readonly`, `settings`, …), for the refusal message. */
  readonlySource?: string;
  /** Unix login of the process (audit). */
  unixUser: string;
  /** Real uid of the process (audit). */
  unixUid: number | null;
  /** SUDO_USER when run through sudo (audit; informational — the environment can claim anything). */
  sudoUser: string | null;
  /** Host name (audit). */
  host: string;
  /** hydra-ops version (audit). */
  version: string;
}

export interface ActorInput {
  hydraUser: string;
  hydraUserSource?: string;
  localAdmin?: boolean;
  readonly?: boolean;
  readonlySource?: string;
  version: string;
}

export function makeActor(input: ActorInput): Actor {
  let unixUser: string;
  try {
    // The passwd entry of the process's uid, not $USER / $LOGNAME (which the environment can set to anything).
    unixUser = userInfo().username;
  } catch {
    unixUser = process.env.LOGNAME || process.env.USER || `uid ${process.getuid?.() ?? '?'}`;
  }
  return {
    hydraUser: input.hydraUser,
    hydraUserSource: input.hydraUserSource ?? 'given',
    localAdmin: input.localAdmin ?? false,
    readonly: input.readonly ?? false,
    readonlySource: input.readonlySource,
    unixUser,
    unixUid: process.getuid?.() ?? null,
    sudoUser: process.env.SUDO_USER || null,
    host: hostname(),
    version: input.version,
  };
}
