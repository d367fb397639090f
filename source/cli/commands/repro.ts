// `hydra-ops repro`: the reproducibility report (share reproducible, unchecked count, the non-reproducible
// builds with diff excerpts), and `--show ID` for one check with its diff.
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {usageError} from '../exit-codes.js';
import {parseId, runAction} from '../acting.js';
import {checkDetail, listChecks, reproReport} from '../../actions/check.js';

export function registerReproCommand(program: Command, ctx: AppContext): void {
  program
    .command('repro')
    .description('reproducibility report over finished successful builds: share reproducible, unchecked, the non-reproducible ones with diff excerpts')
    .option('--filter <expr>', 'only builds the filter matches (see README.md, Filter expressions)')
    .option('--limit <n>', 'non-reproducible builds listed', '50')
    .option('--show <check>', 'one check with its diff (the first 200 lines of its diff log)')
    .option('--recent', 'list the most recent checks instead of the report')
    .addHelpText(
      'after',
      `
"unchecked" builds were never checked conclusively (checks that failed leave a build unchecked); they are
never counted as reproducible or not.

Examples:
  hydra-ops repro
  hydra-ops repro --filter "jobset:demo:main age<7d" --json
  hydra-ops repro --show 42
`,
    )
    .action(async (opts: {filter?: string; limit?: string; show?: string; recent?: boolean}) => {
      const limit = Number(opts.limit ?? '50');
      if (!/^[0-9]+$/.test(opts.limit ?? '50') || limit < 1) throw usageError(`--limit: expected a positive whole number, got ${JSON.stringify(opts.limit)}`);
      const pool = (await ctx.database()).pool;
      const out = (v: unknown): void => void process.stdout.write(JSON.stringify(v, null, 2) + '\n');
      if (opts.show !== undefined) {
        const d = await runAction(() => checkDetail(pool, parseId(opts.show!, 'check id')));
        if (ctx.json) return out(d);
        const c = d.check;
        const lines = [
          `check ${c.id}: ${c.verdict}  ${c.drvPath}${c.build !== null ? ` (build ${c.build})` : ''}`,
          `  built by ${c.originalMachine ?? 'unknown'}, rebuilt ${c.rounds ?? 1}× on ${c.checkMachine ?? '?'}; started ${c.startedAt ?? '-'}, finished ${c.finishedAt ?? '-'} by ${c.requestedBy ?? '?'}`,
          ...c.outputs.map((o) => `  ${o.differs ? '≠' : '='} ${o.name} ${o.path}`),
        ];
        if (c.error) lines.push(`  error: ${c.error}`);
        if (c.diffLogPath) lines.push(`  diff log: ${c.diffLogPath}`, '', ...d.excerpt);
        process.stdout.write(lines.join('\n') + '\n');
        return;
      }
      if (opts.recent) {
        const {checks} = await listChecks(pool, {limit});
        if (ctx.json) return out(checks);
        for (const c of checks) {
          process.stdout.write(`${String(c.id).padStart(6)}  ${c.verdict.padEnd(16)} ${String(c.build ?? '-').padStart(7)}  ${(c.checkMachine ?? '-').padEnd(28)} ${c.drvPath}\n`);
        }
        return;
      }
      const r = await runAction(() => reproReport(pool, {filter: opts.filter, limit}));
      if (ctx.json) return out(r);
      const pct = r.reproducibleShare === null ? '–' : `${(r.reproducibleShare * 100).toFixed(1)} %`;
      const lines = [
        `${r.scope}: ${r.builds} build(s)`,
        `  reproducible      ${r.reproducible} (${pct} of ${r.checked} checked)`,
        `  not reproducible  ${r.notReproducible}`,
        `  unchecked         ${r.unchecked}${r.checkFailed > 0 ? ` (${r.checkFailed} with failed checks only)` : ''}`,
        `  checks running    ${r.running}`,
      ];
      for (const n of r.nonReproducibleList) {
        lines.push('', `≠ build ${n.build} ${n.project}:${n.jobset}:${n.job}  check ${n.check} (${n.originalMachine ?? '?'} vs ${n.checkMachine ?? '?'}), differing: ${n.differing.join(', ') || '?'}`);
        lines.push(`  ${n.drvPath}`);
        if (n.diffLogPath) lines.push(`  diff log: ${n.diffLogPath}`);
        for (const l of n.excerpt) lines.push(`    ${l}`);
      }
      process.stdout.write(lines.join('\n') + '\n');
    });
}
