// `hydra-ops daemon` (also `hydra-ops --daemon`): the queue runner, headless.
import {Option, type Command} from 'commander';
import type {AppContext} from '../context.js';
import {runDaemon} from '../../daemon/daemon.js';
import {usageError} from '../exit-codes.js';
import {refuseReadonly} from './jobset-support.js';

export function registerDaemonCommand(program: Command, ctx: AppContext): void {
  program
    .command('daemon')
    .description("run the queue runner headless: builds Hydra's queue on the machines of the machines file")
    .option('--build-one <id>', 'load only this build; exit 0 when it succeeded, 1 otherwise (test hook)')
    .option('--grace <seconds>', 'on SIGTERM, how long running steps may take to finish before they are aborted', '30')
    .option('--status-address <host:port>', 'REST status and Prometheus metrics endpoint ("off" to disable)')
    .addOption(new Option('--log-level <level>', 'least important log lines shown').choices(['error', 'warn', 'info', 'debug']).default('info'))
    .addHelpText(
      'after',
      `
Examples:
  hydra-ops --daemon
  NIX_REMOTE_SYSTEMS=/etc/nix/machines HYDRA_DBI="dbi:Pg:dbname=hydra;" hydra-ops daemon --log-format json
  hydra-ops daemon --build-one 1234
`,
    )
    .action(async (opts: {buildOne?: string; grace: string; statusAddress?: string; logLevel: 'error' | 'warn' | 'info' | 'debug'}) => {
      refuseReadonly(ctx);
      const buildOne = opts.buildOne === undefined ? undefined : Number(opts.buildOne);
      if (buildOne !== undefined && (!Number.isInteger(buildOne) || buildOne <= 0)) throw usageError(`--build-one: "${opts.buildOne}" is not a build id`);
      const grace = Number(opts.grace);
      if (!Number.isFinite(grace) || grace < 0) throw usageError(`--grace: "${opts.grace}" is not a number of seconds`);
      ctx.exitCode = await runDaemon({
        config: ctx.config(),
        target: ctx.databaseTarget(),
        env: ctx.env,
        logLevel: opts.logLevel,
        graceSeconds: grace,
        buildOne,
        statusAddress: opts.statusAddress,
      });
    });
}
