// The command line loads only the module of the subcommand it runs: the table in source/cli/commands/index.ts
// must name exactly what each module registers, and help, unknown commands and --version still behave.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {Command} from 'commander';
import {COMMAND_MODULES} from '../source/cli/commands/index.js';
import {buildProgram, subcommandOf} from '../source/cli/main.js';
import {AppContext} from '../source/cli/context.js';
import {runCli} from './support/cli.js';

test('the module table names exactly the subcommands each module registers', async () => {
  const seen = new Set<string>();
  for (const m of COMMAND_MODULES) {
    const p = new Command();
    // Modules that extend a command of an earlier module (machine ping) find it there.
    for (const earlier of COMMAND_MODULES.slice(0, COMMAND_MODULES.indexOf(m))) {
      if (earlier.names.some((n) => m.names.includes(n))) (await earlier.load())(p, new AppContext({}));
    }
    const before = new Set(p.commands.map((c) => c.name()));
    (await m.load())(p, new AppContext({}));
    const names = p.commands.map((c) => c.name());
    const added = names.filter((n) => !before.has(n));
    const extended = m.names.filter((n) => before.has(n));
    assert.deepEqual([...added, ...extended].sort(), [...m.names].sort(), `module registering ${m.names.join(', ')}`);
    for (const n of m.names) seen.add(n);
  }
  // Every command of the full program is in the table.
  const all = await buildProgram(new AppContext({}));
  for (const c of all.commands) assert.ok(seen.has(c.name()), `${c.name()} is missing from the table`);
});

test('subcommandOf: the name after the global options; none for the console and --version; all for help', () => {
  assert.equal(subcommandOf(['builds', '--json']), 'builds');
  assert.equal(subcommandOf(['--database-url', 'postgres://x/y', '--json', 'builds']), 'builds');
  assert.equal(subcommandOf(['--user', 'alice', '--color', 'never', 'restart', '5']), 'restart');
  assert.equal(subcommandOf([]), null);
  assert.equal(subcommandOf(['--readonly', '--ascii']), null);
  assert.equal(subcommandOf(['--version']), null);
  assert.equal(subcommandOf(['--help']), undefined);
  assert.equal(subcommandOf(['help', 'builds']), undefined);
  assert.equal(subcommandOf(['--', 'log']), 'log');
});

test('the real command line: --version, a subcommand, its help, the full help and an unknown command', {timeout: 60_000}, async () => {
  const [version, sub, subHelp, help, unknown, machine] = await Promise.all([
    runCli(['--version']),
    runCli(['config', 'path'], {HYDRA_OPS_CONFIG_DIR: '/nonexistent-hydra-ops-config'}),
    runCli(['builds', '--help']),
    runCli(['--help']),
    runCli(['no-such-command']),
    runCli(['machine', '--help']),
  ]);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^\d+\.\d+\.\d+/);
  assert.equal(sub.code, 0, sub.stderr);
  assert.match(sub.stdout, /nonexistent-hydra-ops-config/);
  assert.equal(subHelp.code, 0);
  assert.match(subHelp.stdout, /Usage: hydra-ops builds/);
  assert.equal(help.code, 0);
  for (const name of ['daemon', 'builds', 'restart', 'export', 'demo', 'machine']) assert.match(help.stdout, new RegExp(`\\n  ${name}\\b`), name);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command 'no-such-command'/);
  // Both modules that define machine subcommands are loaded for it.
  assert.match(machine.stdout, /ping/);
  assert.match(machine.stdout, /drain/);
});
