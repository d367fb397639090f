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
    host: hostname(),
    version: input.version,
  };
}
