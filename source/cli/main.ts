// The hydra-ops command line: global options, subcommand registration, exit codes.
import {Command, CommanderError, Option} from 'commander';
import {EXIT} from './exit-codes.js';
import {handleEpipe, reportError} from './output.js';
import {AppContext, type GlobalOptions} from './context.js';
import {registerCommands} from './commands/index.js';
import {loadConsole} from './console-loader.js';

import {VERSION} from './version.js';

export {VERSION};

/** Global options that take a value (their value is not a subcommand name). */
const VALUE_OPTIONS = new Set(['--database-url', '--user', '--log-format', '--color']);

/**
 * The subcommand an argument vector names: its name, `undefined` when every module is needed (help, or a
 * name only commander can judge), `null` when none is (the console, `--version`).
 */
export function subcommandOf(argv: readonly string[]): string | null | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') return undefined;
    if (a === '-V' || a === '--version') return null;
    if (a === '--') return argv[i + 1] ?? null;
    if (a.startsWith('-')) {
      if (VALUE_OPTIONS.has(a)) i++;
      continue;
    }
    return a === 'help' ? undefined : a;
  }
  return null;
}

/** The program with the subcommands `argv` needs (all of them without `argv`). */
export async function buildProgram(ctx: AppContext, argv?: readonly string[]): Promise<Command> {
  const program = new Command('hydra-ops')
    .description('Terminal operations console and queue runner for Nix build farms run with Hydra.')
    .version(VERSION, '-V, --version')
    .option('--database-url <url>', 'PostgreSQL URL (overrides HYDRA_DATABASE_URL, HYDRA_DBI, DATABASE_URL and the embedded server)')
    .option('--user <name>', 'Hydra user to act as (default: HYDRA_OPS_USER, the setting hydraUser, or the login name)')
    .option('--readonly', 'refuse every mutation')
    .option('--local-admin', 'trust the local operator as a Hydra admin (explicit; see the localAdmin setting)')
    .option('--json', 'print one JSON document (streaming commands print NDJSON)')
    .option('--daemon', 'run the queue runner headless (same as the "daemon" subcommand)')
    .option('--scheduler', 'console: run the scheduler in-process on a configured database server when no other runner is alive (the embedded database does so by default)')
    .option('--no-scheduler', 'console only: never run the scheduler in-process')
    .addOption(new Option('--log-format <format>', 'daemon log lines').choices(['text', 'json']))
    .option('--ascii', 'console: ASCII glyphs instead of Unicode (automatic when the locale is not UTF-8)')
    .addOption(new Option('--color <when>', 'console colours (NO_COLOR also turns them off)').choices(['auto', 'always', 'never']).default('auto'))
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      writeOut: (s) => process.stdout.write(s),
    })
    .exitOverride();
  program.hook('preAction', (_this, action) => {
    ctx.setGlobals(program.opts<GlobalOptions>());
    const url = program.opts<GlobalOptions>().databaseUrl;
    if (url !== undefined && urlHasPassword(url)) {
      process.stderr.write(
        'hydra-ops: warning: the password in --database-url is visible to every user of this machine in the process list; ' +
          'put the URL in HYDRA_DATABASE_URL or the settings file (hydra-ops config set databaseUrl …), or the password in ~/.pgpass\n',
      );
    }
    ctx.commandName = action.name();
  });
  await registerCommands(program, ctx, argv ? subcommandOf(argv) : undefined);
  // No subcommand: the console (loaded on demand so script mode never pays for Ink).
  program.allowExcessArguments(true).action(async () => {
    if (program.args.length > 0) {
      program.error(`error: unknown command '${program.args[0]}'`, {exitCode: EXIT.usage, code: 'commander.unknownCommand'});
    }
    const {runConsole} = await loadConsole();
    const o = program.opts<{ascii?: boolean; color?: 'auto' | 'always' | 'never'}>();
    ctx.exitCode = await runConsole(ctx, {ascii: o.ascii, color: o.color});
  });
  return program;
}

/** A password in a postgres:// URL (`user:pw@`) or a keyword/value connection string (`password=`). */
export function urlHasPassword(url: string): boolean {
  try {
    const u = new URL(url);
    if (u.password !== '' || u.searchParams.has('password')) return true;
  } catch {
    // not a URL: a keyword/value string
  }
  return /(^|\s)password\s*=/i.test(url);
}

/** Runs the CLI and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  handleEpipe();
  const ctx = new AppContext();
  // `hydra-ops --daemon` is the documented way to start the queue runner.
  if (argv.includes('--daemon') && !argv.includes('daemon')) argv = ['daemon', ...argv.filter((a) => a !== '--daemon')];
  const program = await buildProgram(ctx, argv);
  try {
    await program.parseAsync(argv, {from: 'user'});
    return ctx.exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT.ok;
      // commander already printed the message.
      return EXIT.usage;
    }
    return reportError(e, ctx.json);
  } finally {
    await ctx.close();
  }
}
