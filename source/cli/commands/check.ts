// `hydra-ops check BUILD|DRV`: rebuild a finished successful build's derivation on another builder and compare
// its outputs with the recorded ones (source/actions/check.ts).
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {usageError} from '../exit-codes.js';
import {actorOf, runAction} from '../acting.js';
import {runCheck, type CheckActionResult} from '../../actions/check.js';
import {drainedMachines} from '../../actions/machine-drain.js';
import {CheckRunner} from '../../fleet/check-runner.js';
import {loadMachinesFiles} from '../../fleet/machines-file.js';
import {samplerSettings} from '../../scheduler/repro-sampler.js';

interface CheckOptions {
  machine?: string;
  otherMachine?: boolean;
  rounds?: string;
  dryRun?: boolean;
  diffHook?: string;
}

function printResult(ctx: AppContext, r: CheckActionResult): void {
  if (ctx.json) {
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    return;
  }
  if (r.dryRun) {
    process.stdout.write(`dry run: would rebuild ${r.drvPath} (build ${r.build ?? '-'}, built by ${r.originalMachine ?? 'unknown'}) ${r.rounds}× on ${r.checkMachine}\n`);
    return;
  }
  const lines = [`check ${r.id}: ${r.verdict}`, `  derivation  ${r.drvPath}${r.build !== null ? ` (build ${r.build})` : ''}`, `  machines    built by ${r.originalMachine ?? 'unknown'}, rebuilt ${r.rounds}× on ${r.checkMachine}`];
  for (const o of r.outputs) {
    lines.push(`  ${o.differs ? '≠' : '='} ${o.name.padEnd(8)} ${o.path}`, `      recorded ${o.expected}`, ...o.got.map((h, i) => `      round ${i + 1}  ${h}`));
    if (o.checkPath) lines.push(`      rebuilt copy ${o.checkPath}`);
  }
  if (r.diffLogPath) lines.push(`  diff log    ${r.diffLogPath} (${r.diffTool})`);
  if (r.error) lines.push(`  error       ${r.error}`);
  if (r.logs.length > 0) lines.push(`  build logs  ${r.logs.join(', ')}`);
  process.stdout.write(lines.join('\n') + '\n');
}

export function registerCheckCommand(program: Command, ctx: AppContext): void {
  program
    .command('check <target>')
    .description('reproducibility check: rebuild the derivation of a finished successful build on another machine and compare every output')
    .option('--machine <name>', 'rebuild on this machine (URI, host or user@host; its copy of the outputs is deleted first)')
    .option('--other-machine', 'insist on a machine other than the one that built it (the default)')
    .option('--rounds <n>', 'rebuild this many times and compare all hashes', '1')
    .option('--diff-hook <program>', 'run this instead of the diffHook setting on a mismatch (old path, new path, drv path, check dir)')
    .option('--dry-run', 'only say which machine would rebuild it')
    .addHelpText(
      'after',
      `
TARGET is a build id or a .drv path some successful build step built. The rebuilt outputs are compared by NAR
hash with the coordinator's copies, which stay untouched; a differing output is unpacked as
$HYDRA_DATA/hydra-ops/checks/<id>/<name>.check and diffed (diffoscope if installed, else a built-in summary).
Needs Hydra's restart privilege (admin, role restart-jobs, or owner/member of the build's project).

Examples:
  hydra-ops check 123
  hydra-ops check 123 --machine builder2 --rounds 3
  hydra-ops check /nix/store/…-hello-2.12.drv --json

Exit codes: 0 reproducible · 1 not reproducible, check failed or refused · 2 usage error · 3 not found · 4 permission denied
`,
    )
    .action(async (targetArg: string, opts: CheckOptions) => {
      if (opts.machine !== undefined && opts.otherMachine) throw usageError('give --machine or --other-machine, not both');
      const rounds = Number(opts.rounds ?? '1');
      if (!/^[0-9]+$/.test(opts.rounds ?? '1') || rounds < 1 || rounds > 100) throw usageError(`--rounds: expected a whole number 1..100, got ${JSON.stringify(opts.rounds)}`);
      const target = /^[0-9]+$/.test(targetArg) ? {build: Number(targetArg)} : targetArg.endsWith('.drv') ? {drvPath: targetArg} : null;
      if (!target) throw usageError(`${JSON.stringify(targetArg)} is neither a build id nor a .drv path`);
      const actor = actorOf(ctx);
      const pool = (await ctx.database()).pool;
      const loaded = await loadMachinesFiles(ctx.config().machinesFiles.value);
      for (const e of loaded.errors) process.stderr.write(`hydra-ops: warning: ${e.message}\n`);
      const runner = new CheckRunner();
      try {
        const result = await runAction(async () =>
          runCheck(pool, actor, {...target, machine: opts.machine, otherMachine: opts.otherMachine, rounds, dryRun: opts.dryRun === true}, {
            runner,
            machines: loaded.machines,
            dataDir: ctx.config().dataDir.dir,
            diffHook: opts.diffHook ?? samplerSettings(ctx.env).diffHook,
            diffEnv: samplerSettings(ctx.env).commandEnv,
            drained: await drainedMachines(pool),
            maxLogSize: ctx.config().runner.maxLogSize,
          }),
        );
        printResult(ctx, result);
        if (!result.dryRun && result.verdict !== 'reproducible') ctx.exitCode = 1;
      } finally {
        await runner.close();
      }
    });
}
