// Why an operator action did not happen. The CLI maps each kind to its exit code; the TUI shows the message.
export type ActionErrorKind =
  /** read-only mode (--readonly, the readonly setting) */
  | 'readonly'
  /** the acting Hydra user lacks the privilege, or is unknown */
  | 'permission'
  /** a build, eval or machine named explicitly does not exist */
  | 'not-found'
  /** the request itself is malformed (bad filter, bad id) */
  | 'usage'
  /** allowed, but the database state does not permit it (e.g. the runner lock is held) */
  | 'refused';

export class ActionError extends Error {
  constructor(
    readonly kind: ActionErrorKind,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ActionError';
  }
}
