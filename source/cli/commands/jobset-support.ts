// Shared by the project, jobset, eval, enqueue and demo subcommands: read-only refusal, the "is there a Hydra
// schema" check, and JobsetError → exit code.
import type pg from 'pg';
import type {AppContext} from '../context.js';
import {CliError, EXIT} from '../exit-codes.js';
import {inspectSchema} from '../../db/schema.js';
import {JobsetError} from '../../actions/jobset-errors.js';

/** These commands write to the database: refused in read-only mode (exit 4). */
export function refuseReadonly(ctx: AppContext): void {
  const ro = ctx.config().readonly;
  if (ro.value) throw new CliError(EXIT.permission, `read-only mode (from ${ro.source}): ${ctx.commandName || 'this command'} writes to the database`);
}

/** The database must hold a supported Hydra schema; an empty one gets the `db init` hint. */
export async function requireHydraSchema(ctx: AppContext): Promise<pg.Pool> {
  const db = await ctx.database();
  const state = await inspectSchema(db.pool);
  if (state.kind === 'empty') {
    throw new CliError(EXIT.failed, `the database has no Hydra schema yet: run \`hydra-ops db init\` first (${db.describe()})`);
  }
  if (state.kind !== 'hydra' || !state.supported) throw new CliError(EXIT.failed, state.message);
  return db.pool;
}

const EXIT_OF = {usage: EXIT.usage, 'not-found': EXIT.notFound, conflict: EXIT.failed, failed: EXIT.failed} as const;

/** Runs fn, turning JobsetError into the matching CliError. */
export async function runJobsetAction<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof JobsetError) throw new CliError(EXIT_OF[e.kind], e.message);
    throw e;
  }
}

/** An integer option value; anything else is a usage error naming the option. */
export function intOption(value: string, option: string): number {
  if (!/^-?[0-9]+$/.test(value.trim())) throw new CliError(EXIT.usage, `${option} expects a whole number, got '${value}'`);
  return Number(value);
}
