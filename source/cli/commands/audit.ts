// `hydra-ops audit`: the audit log of operator actions (newest first).
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {usageError} from '../exit-codes.js';
import {printJson, printTable} from '../output.js';
import {listAudit} from '../../actions/audit.js';
import {AUDIT_OUTCOMES, type AuditOutcome} from '../../db/schema/hydra-ops-migrations.js';

export function parseLimit(value: string | undefined, fallback: number, max = 10_000): number {
  if (value === undefined) return fallback;
  if (!/^[0-9]+$/.test(value) || Number(value) < 1 || Number(value) > max) throw usageError(`--limit: expected an integer from 1 to ${max}, got "${value}"`);
  return Number(value);
}

export function registerAuditCommands(program: Command, ctx: AppContext): void {
  program
    .command('audit')
    .description('every operator action, allowed or refused: who, when, what, scope, rows changed')
    .option('--limit <n>', 'entries per page (default 50)')
    .option('--before <id>', 'entries older than this audit id (the nextBefore of the previous page)')
    .option('--action <name>', 'only this action (restart, cancel, bump, …)')
    .option('--hydra-user <name>', 'only this acting Hydra user')
    .option('--outcome <outcome>', `only this outcome (${AUDIT_OUTCOMES.join(', ')})`)
    .addHelpText('after', '\nExamples:\n  hydra-ops audit\n  hydra-ops audit --outcome refused --json\n  hydra-ops audit --action cancel --limit 10\n')
    .action(async (opts: {limit?: string; before?: string; action?: string; hydraUser?: string; outcome?: string}) => {
      const limit = parseLimit(opts.limit, 50);
      if (opts.before !== undefined && !/^[0-9]+$/.test(opts.before)) throw usageError(`--before: expected an audit id, got "${opts.before}"`);
      if (opts.outcome !== undefined && !(AUDIT_OUTCOMES as readonly string[]).includes(opts.outcome)) {
        throw usageError(`--outcome: expected one of ${AUDIT_OUTCOMES.join(', ')}, got "${opts.outcome}"`);
      }
      const db = await ctx.database();
      const page = await listAudit(db.pool, {
        limit,
        before: opts.before === undefined ? undefined : Number(opts.before),
        action: opts.action,
        hydraUser: opts.hydraUser,
        outcome: opts.outcome as AuditOutcome | undefined,
      });
      if (ctx.json) {
        printJson(page);
        return;
      }
      printTable(page.entries, [
        {header: 'ID', value: (e) => e.id, align: 'right'},
        {header: 'AT', value: (e) => e.at.replace('T', ' ').replace(/\.\d+Z$/, 'Z')},
        {header: 'USER', value: (e) => `${e.hydra_user ?? '-'} (${e.unix_user ?? '-'}@${e.host ?? '-'})`},
        {header: 'ACTION', value: (e) => e.action},
        {header: 'SCOPE', value: (e) => e.scope},
        {header: 'TARGETS', value: (e) => e.target_count, align: 'right'},
        {header: 'CHANGED', value: (e) => e.result_count, align: 'right'},
        {header: 'OUTCOME', value: (e) => e.outcome},
        {header: 'MESSAGE', value: (e) => (e.message ? e.message.slice(0, 80) : null)},
      ]);
    });
}
