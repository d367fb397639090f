// Per-invocation state shared by every subcommand: global options, the resolved configuration
// and (opened lazily, closed at exit) the database.
import {resolveConfig, type ResolvedConfig} from '../config/resolve.js';
import {ConfigError} from '../config/errors.js';
import type {Database, DatabaseTarget} from '../db/connection.js';
import {CliError, EXIT} from './exit-codes.js';

export interface GlobalOptions {
  databaseUrl?: string;
  user?: string;
  readonly?: boolean;
  localAdmin?: boolean;
  json?: boolean;
  scheduler?: boolean;
  logFormat?: 'text' | 'json';
}

export class AppContext {
  globals: GlobalOptions = {};
  exitCode = 0;
  commandName = '';
  private resolved: ResolvedConfig | undefined;
  private db: Promise<Database> | undefined;
  private closers: Array<() => Promise<void>> = [];

  constructor(readonly env: NodeJS.ProcessEnv = process.env) {}

  setGlobals(g: GlobalOptions): void {
    this.globals = g;
  }

  get json(): boolean {
    return this.globals.json === true;
  }

  /** The configuration from flags, environment, settings and defaults. Config errors are usage errors. */
  config(): ResolvedConfig {
    if (!this.resolved) {
      try {
        this.resolved = resolveConfig({
          flags: {
            databaseUrl: this.globals.databaseUrl,
            user: this.globals.user,
            readonly: this.globals.readonly,
            localAdmin: this.globals.localAdmin,
            logFormat: this.globals.logFormat,
          },
          env: this.env,
        });
      } catch (e) {
        if (e instanceof ConfigError) throw new CliError(EXIT.usage, e.message);
        throw e;
      }
      for (const w of this.resolved.warnings) process.stderr.write(`hydra-ops: warning: ${w}\n`);
    }
    return this.resolved;
  }

  databaseTarget(): DatabaseTarget {
    const d = this.config().database;
    if (d.kind === 'embedded') return {kind: 'embedded', dir: d.dir, port: d.port, password: d.password, source: d.source};
    return {kind: 'server', config: {...d.config}, source: d.source, description: d.description};
  }

  /** Opens the database once per invocation; unreachable → exit 69. */
  database(): Promise<Database> {
    // Loaded here, not at start-up: commands that never touch the database do not pay for the driver.
    this.db ??= import('../db/connection.js').then(({openDatabase, DatabaseUnavailableError}) =>
      openDatabase(this.databaseTarget(), {applicationName: `hydra-ops ${this.commandName}`.trim()}).catch((e) => {
        this.db = undefined;
        if (e instanceof DatabaseUnavailableError) throw new CliError(EXIT.unavailable, e.message);
        throw e;
      }),
    );
    return this.db;
  }

  onClose(fn: () => Promise<void>): void {
    this.closers.push(fn);
  }

  async close(): Promise<void> {
    for (const fn of this.closers.splice(0).reverse()) await fn().catch(() => {});
    if (this.db) {
      const db = await this.db.catch(() => null);
      this.db = undefined;
      await db?.close().catch(() => {});
    }
  }
}
