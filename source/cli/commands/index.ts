// The subcommands, and which module defines each. A call loads only the module(s) of the subcommand it names
// (`hydra-ops builds …` never loads the daemon, the evaluator or the console); `--help`, `help` and anything
// unrecognised load them all. test/cli-lazy.test.ts checks this table against what the modules register.
import type {Command} from 'commander';
import type {AppContext} from '../context.js';

type Register = (program: Command, ctx: AppContext) => void;

export interface CommandModule {
  /** Top-level subcommand names the module registers (in registration order across modules). */
  names: readonly string[];
  load: () => Promise<Register>;
}

export const COMMAND_MODULES: readonly CommandModule[] = [
  {names: ['db'], load: async () => (await import('./db.js')).registerDbCommands},
  {names: ['config'], load: async () => (await import('./config.js')).registerConfigCommands},
  {names: ['daemon'], load: async () => (await import('./daemon.js')).registerDaemonCommand},
  {
    names: ['restart', 'cancel', 'bump', 'restart-failed', 'restart-aborted', 'cancel-eval', 'clear-failed-cache', 'clear-queue-non-current', 'machine', 'unlock'],
    load: async () => (await import('./actions.js')).registerActionCommands,
  },
  {names: ['audit'], load: async () => (await import('./audit.js')).registerAuditCommands},
  {names: ['queue', 'builds', 'build', 'steps', 'jobsets', 'evals'], load: async () => (await import('./read.js')).registerReadCommands},
  {names: ['status', 'machines'], load: async () => (await import('./status.js')).registerStatusCommands},
  {names: ['log'], load: async () => (await import('./log.js')).registerLogCommands},
  {names: ['watch'], load: async () => (await import('./watch.js')).registerWatchCommands},
  {names: ['project'], load: async () => (await import('./project.js')).registerProjectCommands},
  {names: ['jobset'], load: async () => (await import('./jobset.js')).registerJobsetCommands},
  {names: ['eval'], load: async () => (await import('./eval.js')).registerEvalCommands},
  {names: ['enqueue'], load: async () => (await import('./enqueue.js')).registerEnqueueCommands},
  {names: ['demo'], load: async () => (await import('./demo.js')).registerDemoCommands},
  {names: ['check'], load: async () => (await import('./check.js')).registerCheckCommand},
  {names: ['repro'], load: async () => (await import('./repro.js')).registerReproCommand},
  {names: ['latest'], load: async () => (await import('./latest.js')).registerLatestCommand},
  // `machine ping` joins the `machine` command of actions.js, so it comes after it.
  {names: ['machine', 'reproduce', 'export'], load: async () => (await import('./utilities.js')).registerUtilityCommands},
];

/**
 * Registers the modules that define `command` (every module when it is undefined or unknown); null registers
 * none (the console, `--version`).
 */
export async function registerCommands(program: Command, ctx: AppContext, command?: string | null): Promise<void> {
  if (command === null) return;
  const wanted = command === undefined ? [] : COMMAND_MODULES.filter((m) => m.names.includes(command));
  for (const m of wanted.length > 0 ? wanted : COMMAND_MODULES) (await m.load())(program, ctx);
}
