// `hydra-ops machine ping NAME|--all`: is each build machine usable (connect, serve handshake, import and
// build permission, systems, features, free space, Nix version)? Exit 1 when any machine is unusable.
import type {Command} from 'commander';
import {existsSync} from 'node:fs';
import type {AppContext} from '../context.js';
import {failed, notFound, usageError} from '../exit-codes.js';
import {printJson, printTable} from '../output.js';
import {formatBytes, pingMachines, selectMachines, type PingResult} from '../../actions/ping.js';
import {implicitLocalhost, loadMachinesFiles, type MachineSpec} from '../../fleet/machines-file.js';

/** The machines in force: the machines files, or the implicit localhost machine when there are none. */
export async function machinesInForce(ctx: AppContext): Promise<MachineSpec[]> {
  const {value, source} = ctx.config().machinesFiles;
  const files = source === 'default' ? value.filter((f) => existsSync(f)) : value;
  if (files.length === 0) return [await implicitLocalhost(ctx.env)];
  const loaded = await loadMachinesFiles(files);
  for (const e of loaded.errors) process.stderr.write(`hydra-ops: warning: ${e.message}\n`);
  return loaded.machines;
}

function yesNo(v: boolean | null): string {
  return v === null ? '-' : v ? 'yes' : 'NO';
}

function printResults(results: PingResult[]): void {
  printTable(results, [
    {header: 'MACHINE', value: (r) => r.uri},
    {header: 'OK', value: (r) => (r.ok ? 'ok' : 'UNUSABLE')},
    {header: 'CONNECT', value: (r) => (r.connectMs === null ? null : `${r.connectMs}ms`), align: 'right'},
    {header: 'PROTO', value: (r) => (r.handshake && 'version' in r.handshake ? r.handshake.version : r.handshake ? 'failed' : null)},
    {header: 'IMPORT', value: (r) => yesNo(r.canImport)},
    {header: 'BUILD', value: (r) => yesNo(r.canBuild)},
    {header: 'SYSTEMS', value: (r) => r.systems?.join(',')},
    {header: 'FREE', value: (r) => (r.storeFreeBytes === null ? null : formatBytes(r.storeFreeBytes)), align: 'right'},
    {header: 'NIX', value: (r) => r.nixVersion},
  ]);
  for (const r of results) {
    for (const p of r.problems) {
      process.stdout.write(`\n${r.uri}: ${p.severity}: [${p.kind}] ${p.message}\n  fix: ${p.fix}\n`);
    }
  }
}

export function registerPingCommand(program: Command, ctx: AppContext): void {
  // `machine` is a command group shared with drain/enable: add to it rather than define it twice.
  const machine = program.commands.find((c) => c.name() === 'machine') ?? program.command('machine').description('build machines');
  machine
    .command('ping [name]')
    .description('check build machines: SSH connect time, serve handshake, import/build permission, systems, features, free space, Nix version')
    .option('--all', 'every machine of the machines file')
    .option('--timeout <seconds>', 'per-operation budget', '15')
    .option('--min-free <GiB>', 'warn below this much free space in a builder store', '1')
    .addHelpText(
      'after',
      `
NAME is the machine's URI from the machines file, or its host name. The probe imports one tiny unsigned text
object (${'hydra-ops-ping-probe'}) and asks to "build" a derivation whose only output is that object, so nothing is
built. Exit status 1 when any machine is unusable.

Examples:
  hydra-ops machine ping --all
  hydra-ops machine ping builder1 --json
`,
    )
    .action(async (name: string | undefined, opts: {all?: boolean; timeout: string; minFree: string}) => {
      if ((name === undefined) === (opts.all !== true)) throw usageError('machine ping: give a machine NAME or --all (not both)');
      const timeout = Number(opts.timeout);
      if (!Number.isFinite(timeout) || timeout <= 0) throw usageError(`--timeout: "${opts.timeout}" is not a positive number of seconds`);
      const minFree = Number(opts.minFree);
      if (!Number.isFinite(minFree) || minFree < 0) throw usageError(`--min-free: "${opts.minFree}" is not a number of GiB`);
      const all = await machinesInForce(ctx);
      const specs = name === undefined ? all : selectMachines(all, name);
      if (specs.length === 0) throw notFound(`no machine "${name}" in ${ctx.config().machinesFiles.value.join(', ')}`);
      const results = await pingMachines(specs, {timeoutMs: timeout * 1000, minFreeBytes: minFree * 2 ** 30});
      if (ctx.json) printJson({machines: results});
      else printResults(results);
      const bad = results.filter((r) => !r.ok);
      if (bad.length > 0) {
        if (ctx.json) ctx.exitCode = 1;
        else throw failed(`${bad.length} of ${results.length} machine(s) unusable: ${bad.map((r) => r.uri).join(', ')}`);
      }
    });
}
