// `hydra-ops demo`: the one command that shows hydra-ops working. Uses the configured database (by default the
// embedded one), creates Hydra's schema if the database is empty, creates or refreshes the project `demo` with
// the jobset `demo/main` (examples/demo/release.nix) as the acting user through the guarded, audited actions
// (actions/demo.ts), evaluates it with the installed Nix, and opens the console
// with the in-process scheduler building on localhost. Without Nix it still sets up and opens, and says what to
// install and what works without it.
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {printJson} from '../output.js';
import {CliError, EXIT} from '../exit-codes.js';
import {initSchema, SchemaError} from '../../db/schema.js';
import {setupDemo, DEMO_JOBSET, DEMO_PROJECT, type DemoResult} from '../../actions/demo.js';
import {describeEval, evalJson} from './eval.js';
import {intOption, refuseReadonly, runJobsetAction} from './jobset-support.js';
import {loadConsole} from '../console-loader.js';
import {actorOf, runAction} from '../acting.js';
import {describeLocalNixProblem, diagnoseLocalNix} from '../../nix/local-nix.js';

export const NO_NIX_MESSAGE = [
  'Nix is not installed (nix-instantiate is not on PATH): the demo jobset was set up but not evaluated, so nothing',
  'is queued and nothing can be built on this machine.',
  'Install Nix, then run `hydra-ops demo` again:',
  '  Debian/Ubuntu:  apt-get install nix-bin',
  '  elsewhere:      the Nix installer, https://nixos.org/download',
  'Works without Nix: browsing an existing Hydra database (the console, builds, evals, steps, machines, logs),',
  'and the operator actions on it (restart, cancel, bump, drain) — point hydra-ops at it with --database-url or',
  'HYDRA_DBI. Evaluating jobsets and building on localhost need Nix.',
].join('\n');

/** The console, if this installation has it (it is loaded lazily: the demo works without it). */
async function loadConsoleModule(): Promise<{openConsole: (ctx: AppContext, opts: {scheduler?: boolean; focus: string}) => Promise<unknown>} | null> {
  try {
    return await loadConsole();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_MODULE_NOT_FOUND' && /ui[/\\]console/.test(err.message)) return null;
    throw e;
  }
}

function summary(ctx: AppContext, r: DemoResult, database: string): string {
  const lines = [
    `database: ${database}`,
    `project ${DEMO_PROJECT}, jobset ${DEMO_PROJECT}/${DEMO_JOBSET}: <${r.jobset.nixExprInput}/${r.jobset.nixExprPath}> in ${r.jobset.inputs[0]!.value}`,
  ];
  const slow = r.jobset.inputs.find((i) => i.name === 'slowSeconds');
  if (slow) lines.push(`  slowSeconds = ${slow.value} (the slow jobs log a line every 0.5 s for that long)`);
  if (r.ownerCreated) lines.push(`created the Hydra user ${ctx.config().hydraUser.value} (minimal row) as the project owner`);
  if (r.eval) {
    lines.push(describeEval(r.eval));
    if (r.eval.evalError) lines.push(`evaluation error:\n${r.eval.evalError}`);
    else {
      lines.push(
        'expect: quick library builds, slow ones (core-runtime, tests.integration, benchmarks), legacy-compat failing',
        '(and tests.legacy with it), ml-inference unsupported (needs gpu-a100), build-info not reproducible.',
      );
    }
  }
  return lines.join('\n');
}

export function registerDemoCommands(program: Command, ctx: AppContext): void {
  program
    .command('demo')
    .description('set up and evaluate the demo project, then open the console with the scheduler building on localhost')
    .option('--slow-seconds <n>', 'how long the slow demo jobs run (default 30)')
    .option('--no-console', 'set up and evaluate only: print a summary instead of opening the console')
    .addHelpText(
      'after',
      '\nUses the configured database (default: the embedded PostgreSQL) and creates its schema when it is empty.\n' +
        'Re-running refreshes the jobset and re-evaluates: an unchanged expression queues nothing new.\n' +
        '\nAs the acting Hydra user, audited like project create, jobset create --replace and eval: the project is\n' +
        'created owned by that user when missing (on a database with no Hydra user yet, the user is created as its\n' +
        'first user, with no role); an existing demo project needs its owner, a member or an admin.\n' +
        'Exit 4 when the user may not.\n' +
        '\nExamples:\n  hydra-ops demo\n  hydra-ops demo --slow-seconds 5 --no-console --json\n',
    )
    .action(async (opts: {slowSeconds?: string; console?: boolean}) => {
      await runJobsetAction(async () => {
        const slowSeconds = opts.slowSeconds === undefined ? 30 : intOption(opts.slowSeconds, '--slow-seconds');
        if (slowSeconds < 0 || slowSeconds > 3600) throw new CliError(EXIT.usage, `--slow-seconds must be between 0 and 3600 (got ${slowSeconds})`);
        refuseReadonly(ctx);
        const database = await ctx.database();
        try {
          await initSchema(database.pool);
        } catch (e) {
          if (e instanceof SchemaError) throw new CliError(EXIT.failed, `refused: ${e.message}`);
          throw e;
        }
        const log = ctx.json ? undefined : (line: string) => process.stderr.write(`${line}\n`);
        // Evaluating writes .drv files into the store: when this user's Nix cannot, say why instead of Nix's raw
        // error, set the demo up anyway and open the console, whose header and Machines view say the same.
        const localNix = await diagnoseLocalNix(ctx.env, {implicit: true});
        const nixUnusable = localNix.problem !== null && localNix.facts.installed;
        if (nixUnusable) {
          process.stderr.write(`hydra-ops demo: the demo is set up but not evaluated: ${describeLocalNixProblem(localNix.problem!)}\n`);
        }
        const r = await runAction(() => setupDemo(database.pool, actorOf(ctx), {slowSeconds, log, evaluate: !nixUnusable}));
        const failed = r.eval?.evalError != null;
        if (failed) ctx.exitCode = EXIT.failed;

        if (opts.console !== false && !failed) {
          const consoleModule = await loadConsoleModule();
          if (consoleModule) {
            if (r.nixVersion === null) process.stderr.write(NO_NIX_MESSAGE + '\n');
            // The console's own rule: the in-process scheduler on the embedded database, on a configured server
            // only with --scheduler, and never beside another live runner.
            await consoleModule.openConsole(ctx, {scheduler: ctx.globals.scheduler, focus: DEMO_PROJECT});
            return;
          }
        }
        if (ctx.json) {
          printJson({
            database: database.describe(),
            project: DEMO_PROJECT,
            jobset: `${DEMO_PROJECT}/${DEMO_JOBSET}`,
            jobsetId: r.jobset.id,
            nix: r.nixVersion,
            eval: r.eval ? evalJson(r.eval) : null,
            localhost: {canBuild: localNix.problem === null, problem: localNix.problem, notices: localNix.notices},
          });
        } else {
          process.stdout.write(summary(ctx, r, database.describe()) + '\n');
        }
        if (r.nixVersion === null) process.stderr.write(NO_NIX_MESSAGE + '\n');
        else if (!failed && opts.console !== false) {
          process.stderr.write(
            'The console is not part of this build yet. Build the queue on this machine with `hydra-ops --daemon`\n' +
              '(the embedded scheduler on localhost), and follow it with `hydra-ops queue`, `hydra-ops builds` and `hydra-ops watch`.\n',
          );
        }
      });
    });
}
