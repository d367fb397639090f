// The environment of programs hydra-ops runs on an operator's behalf (post-build commands, the diff hook of a
// reproducibility check, the evaluator): a short list of harmless variables, never the database URL, its
// password or HYDRA_DBI. The `commandEnv` setting names further variables to pass through (README
// "Post-build commands").

/** Passed through when set. */
export const BASE_CHILD_ENV = [
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'LANG',
  'LC_ALL',
  'LC_CTYPE',
  'TZ',
  'TMPDIR',
  'NIX_REMOTE',
  'NIX_CONF_DIR',
  'NIX_STATE_DIR',
  'NIX_STORE_DIR',
  'NIX_SSL_CERT_FILE',
  'SSL_CERT_FILE',
  'HYDRA_DATA',
  'HYDRA_CONFIG',
] as const;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Splits a space- or comma-separated list of variable names; throws naming the first bad one. */
export function parseEnvNames(text: string): string[] {
  const names = text.split(/[\s,]+/).filter((n) => n !== '');
  const bad = names.find((n) => !NAME.test(n));
  if (bad !== undefined) throw new Error(`"${bad}" is not an environment variable name`);
  return names;
}

/** The minimal environment: BASE_CHILD_ENV and `pass` taken from `from`, then `extra`. */
export function childEnv(from: NodeJS.ProcessEnv, pass: readonly string[] = [], extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of [...BASE_CHILD_ENV, ...pass]) {
    const v = from[name];
    if (v !== undefined) env[name] = v;
  }
  if (env.PATH === undefined) env.PATH = '/usr/local/bin:/usr/bin:/bin';
  return {...env, ...extra};
}
