// The one error type of the configuration layer. Callers (CLI, daemon) turn it into a
// usage error (exit 2) with the message as is; `file`, `line` and `field` let them
// render the location separately or put it into a JSON error document.

export interface ConfigErrorDetails {
  /** File the bad input came from (hydra.conf, an included file, the settings file). */
  file?: string;
  /** 1-based line number inside `file`. */
  line?: number;
  /** Setting, key or variable name the problem is about (e.g. `HYDRA_DBI`, `max_log_size`). */
  field?: string;
}

export class ConfigError extends Error {
  readonly file?: string;
  readonly line?: number;
  readonly field?: string;

  constructor(message: string, details: ConfigErrorDetails = {}) {
    super(message);
    this.name = 'ConfigError';
    if (details.file !== undefined) this.file = details.file;
    if (details.line !== undefined) this.line = details.line;
    if (details.field !== undefined) this.field = details.field;
  }
}

/** Renders a value for an error message: double-quoted, with control characters made visible. */
export function quote(text: string): string {
  return JSON.stringify(text);
}
