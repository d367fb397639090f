// `hydra-ops enqueue DRV… --jobset PROJECT/JOBSET`: queue existing store derivations without an evaluation.
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {printJson, printTable} from '../output.js';
import {parseJobsetRef} from '../../actions/jobsets.js';
import {enqueueAs} from '../../actions/jobset-actions.js';
import {actorOf, runAction} from '../acting.js';
import {intOption, refuseReadonly, requireHydraSchema, runJobsetAction} from './jobset-support.js';
import {resolve} from 'node:path';

export function registerEnqueueCommands(program: Command, ctx: AppContext): void {
  program
    .command('enqueue <drv...>')
    .description('queue existing .drv store paths as builds of a jobset (no evaluation; not part of any eval)')
    .requiredOption('--jobset <project/jobset>', 'the jobset the builds belong to')
    .option('--job <name>', "job name for the builds (default: each derivation's name)")
    .option('--priority <n>', 'Builds.priority (default 100)')
    .addHelpText(
      'after',
      '\nA derivation that already has an unfinished build in the jobset is reported, not queued again.\n' +
        '\nExamples:\n  hydra-ops enqueue $(nix-instantiate release.nix -A hello) --jobset demo/main\n' +
        '\nNeeds Hydra role "admin" or to own (or be a member of) the project; audited.\n' +
        '\nExit codes: 0 queued · 1 unreadable derivation / no schema · 2 not a .drv store path · 3 missing derivation or jobset · 4 read-only or not permitted\n',
    )
    .action(async (drvs: string[], opts: {jobset: string; job?: string; priority?: string}) => {
      await runJobsetAction(async () => {
        const ref = parseJobsetRef(opts.jobset);
        const priority = opts.priority === undefined ? undefined : intOption(opts.priority, '--priority');
        refuseReadonly(ctx);
        const pool = await requireHydraSchema(ctx);
        const paths = drvs.map((d) => (d.startsWith('/') ? d : resolve(d)));
        const {builds: res} = await runAction(() => enqueueAs(pool, actorOf(ctx), {project: ref.project, jobset: ref.jobset, drvPaths: paths, job: opts.job, priority}));
        if (ctx.json) {
          printJson({builds: res.map((b) => ({id: b.id, job: b.job, drvpath: b.drvPath, isnew: b.isNew ? 1 : 0}))});
          return;
        }
        printTable(res, [
          {header: 'BUILD', value: (b) => b.id, align: 'right'},
          {header: 'JOB', value: (b) => b.job},
          {header: 'STATE', value: (b) => (b.isNew ? 'queued' : 'already queued')},
          {header: 'DRV', value: (b) => b.drvPath},
        ]);
      });
    });
}
