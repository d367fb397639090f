// Glue between the CLI and source/actions: who acts, bulk confirmation (--yes, a y/N prompt on a
// terminal, a typed count for admin-wide or large actions), ActionError → exit code, and printing results.
import {createInterface} from 'node:readline/promises';
import type {AppContext} from './context.js';
import {VERSION} from './version.js';
import {CliError, EXIT, usageError} from './exit-codes.js';
import {ActionError} from '../actions/errors.js';
import {makeActor, type Actor} from '../actions/actor.js';
import type {ActionResult} from '../actions/perform.js';
import {needsTypedConfirm} from '../actions/confirm.js';

export function actorOf(ctx: AppContext): Actor {
  const c = ctx.config();
  return makeActor({
    hydraUser: c.hydraUser.value,
    hydraUserSource: c.hydraUser.source,
    localAdmin: c.localAdmin.value,
    readonly: c.readonly.value,
    readonlySource: c.readonly.source,
    version: VERSION,
  });
}

const EXIT_OF = {readonly: EXIT.permission, permission: EXIT.permission, 'not-found': EXIT.notFound, usage: EXIT.usage, refused: EXIT.failed} as const;

/** Runs an action, turning ActionError into the matching CliError. */
export async function runAction<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ActionError) throw new CliError(EXIT_OF[e.kind], e.message, e.details);
    throw e;
  }
}

/** Parses positional build ids; anything else is a usage error naming the argument. */
export function parseIds(args: readonly string[], what = 'build id'): number[] {
  return args.map((a) => {
    if (!/^[0-9]+$/.test(a) || !Number.isSafeInteger(Number(a)) || Number(a) <= 0) throw usageError(`bad ${what} "${a}" (expected a positive integer)`);
    return Number(a);
  });
}

export function parseId(arg: string, what: string): number {
  return parseIds([arg], what)[0]!;
}


export interface ConfirmIo {
  input: NodeJS.ReadableStream & {isTTY?: boolean};
  output: NodeJS.WritableStream;
}

/**
 * Asks for confirmation of `summary`. `typed` requires typing `count` (admin-wide or large actions),
 * otherwise y/N. Returns true only for an explicit yes.
 */
export async function askConfirmation(io: ConfirmIo, summary: string, count: number, typed: boolean): Promise<boolean> {
  const rl = createInterface({input: io.input, output: io.output, terminal: false});
  try {
    io.output.write(`${summary}\n`);
    if (typed) {
      const answer = await rl.question(`Type ${count} to confirm: `);
      return answer.trim() === String(count);
    }
    const answer = await rl.question('Proceed? [y/N] ');
    return /^(y|yes)$/i.test(answer.trim());
  } catch {
    return false;
  } finally {
    rl.close();
  }
}

export interface BulkGate {
  /** More than one target, a filter, an eval-wide or an admin action. */
  bulk: boolean;
  yes: boolean;
  dryRun: boolean;
  /** Admin-wide actions always need the typed count. */
  adminWide?: boolean;
  /** What the command is, for messages (`cancel`, `restart-failed 12`…). */
  command: string;
}

/** Non-interactive bulk without --yes is a usage error; checked before anything touches the database. */
export function checkBulkAllowed(g: BulkGate, io: ConfirmIo = {input: process.stdin, output: process.stderr}): void {
  if (!g.bulk || g.yes || g.dryRun) return;
  if (io.input.isTTY !== true) {
    throw usageError(
      `${g.command} is a bulk action and standard input is not a terminal: add --yes to confirm it ` +
        '(or --dry-run to list the exact targets first)',
    );
  }
}

/**
 * Runs a mutation the way script mode wants it. Not bulk, --yes or --dry-run: runs at once. Bulk on a
 * terminal: runs a preview (a dry run), shows its exact scope, asks (y/N, or the typed count for admin-wide
 * or large actions) and only then runs for real — `run(false, preview)` may pin the previewed targets.
 * Bulk without a terminal was refused by checkBulkAllowed before.
 */
export async function confirmAndRun<R extends ActionResult>(
  g: BulkGate,
  run: (dryRun: boolean, preview?: R) => Promise<R>,
  describe: (preview: R) => {summary: string; count: number},
  io: ConfirmIo = {input: process.stdin, output: process.stderr},
): Promise<R> {
  checkBulkAllowed(g, io);
  if (!g.bulk || g.yes || g.dryRun) return runAction(() => run(g.dryRun));
  const preview = await runAction(() => run(true));
  const {summary, count} = describe(preview);
  const ok = await askConfirmation(io, summary, count, needsTypedConfirm(count, g.adminWide === true));
  if (!ok) throw declined();
  return runAction(() => run(false, preview));
}

/** The usual confirmation text for build actions. */
export function describeBuildPreview(command: string, verb: string, preview: ActionResult): {summary: string; count: number} {
  const n = preview.changed.length;
  const ids = n ? ` (builds ${idList(preview.changed)})` : '';
  const unchanged = preview.unchanged.length ? `; ${preview.unchanged.length} already in that state` : '';
  return {summary: `${command}: ${verb} ${n} of ${preview.targets.length} build(s) selected by ${preview.scope}${ids}${unchanged}`, count: n};
}

/** `1, 2, 3 … and 997 more` */
export function idList(ids: readonly (number | string)[], max = 20): string {
  const shown = ids.slice(0, max).join(', ');
  return ids.length > max ? `${shown} … and ${ids.length - max} more` : shown;
}

export function declined(): CliError {
  return new CliError(EXIT.failed, 'not confirmed; nothing changed');
}

/** Prints an action result: the JSON document, or one human line on stdout. */
export function printActionResult(ctx: AppContext, result: ActionResult, verb: string, extra = ''): void {
  if (ctx.json) {
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    return;
  }
  const would = result.dryRun ? 'dry run: would ' : '';
  const changed = result.changed.length ? `: ${idList(result.changed)}` : '';
  const unchanged = result.unchanged.length ? `; unchanged ${result.unchanged.length}: ${idList(result.unchanged)}` : '';
  process.stdout.write(`${would}${verb} ${result.changed.length} of ${result.targets.length} build(s)${changed}${unchanged}${extra}\n`);
}
