// `hydra-ops eval PROJECT/JOBSET`: evaluate a jobset with the installed Nix and record the eval, its builds and
// notifications the way Hydra's evaluator does (source/actions/evaluate.ts).
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {printJson} from '../output.js';
import {CliError, EXIT} from '../exit-codes.js';
import {parseJobsetRef} from '../../actions/jobsets.js';
import type {EvaluateResult} from '../../actions/evaluate.js';
import {evaluateAs} from '../../actions/jobset-actions.js';
import {actorOf, runAction} from '../acting.js';
import {NixNotInstalledError} from '../../nix/eval-jobs.js';
import {refuseReadonly, requireHydraSchema, runJobsetAction} from './jobset-support.js';

export function describeEval(r: EvaluateResult): string {
  const where = `${r.project}:${r.jobset}`;
  if (r.evalError) return `eval ${r.evalId} of ${where} failed; nothing was queued`;
  const reused = r.reusedBuilds.length;
  const change = r.hasNewBuilds ? `${r.newBuilds.length} new build(s), ${reused} re-used` : 'unchanged (hasNewBuilds = 0): no new builds';
  return `eval ${r.evalId} of ${where}: ${r.builds.length} job(s), ${change} (nix ${r.nixSeconds.toFixed(2)} s, database ${r.dbSeconds.toFixed(2)} s)`;
}

export function evalJson(r: EvaluateResult): unknown {
  return {
    eval: r.evalId,
    jobset_id: r.jobsetId,
    project: r.project,
    jobset: r.jobset,
    hasnewbuilds: r.hasNewBuilds ? 1 : 0,
    nrbuilds: r.nrBuilds,
    error: r.evalError,
    jobErrors: r.jobErrors.map((e) => ({job: e.name, message: e.message})),
    builds: r.builds.map((b) => ({id: b.id, job: b.job, drvpath: b.drvPath, isnew: b.isNew ? 1 : 0})),
    newBuilds: r.newBuilds,
    reusedBuilds: r.reusedBuilds,
    nixSeconds: r.nixSeconds,
    dbSeconds: r.dbSeconds,
  };
}

export function registerEvalCommands(program: Command, ctx: AppContext): void {
  program
    .command('eval <project/jobset>')
    .description("evaluate a jobset with the installed Nix and queue its builds as Hydra's evaluator does")
    .option('--gc-roots', "register each job's .drv as a GC root in gc_roots_dir (as Hydra does), so a GC cannot delete queued derivations")
    .addHelpText(
      'after',
      '\nJobs that fail to evaluate are reported (EvaluationErrors) while the others are queued. An expression that\n' +
        'cannot be evaluated at all is recorded as a failed eval with no builds, and the command exits 1.\n' +
        '\nExamples:\n  hydra-ops eval demo/main\n  hydra-ops eval acme/trunk --json | jq .newBuilds\n' +
        '\nNeeds Hydra role "admin" or "eval-jobset", or to own (or be a member of) the project; audited.\n' +
        '\nExit codes: 0 evaluated · 1 the expression failed / no schema / Nix missing · 2 bad argument · 3 unknown jobset · 4 read-only or not permitted\n',
    )
    .action(async (refText: string, opts: {gcRoots?: boolean}) => {
      await runJobsetAction(async () => {
        const ref = parseJobsetRef(refText);
        refuseReadonly(ctx);
        const pool = await requireHydraSchema(ctx);
        let r: EvaluateResult;
        try {
          r = await runAction(() => evaluateAs(pool, actorOf(ctx), ref.project, ref.jobset, {
            gcRootsDir: opts.gcRoots ? ctx.config().runner.gcRootsDir : undefined,
            log: ctx.json ? undefined : (line) => process.stderr.write(`${line}\n`),
          }));
        } catch (e) {
          if (e instanceof NixNotInstalledError) {
            throw new CliError(EXIT.failed, `${e.message} (Debian/Ubuntu: apt-get install nix-bin; elsewhere: the Nix installer, https://nixos.org/download)`);
          }
          throw e;
        }
        if (ctx.json) printJson(evalJson(r));
        else process.stdout.write(describeEval(r) + '\n');
        if (!ctx.json) {
          for (const e of r.jobErrors) process.stderr.write(`hydra-ops: job ${e.name} failed to evaluate:\n${indent(e.message)}\n`);
        }
        if (r.evalError) {
          if (!ctx.json) process.stderr.write(`hydra-ops: evaluation of ${r.project}/${r.jobset} failed:\n${indent(r.evalError)}\n`);
          ctx.exitCode = EXIT.failed;
        }
      });
    });
}

const indent = (s: string) => s.split('\n').map((l) => `  ${l}`).join('\n');
