// Mutating subcommands: restart, cancel, bump, restart-failed, restart-aborted, cancel-eval,
// clear-failed-cache, clear-queue-non-current, machine drain|enable, unlock. Each runs one action from
// source/actions (one transaction, Hydra's SQL, permission check, audit row).
import {Command} from 'commander';
import type {AppContext} from '../context.js';
import {usageError, CliError, EXIT} from '../exit-codes.js';
import {actorOf, confirmAndRun, describeBuildPreview, idList, parseId, parseIds, printActionResult} from '../acting.js';
import {describeSelection, isBulkSelection, type BuildSelection} from '../../actions/selection.js';
import {BUILD_ACTIONS, runBuildAction, type BuildActionKind} from '../../actions/build-actions.js';
import {cancelEval, restartAborted, restartFailed} from '../../actions/eval-actions.js';
import {clearFailedCache, clearQueueNonCurrent} from '../../actions/admin.js';
import {setMachineDrained} from '../../actions/machine-drain.js';
import {unlockRunner} from '../../actions/unlock.js';
import type {ActionResult} from '../../actions/perform.js';
import {loadMachinesFiles} from '../../fleet/machines-file.js';

interface MutationOptions {
  dryRun?: boolean;
  yes?: boolean;
}

interface BuildActionOptions extends MutationOptions {
  filter?: string;
}

const EXIT_HELP = '\nExit codes: 0 ok · 1 refused or failed · 2 usage error · 3 not found · 4 permission denied (read-only or missing role)';

function mutationOptions(cmd: Command): Command {
  return cmd
    .option('--dry-run', 'run the statements and roll them back: list exactly what would change, change nothing')
    .option('-y, --yes', 'confirm a bulk action without asking (required when standard input is not a terminal)');
}

function selectionOf(ids: string[], filter: string | undefined): BuildSelection {
  if (filter !== undefined && ids.length > 0) throw usageError('give build ids or --filter, not both');
  if (filter !== undefined) {
    if (filter.trim() === '') throw usageError('--filter needs a non-empty expression (it never matches everything implicitly)');
    return {kind: 'filter', filter};
  }
  if (ids.length === 0) throw usageError('name at least one build id, or select builds with --filter EXPR');
  return {kind: 'ids', ids: parseIds(ids)};
}

/** A single explicitly named build that did not change is a failure, as in Hydra's web app. */
function requireSingleChanged(sel: BuildSelection, result: ActionResult, why: string): void {
  if (sel.kind === 'ids' && sel.ids.length === 1 && result.changed.length === 0) {
    throw new CliError(EXIT.failed, `build ${sel.ids[0]} ${result.dryRun ? 'would not change' : 'cannot be changed'}: ${why}`, result);
  }
}

function registerBuildAction(program: Command, ctx: AppContext, name: BuildActionKind, description: string, examples: string): void {
  const cmd = mutationOptions(
    program
      .command(`${name} [ids...]`)
      .description(description)
      .option('--filter <expr>', 'act on every build the filter matches (see README.md, Filter expressions)'),
  );
  if (name === 'bump') cmd.option('--to-front', 'above every existing bump (max(now, highest globalPriority + 1)) instead of Hydra\'s "now"');
  cmd.addHelpText('after', `\nExamples:\n${examples}${EXIT_HELP}\n`);
  cmd.action(async (ids: string[], opts: BuildActionOptions & {toFront?: boolean}) => {
    const sel = selectionOf(ids, opts.filter);
    const actor = actorOf(ctx);
    const gate = {bulk: isBulkSelection(sel), yes: opts.yes === true, dryRun: opts.dryRun === true, command: name};
    const run = async (dryRun: boolean, preview?: ActionResult) => {
      const p = (await ctx.database()).pool;
      const s: BuildSelection = preview ? {kind: 'ids', ids: preview.targets, scope: describeSelection(sel)} : sel;
      return runBuildAction(p, actor, name, s, {dryRun, gcRootsDir: ctx.config().runner.gcRootsDir, toFront: opts.toFront === true});
    };
    const verb = name;
    const result = await confirmAndRun(gate, run, (p) => describeBuildPreview(name, verb, p));
    requireSingleChanged(sel, result, BUILD_ACTIONS[name].unchanged);
    const done = BUILD_ACTIONS[name].done;
    const extra = result.globalPriority !== undefined ? ` (globalpriority ${result.globalPriority})` : '';
    printActionResult(ctx, result, result.dryRun ? verb : done, extra);
  });
}

function registerEvalAction(
  program: Command,
  ctx: AppContext,
  name: 'restart-failed' | 'restart-aborted' | 'cancel-eval',
  description: string,
  example: string,
): void {
  mutationOptions(program.command(`${name} <eval>`).description(description))
    .addHelpText('after', `\nExamples:\n${example}${EXIT_HELP}\n`)
    .action(async (evalArg: string, opts: MutationOptions) => {
      const evalId = parseId(evalArg, 'eval id');
      const actor = actorOf(ctx);
      const gate = {bulk: true, yes: opts.yes === true, dryRun: opts.dryRun === true, command: `${name} ${evalId}`};
      const verb = name === 'cancel-eval' ? 'cancel' : 'restart';
      const run = async (dryRun: boolean) => {
        const pool = (await ctx.database()).pool;
        if (name === 'restart-failed') return restartFailed(pool, actor, evalId, {dryRun, gcRootsDir: ctx.config().runner.gcRootsDir});
        if (name === 'restart-aborted') return restartAborted(pool, actor, evalId, {dryRun, gcRootsDir: ctx.config().runner.gcRootsDir});
        return cancelEval(pool, actor, evalId, {dryRun});
      };
      const result = await confirmAndRun(gate, run, (p) => describeBuildPreview(gate.command, verb, p));
      printActionResult(ctx, result, result.dryRun ? verb : verb === 'cancel' ? 'cancelled' : 'restarted');
    });
}

export function registerActionCommands(program: Command, ctx: AppContext): void {
  registerBuildAction(
    program,
    ctx,
    'restart',
    "restart finished builds as Hydra's web app does (finished 0, isCachedBuild 0, their FailedPaths cleared, evals' nrSucceeded reset)",
    '  hydra-ops restart 123\n  hydra-ops restart --filter "jobset:nixpkgs:trunk status:failed age<1d" --dry-run\n  hydra-ops restart --filter "status:aborted" --yes --json',
  );
  registerBuildAction(
    program,
    ctx,
    'cancel',
    'cancel queued builds (finished 1, buildStatus 4 Cancelled, start/stop time now); the runner stops steps nobody needs',
    '  hydra-ops cancel 123 124\n  hydra-ops cancel --filter "jobset:nixpkgs:staging status:queued" --yes',
  );
  registerBuildAction(
    program,
    ctx,
    'bump',
    "move builds to the front of the queue (globalPriority = now, Hydra's bump); --filter bumps only queued builds",
    '  hydra-ops bump 123\n  hydra-ops bump --to-front 123\n  hydra-ops bump --filter "eval:4711" --yes',
  );
  registerEvalAction(program, ctx, 'restart-failed', 'restart every build of an evaluation that finished with a non-success status', '  hydra-ops restart-failed 4711 --dry-run\n  hydra-ops restart-failed 4711 --yes');
  registerEvalAction(program, ctx, 'restart-aborted', 'restart the builds of an evaluation that were aborted, cancelled or unsupported (status 3, 4, 9)', '  hydra-ops restart-aborted 4711 --yes');
  registerEvalAction(program, ctx, 'cancel-eval', 'cancel every queued build of an evaluation', '  hydra-ops cancel-eval 4711 --yes --json');

  mutationOptions(program.command('clear-failed-cache').description('admin: delete every FailedPaths row, so previously failed derivations are built again'))
    .addHelpText('after', `\nExamples:\n  hydra-ops clear-failed-cache --dry-run\n  hydra-ops clear-failed-cache --yes${EXIT_HELP}\n`)
    .action(async (opts: MutationOptions) => {
      const actor = actorOf(ctx);
      const gate = {bulk: true, adminWide: true, yes: opts.yes === true, dryRun: opts.dryRun === true, command: 'clear-failed-cache'};
      const result = await confirmAndRun(
        gate,
        async (dryRun) => clearFailedCache((await ctx.database()).pool, actor, {dryRun}),
        (p) => ({summary: `clear-failed-cache: delete all ${p.deleted} FailedPaths rows`, count: p.deleted}),
      );
      if (ctx.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      else process.stdout.write(`${result.dryRun ? 'dry run: would delete' : 'deleted'} ${result.deleted} FailedPaths row(s)\n`);
    });

  mutationOptions(
    program
      .command('clear-queue-non-current')
      .description("admin: cancel every queued build that is not in its jobset's latest evaluation with new builds"),
  )
    .addHelpText('after', `\nExamples:\n  hydra-ops clear-queue-non-current --dry-run --json\n  hydra-ops clear-queue-non-current --yes${EXIT_HELP}\n`)
    .action(async (opts: MutationOptions) => {
      const actor = actorOf(ctx);
      const gate = {bulk: true, adminWide: true, yes: opts.yes === true, dryRun: opts.dryRun === true, command: 'clear-queue-non-current'};
      const result = await confirmAndRun(
        gate,
        async (dryRun) => clearQueueNonCurrent((await ctx.database()).pool, actor, {dryRun}),
        (p) => describeBuildPreview('clear-queue-non-current', 'cancel', p),
      );
      printActionResult(ctx, result, result.dryRun ? 'cancel' : 'cancelled');
    });

  const machine = program.command('machine').description('admin: drain a build machine (no new steps; running ones finish) or enable it again');
  for (const [sub, drained] of [['drain', true], ['enable', false]] as const) {
    mutationOptions(machine.command(`${sub} <name>`).description(drained ? 'stop dispatching new steps to a machine; running steps finish' : 'dispatch to a drained machine again'))
      .option('--note <text>', 'why (stored with the machine state)')
      .addHelpText('after', `\nNAME is the machine's URI from the machines file, or its host name.\n\nExamples:\n  hydra-ops machine ${sub} builder1 --yes\n  hydra-ops machine ${sub} ssh://hydra@builder1 --yes --json${EXIT_HELP}\n`)
      .action(async (name: string, opts: MutationOptions & {note?: string}) => {
        const actor = actorOf(ctx);
        const gate = {bulk: true, yes: opts.yes === true, dryRun: opts.dryRun === true, command: `machine ${sub}`};
        const run = async (dryRun: boolean) => {
          const loaded = await loadMachinesFiles(ctx.config().machinesFiles.value);
          return setMachineDrained((await ctx.database()).pool, actor, loaded.machines, name, drained, {dryRun, note: opts.note});
        };
        const result = await confirmAndRun(gate, run, (p) => ({summary: `machine ${sub}: ${p.machine} (now ${p.wasDrained ? 'drained' : 'enabled'})`, count: 1}));
        if (ctx.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
        else {
          const state = result.drained ? 'drained' : 'enabled';
          const already = result.wasDrained === result.drained ? ' (already)' : '';
          process.stdout.write(`${result.dryRun ? 'dry run: would mark' : 'marked'} ${result.machine} ${state}${already}\n`);
        }
      });
  }

  mutationOptions(
    program
      .command('unlock')
      .description("admin: crash clean-up for a dead queue runner (the C++ runner's --unlock): busy steps become Aborted, its SystemStatus row is deleted"),
  )
    .addHelpText('after', `\nRefused while a queue runner holds a lock file in the data directory or a live session holds the database's runner lock (the holder is named).\n\nExamples:\n  hydra-ops unlock --dry-run\n  hydra-ops unlock --yes${EXIT_HELP}\n`)
    .action(async (opts: MutationOptions) => {
      const actor = actorOf(ctx);
      const gate = {bulk: true, adminWide: true, yes: opts.yes === true, dryRun: opts.dryRun === true, command: 'unlock'};
      const result = await confirmAndRun(
        gate,
        async (dryRun) => {
          const database = await ctx.database();
          return unlockRunner(database.pool, actor, ctx.config().dataDir.dir, {dryRun, connection: database.connection});
        },
        (p) => ({summary: `unlock: mark ${p.steps.length} busy step(s) Aborted and delete the runner's SystemStatus row`, count: p.steps.length}),
      );
      if (ctx.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      else {
        const steps = result.steps.map((s) => `${s.build}/${s.stepnr}`);
        process.stdout.write(
          `${result.dryRun ? 'dry run: would abort' : 'aborted'} ${steps.length} busy step(s)${steps.length ? `: ${idList(steps)}` : ''}; ` +
            `SystemStatus row ${result.systemStatusDeleted ? (result.dryRun ? 'would be deleted' : 'deleted') : 'absent'}; ` +
            `database runner lock: ${result.databaseLock}\n`,
        );
      }
    });
}
