// `hydra-ops jobset create PROJECT/JOBSET --expr FILE`: a legacy (Nix expression) jobset with its inputs
// (the Jobsets table of Hydra's src/sql/hydra.sql): the expression's directory becomes the path input `src` (nixExprInput) and the file name
// nixExprPath; each --input becomes a JobsetInputs row with one JobsetInputAlts row.
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {printJson} from '../output.js';
import {CliError, EXIT} from '../exit-codes.js';
import {checkPositiveInt, parseInputArg, parseJobsetRef} from '../../actions/jobsets.js';
import {createJobsetAs} from '../../actions/jobset-actions.js';
import {actorOf, runAction} from '../acting.js';
import type {EvalInput} from '../../nix/eval-jobs.js';
import {intOption, refuseReadonly, requireHydraSchema, runJobsetAction} from './jobset-support.js';
import {JobsetError} from '../../actions/jobset-errors.js';

interface JobsetCreateOptions {
  expr?: string;
  input: string[];
  shares?: string;
  checkInterval?: string;
  description?: string;
  exprInput?: string;
  oneShot?: boolean;
  disabled?: boolean;
  replace?: boolean;
}

const collect = (value: string, previous: string[]) => [...previous, value];

export function registerJobsetCommands(program: Command, ctx: AppContext): void {
  const jobset = program.command('jobset').description('Hydra jobsets (the Jobsets, JobsetInputs and JobsetInputAlts tables)');

  jobset
    .command('create <project/jobset>')
    .description('create a jobset evaluating a Nix expression file (a release.nix: an attribute set of jobs)')
    .requiredOption('--expr <file>', 'the jobset expression; its directory becomes the path input "src"')
    .option('--input <name=value>', 'an input passed to the expression: NAME=VALUE or NAME:TYPE=VALUE (string, boolean, path); repeatable', collect, [])
    .option('--shares <n>', 'scheduling shares, > 0 (default 100)')
    .option('--check-interval <seconds>', "Hydra's evaluation interval, ≥ 0 (default 300; 0 = no periodic evaluation)")
    .option('--description <text>', 'description')
    .option('--expr-input <name>', 'name of the path input holding the expression directory (default src)')
    .option('--one-shot', 'enabled = 2: disabled again after its next evaluation')
    .option('--disabled', 'enabled = 0')
    .option('--replace', 'redefine the jobset if it exists (its inputs are replaced; builds and evals stay)')
    .addHelpText(
      'after',
      '\nInputs: `true`/`false` are booleans; a value containing "/" naming an existing file or directory is a path\n' +
        '(passed as a path value and put on the search path as <NAME>); anything else is a string.\n' +
        '\nExamples:\n  hydra-ops jobset create demo/main --expr examples/demo/release.nix --input slowSeconds=5\n' +
        '  hydra-ops jobset create acme/trunk --expr ./release.nix --input nixpkgs=/srv/nixpkgs --input officialRelease=false --shares 200\n' +
        '\nNeeds Hydra role "admin" or to own (or be a member of) the project; audited.\n' +
        '\nExit codes: 0 created · 1 already exists / no schema · 2 bad argument · 3 project does not exist · 4 read-only or not permitted\n',
    )
    .action(async (refText: string, opts: JobsetCreateOptions) => {
      await runJobsetAction(async () => {
        const ref = parseJobsetRef(refText);
        const inputs: EvalInput[] = opts.input.map((a) => parseInputArg(a));
        const shares = opts.shares === undefined ? undefined : intOption(opts.shares, '--shares');
        if (shares !== undefined) checkPositiveInt(shares, 'the scheduling shares (--shares)', 1);
        const checkInterval = opts.checkInterval === undefined ? undefined : intOption(opts.checkInterval, '--check-interval');
        if (checkInterval !== undefined) checkPositiveInt(checkInterval, 'the check interval (--check-interval)', 0);
        if (opts.oneShot && opts.disabled) throw new JobsetError('usage', 'give --one-shot or --disabled, not both');
        const expr = opts.expr;
        if (!expr) throw new CliError(EXIT.usage, '--expr FILE is required');
        refuseReadonly(ctx);
        const pool = await requireHydraSchema(ctx);
        const r = await runAction(() => createJobsetAs(pool, actorOf(ctx), {
          project: ref.project,
          name: ref.jobset,
          exprFile: expr,
          inputs,
          exprInput: opts.exprInput,
          description: opts.description,
          shares,
          checkInterval,
          enabled: opts.oneShot ? 2 : opts.disabled ? 0 : 1,
          replace: opts.replace === true,
        }));
        if (ctx.json) {
          printJson({id: r.id, project: r.project, jobset: r.name, created: r.created, nixexprinput: r.nixExprInput, nixexprpath: r.nixExprPath, inputs: r.inputs});
        } else {
          const lines = [`${r.created ? 'created' : 'redefined'} jobset ${r.project}/${r.name} (id ${r.id}): <${r.nixExprInput}/${r.nixExprPath}>`];
          for (const i of r.inputs) lines.push(`  input ${i.name} (${i.type}) = ${i.value}`);
          lines.push(`evaluate it with: hydra-ops eval ${r.project}/${r.name}`);
          process.stdout.write(lines.join('\n') + '\n');
        }
      });
    });
}
