// Exit codes of every subcommand (documented in README.md):
//   0 ok · 1 refused or failed · 2 usage error · 3 not found · 4 permission denied · 69 database unreachable
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  notFound: 3,
  permission: 4,
  unavailable: 69,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

const NAMES: Record<number, string> = {
  0: 'ok',
  1: 'failed',
  2: 'usage',
  3: 'not-found',
  4: 'permission-denied',
  69: 'unavailable',
};

/** An error that ends a subcommand with a specific exit code and a machine-readable code. */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'CliError';
  }

  get code(): string {
    return NAMES[this.exitCode] ?? 'failed';
  }
}

export const usageError = (message: string, details?: unknown) => new CliError(EXIT.usage, message, details);
export const notFound = (message: string, details?: unknown) => new CliError(EXIT.notFound, message, details);
export const permissionDenied = (message: string, details?: unknown) => new CliError(EXIT.permission, message, details);
export const failed = (message: string, details?: unknown) => new CliError(EXIT.failed, message, details);
