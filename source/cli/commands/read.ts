// Read-only listings: queue, builds, build ID, steps, jobsets, evals. JSON rows use Hydra's lower-case
// column names; listings page with keyset cursors (--after takes the previous page's nextCursor).
import {escapeControl} from '../../config/escape.js';
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {notFound, usageError} from '../exit-codes.js';
import {formatDuration, printJson, printTable} from '../output.js';
import {parseId} from '../acting.js';
import {parseLimit} from './audit.js';
import {FilterError, formatFilterError} from '../../db/filter.js';
import {buildMetrics, buildOutputs, buildProducts, countBuilds, getBuild, listBuilds, type BuildRow} from '../../db/queries/builds.js';
import {buildSteps, listSteps, stepOutputs, type StepRow} from '../../db/queries/steps.js';
import {listJobsets} from '../../db/queries/jobsets.js';
import {listEvals} from '../../db/queries/evals.js';
import {nrQueued, nrRunningBuilds, queueSummary} from '../../db/queries/queue.js';
import {postBuildRuns} from '../../db/queries/post-build.js';
import {BUILD_STATUS, BUSY_PHASES} from '../../db/status.js';

export function statusName(code: number | null | undefined): string {
  if (code === null || code === undefined) return '-';
  return BUILD_STATUS[code]?.name ?? `unknown (${code})`;
}

export function phaseName(busy: number): string {
  return busy === 0 ? '-' : (BUSY_PHASES[busy]?.name ?? `busy ${busy}`);
}

function buildState(b: BuildRow): string {
  return b.finished === 0 ? 'queued' : statusName(b.buildstatus);
}

const now = () => Math.floor(Date.now() / 1000);

/** Runs a query built from a user filter; filter errors become usage errors with a caret. */
async function withFilter<T>(filter: string | undefined, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof FilterError) throw usageError(filter !== undefined ? formatFilterError(filter, e) : e.message);
    if (e instanceof RangeError) throw usageError(e.message);
    throw e;
  }
}

function buildTable(rows: BuildRow[]): void {
  printTable(rows, [
    {header: 'ID', value: (b) => b.id, align: 'right'},
    {header: 'JOBSET', value: (b) => `${b.project}:${b.jobset}`},
    {header: 'JOB', value: (b) => b.job},
    {header: 'SYSTEM', value: (b) => b.system},
    {header: 'STATE', value: (b) => buildState(b) + (b.finished === 1 && b.iscachedbuild === 1 ? ' (cached)' : '')},
    {header: 'PRIO', value: (b) => (b.globalpriority > 0 ? `bumped ${b.priority}` : b.priority), align: 'right'},
    {header: 'AGE', value: (b) => formatDuration(now() - b.timestamp), align: 'right'},
  ]);
}

export function registerReadCommands(program: Command, ctx: AppContext): void {
  program
    .command('queue')
    .description("queued builds in Hydra's queue order (globalPriority DESC, id), with per-jobset and per-system counts")
    .option('--filter <expr>', 'only queued builds matching the filter')
    .option('--limit <n>', 'builds to list (default 100)')
    .option('--after <cursor>', 'continue after the nextCursor of a previous page')
    .addHelpText('after', '\nExamples:\n  hydra-ops queue\n  hydra-ops queue --filter "system:aarch64-darwin age>2h" --json\n')
    .action(async (opts: {filter?: string; limit?: string; after?: string}) => {
      const limit = parseLimit(opts.limit, 100);
      const {pool} = await ctx.database();
      const page = await withFilter(opts.filter, () => listBuilds(pool, {order: 'queue', filter: opts.filter, limit, after: opts.after ?? null}));
      const [queued, running, summary, matching] = await Promise.all([
        nrQueued(pool),
        nrRunningBuilds(pool),
        queueSummary(pool),
        opts.filter ? withFilter(opts.filter, () => countBuilds(pool, opts.filter, {order: 'queue'})) : Promise.resolve(null),
      ]);
      if (ctx.json) {
        printJson({queued, running, matching, builds: page.rows, nextCursor: page.nextCursor, jobsets: summary.jobsets, systems: summary.systems});
        return;
      }
      process.stderr.write(`${running} running / ${queued} queued${matching !== null ? ` / ${matching} matching` : ''}\n`);
      buildTable(page.rows);
      if (page.nextCursor) process.stderr.write(`more: --after ${page.nextCursor}\n`);
    });

  program
    .command('builds')
    .description('builds, newest first, optionally filtered')
    .option('--filter <expr>', 'filter expression (e.g. "jobset:nixpkgs:trunk status:failed age<1d")')
    .option('--limit <n>', 'builds to list (default 100)')
    .option('--after <cursor>', 'continue after the nextCursor of a previous page')
    .option('--count', 'also count every matching build')
    .addHelpText('after', '\nExamples:\n  hydra-ops builds --filter "status:failed age<1d"\n  hydra-ops builds --filter "eval:4711" --json --limit 1000\n')
    .action(async (opts: {filter?: string; limit?: string; after?: string; count?: boolean}) => {
      const limit = parseLimit(opts.limit, 100);
      const {pool} = await ctx.database();
      const page = await withFilter(opts.filter, () => listBuilds(pool, {filter: opts.filter, limit, after: opts.after ?? null}));
      const total = opts.count ? await withFilter(opts.filter, () => countBuilds(pool, opts.filter)) : null;
      if (ctx.json) {
        printJson({builds: page.rows, nextCursor: page.nextCursor, total});
        return;
      }
      buildTable(page.rows);
      if (total !== null) process.stderr.write(`${total} matching\n`);
      if (page.nextCursor) process.stderr.write(`more: --after ${page.nextCursor}\n`);
    });

  program
    .command('build <id>')
    .description('one build: its row, outputs, steps, products, metrics and evaluations')
    .addHelpText('after', '\nExamples:\n  hydra-ops build 123\n  hydra-ops build 123 --json | jq .steps\n\nExit code 3 when there is no such build.\n')
    .action(async (idArg: string) => {
      const id = parseId(idArg, 'build id');
      const {pool} = await ctx.database();
      const build = await getBuild(pool, id);
      if (!build) throw notFound(`no build ${id}`);
      const [outputs, steps, products, metrics, evals, postBuild] = await Promise.all([
        buildOutputs(pool, id),
        buildSteps(pool, id),
        buildProducts(pool, id),
        buildMetrics(pool, id),
        pool.query<{eval: number}>('SELECT eval FROM JobsetEvalMembers WHERE build = $1 ORDER BY eval', [id]).then((r) => r.rows.map((x) => x.eval)),
        postBuildRuns(pool, id),
      ]);
      if (ctx.json) {
        printJson({build, outputs, steps, products, metrics, evals, postBuild});
        return;
      }
      const lines = [
        `build ${build.id}  ${build.project}:${build.jobset}  ${build.job}  (${build.system})`,
        `state: ${buildState(build)}${build.iscachedbuild === 1 ? ' (cached)' : ''}   priority ${build.priority}   globalpriority ${build.globalpriority}`,
        `drv: ${build.drvpath}`,
        ...outputs.map((o) => `output ${o.name}: ${o.path ?? '-'}`),
        `evals: ${evals.join(', ') || '-'}`,
      ];
      process.stdout.write(lines.map(escapeControl).join('\n') + '\n');
      if (steps.length) stepTable(steps);
      for (const r of postBuild) {
        const result = r.status === 'done' || r.status === 'failed' ? `${r.status}${r.exit_code !== null ? ` (exit ${r.exit_code})` : r.signal ? ` (${r.signal})` : ''}` : r.status;
        process.stdout.write(
          `${escapeControl(`post-build ${r.matcher} (${r.command_source ?? `command ${r.command_id}`})`)}\n  ${escapeControl(`${result}, attempt ${r.attempts}${r.error ? `: ${r.error}` : ''}`)}\n`,
        );
        if (r.output) process.stdout.write(r.output.replace(/\n$/, '').split('\n').map((l) => `  | ${escapeControl(l)}`).join('\n') + '\n');
      }
    });

  program
    .command('steps')
    .description('build steps: finished ones, latest first, or --running ones, oldest first')
    .option('--running', 'only running steps (busy != 0)')
    .option('--filter <expr>', 'filter expression (e.g. "phase:connecting age>10m")')
    .option('--limit <n>', 'steps to list (default 100)')
    .option('--after <cursor>', 'continue after the nextCursor of a previous page')
    .option('--outputs', 'include each step\'s outputs in --json')
    .addHelpText('after', '\nExamples:\n  hydra-ops steps --running\n  hydra-ops steps --running --filter "phase:connecting,sending age>10m" --json\n')
    .action(async (opts: {running?: boolean; filter?: string; limit?: string; after?: string; outputs?: boolean}) => {
      const limit = parseLimit(opts.limit, 100);
      const {pool} = await ctx.database();
      const page = await withFilter(opts.filter, () => listSteps(pool, {running: opts.running === true, filter: opts.filter, limit, after: opts.after ?? null}));
      if (ctx.json) {
        const steps = opts.outputs ? await Promise.all(page.rows.map(async (s) => ({...s, outputs: await stepOutputs(pool, s.build, s.stepnr)}))) : page.rows;
        printJson({steps, nextCursor: page.nextCursor});
        return;
      }
      stepTable(page.rows);
      if (page.nextCursor) process.stderr.write(`more: --after ${page.nextCursor}\n`);
    });

  program
    .command('jobsets')
    .description('jobsets with their shares and queued / running build counts')
    .addHelpText('after', '\nExamples:\n  hydra-ops jobsets\n  hydra-ops jobsets --json | jq \'.jobsets[] | select(.nrqueued > 0)\'\n')
    .action(async () => {
      const {pool} = await ctx.database();
      const jobsets = await listJobsets(pool);
      if (ctx.json) {
        printJson({jobsets});
        return;
      }
      printTable(jobsets, [
        {header: 'JOBSET', value: (j) => `${j.project}:${j.name}`},
        {header: 'ENABLED', value: (j) => ['no', 'yes', 'one-shot', 'one-at-a-time'][j.enabled] ?? String(j.enabled)},
        {header: 'SHARES', value: (j) => j.schedulingshares, align: 'right'},
        {header: 'QUEUED', value: (j) => j.nrqueued, align: 'right'},
        {header: 'RUNNING', value: (j) => j.nrrunning, align: 'right'},
        {header: 'CHECKED', value: (j) => (j.lastcheckedtime ? `${formatDuration(now() - j.lastcheckedtime)} ago` : null)},
        {header: 'ERROR', value: (j) => (j.errortime ? 'yes' : null)},
      ]);
    });

  program
    .command('evals')
    .description('evaluations, newest first')
    .option('--jobset <project:jobset>', 'only this jobset')
    .option('--filter <expr>', 'filter expression (fields id, project, jobset, eval, age)')
    .option('--limit <n>', 'evaluations to list (default 50)')
    .option('--after <cursor>', 'continue after the nextCursor of a previous page')
    .addHelpText('after', '\nExamples:\n  hydra-ops evals --jobset nixpkgs:trunk --limit 5\n  hydra-ops evals --filter "age<1d" --json\n')
    .action(async (opts: {jobset?: string; filter?: string; limit?: string; after?: string}) => {
      const limit = parseLimit(opts.limit, 50);
      const {pool} = await ctx.database();
      const page = await withFilter(opts.filter, () => listEvals(pool, {jobset: opts.jobset, filter: opts.filter, limit, after: opts.after ?? null}));
      if (ctx.json) {
        printJson({evals: page.rows, nextCursor: page.nextCursor});
        return;
      }
      printTable(page.rows, [
        {header: 'ID', value: (e) => e.id, align: 'right'},
        {header: 'JOBSET', value: (e) => `${e.project}:${e.jobset}`},
        {header: 'AGE', value: (e) => formatDuration(now() - e.timestamp), align: 'right'},
        {header: 'NEW', value: (e) => (e.hasnewbuilds ? 'yes' : 'no')},
        {header: 'BUILDS', value: (e) => e.nrbuilds, align: 'right'},
        {header: 'SUCCEEDED', value: (e) => e.nrsucceeded, align: 'right'},
        {header: 'ERROR', value: (e) => (e.haserror ? 'yes' : null)},
      ]);
      if (page.nextCursor) process.stderr.write(`more: --after ${page.nextCursor}\n`);
    });
}

function stepTable(rows: StepRow[]): void {
  printTable(rows, [
    {header: 'BUILD', value: (s) => `${s.build}/${s.stepnr}`, align: 'right'},
    {header: 'DRV', value: (s) => (s.drvpath ?? '-').replace(/^.*?\/[a-z0-9]{32}-/, '')},
    {header: 'SYSTEM', value: (s) => s.system},
    {header: 'MACHINE', value: (s) => s.machine || null},
    {header: 'STATE', value: (s) => (s.busy !== 0 ? phaseName(s.busy) : statusName(s.status))},
    {
      header: 'TIME',
      value: (s) => (s.starttime ? formatDuration((s.busy !== 0 ? now() : (s.stoptime ?? now())) - s.starttime) : null),
      align: 'right',
    },
  ]);
}
