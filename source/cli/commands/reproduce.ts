// `hydra-ops reproduce BUILD [--to DIR | --print]`: the exact steps to rebuild a build elsewhere.
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {usageError} from '../exit-codes.js';
import {printJson} from '../output.js';
import {parseId, runAction} from '../acting.js';
import {planReproduce, reproduceCommands, writeReproduction, EXPORT_FILE, SCRIPT_FILE} from '../../actions/reproduce.js';
import {getBuild} from '../../db/queries/builds.js';

export function registerReproduceCommand(program: Command, ctx: AppContext): void {
  program
    .command('reproduce <build>')
    .description('rebuild a build elsewhere: export its .drv closure and already-built inputs, then import and build with --keep-failed')
    .option('--to <dir>', `write ${EXPORT_FILE} and ${SCRIPT_FILE} into DIR (copy DIR anywhere and run ./${SCRIPT_FILE})`)
    .option('--print', 'print the commands only (the default without --to)')
    .addHelpText(
      'after',
      `
Examples:
  hydra-ops reproduce 1234 --print
  hydra-ops reproduce 1234 --to /tmp/repro-1234 && scp -r /tmp/repro-1234 box: && ssh box repro-1234/${SCRIPT_FILE}
`,
    )
    .action(async (buildArg: string, opts: {to?: string; print?: boolean}) => {
      if (opts.to !== undefined && opts.print) throw usageError('reproduce: --to and --print exclude each other');
      const id = parseId(buildArg, 'build id');
      const db = (await ctx.database()).pool;
      const plan = await runAction(() => planReproduce(db, id));
      const b = await getBuild(db, id);
      const info = b ? {project: b.project, jobset: b.jobset, job: b.job} : {};
      const commands = reproduceCommands(plan);
      if (opts.to !== undefined) {
        const w = await runAction(() => writeReproduction(plan, opts.to!, info));
        if (ctx.json) printJson({...plan, ...w, commands});
        else process.stdout.write(`wrote ${w.exportFile} (${w.paths} store paths) and ${w.script}\nrun elsewhere: ${w.script}\n`);
        return;
      }
      if (ctx.json) printJson({...plan, commands});
      else {
        process.stdout.write(`# build ${id}${b ? ` (${b.project}:${b.jobset}:${b.job})` : ''}: ${plan.drvPath}\n`);
        process.stdout.write(`# ${plan.builtInputs.length} input output(s) already built are exported; ${plan.unbuiltInputs.length} input derivation(s) will be built too\n`);
        process.stdout.write(`# on the coordinator:\n${commands.coordinator.join('\n')}\n# on the machine that rebuilds (root or a trusted user):\n${commands.elsewhere.join('\n')}\n`);
      }
    });
}
