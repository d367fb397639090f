// `hydra-ops project create NAME`: a Projects row (the Projects table of Hydra's src/sql/hydra.sql).
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {printJson} from '../output.js';
import {checkProjectName} from '../../actions/jobsets.js';
import {createProjectAs} from '../../actions/jobset-actions.js';
import {actorOf, runAction} from '../acting.js';
import {refuseReadonly, requireHydraSchema, runJobsetAction} from './jobset-support.js';

interface ProjectCreateOptions {
  displayName?: string;
  description?: string;
  homepage?: string;
  owner?: string;
  createOwner?: boolean;
}

export function registerProjectCommands(program: Command, ctx: AppContext): void {
  const project = program.command('project').description("Hydra projects (the Projects table)");

  project
    .command('create <name>')
    .description('create a project; its owner must be an existing Hydra user (see --create-owner)')
    .option('--display-name <text>', 'display name (default: the name)')
    .option('--description <text>', 'description')
    .option('--homepage <url>', 'homepage')
    .option('--owner <user>', 'owning Hydra user (default: the acting user, --user / HYDRA_OPS_USER / login name)')
    .option('--create-owner', "create the owner as a minimal Users row (empty e-mail, no usable password) if it does not exist")
    .addHelpText(
      'after',
      '\nExamples:\n  hydra-ops project create nixpkgs --display-name "Nixpkgs" --owner alice\n' +
        '  hydra-ops project create demo --create-owner\n' +
        '\nNeeds Hydra role "admin" or "create-projects"; audited.\n' +
        '\nExit codes: 0 created · 1 already exists / no schema · 2 bad name · 3 owner does not exist · 4 read-only or not permitted\n',
    )
    .action(async (name: string, opts: ProjectCreateOptions) => {
      await runJobsetAction(async () => {
        checkProjectName(name);
        refuseReadonly(ctx);
        const owner = opts.owner ?? ctx.config().hydraUser.value;
        const pool = await requireHydraSchema(ctx);
        const r = await runAction(() => createProjectAs(pool, actorOf(ctx), {
          name,
          displayName: opts.displayName,
          description: opts.description,
          homepage: opts.homepage,
          owner,
          createOwner: opts.createOwner === true,
        }));
        if (ctx.json) printJson({project: r.name, owner: r.owner, ownerCreated: r.ownerCreated});
        else process.stdout.write(`created project ${r.name} (owner ${r.owner}${r.ownerCreated ? ', created as a minimal user' : ''})\n`);
      });
    });
}
