// `hydra-ops config get|set|unset|list|path`: hydra-ops' persisted settings.
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {openSettings} from '../../config/settings.js';
import {ConfigError} from '../../config/errors.js';
import {CliError, EXIT} from '../exit-codes.js';
import {printJson, printTable} from '../output.js';

function settings(ctx: AppContext) {
  return openSettings(ctx.env);
}

function asUsage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(EXIT.usage, e.message);
    throw e;
  }
}

export function registerConfigCommands(program: Command, ctx: AppContext): void {
  const config = program
    .command('config')
    .description("hydra-ops' persisted settings (flags and environment variables override them)")
    .addHelpText('after', '\nExamples:\n  hydra-ops config list\n  hydra-ops config set hydraUser alice\n  hydra-ops config get embeddedPort\n');

  config
    .command('get <key>')
    .description('print one setting')
    .action((key: string) => {
      const s = settings(ctx);
      const info = asUsage(() => s.listSettings().find((i) => i.key === key) ?? s.getSetting(key as never));
      if (typeof info !== 'object' || info === null) throw new CliError(EXIT.usage, `unknown setting "${key}"`);
      const value = info.secret && !ctx.json ? '(secret)' : info.value;
      if (ctx.json) printJson({key, value: info.value ?? null, source: info.source});
      else process.stdout.write(`${value ?? ''}\n`);
    });

  config
    .command('set <key> <value>')
    .description('store a setting (validated against its type)')
    .action((key: string, value: string) => {
      const s = settings(ctx);
      asUsage(() => s.setSetting(key, value));
      if (ctx.json) printJson({key, value: s.getSetting(key as never)});
    });

  config
    .command('unset <key>')
    .description('remove a stored setting (its default applies again)')
    .action((key: string) => {
      asUsage(() => settings(ctx).unsetSetting(key));
    });

  config
    .command('list')
    .description('every setting with its value and where it comes from')
    .action(() => {
      const list = asUsage(() => settings(ctx).listSettings());
      if (ctx.json) {
        printJson(list.map((i) => ({key: i.key, value: i.secret ? null : (i.value ?? null), source: i.source, description: i.description})));
        return;
      }
      printTable(list, [
        {header: 'KEY', value: (i) => i.key},
        {header: 'VALUE', value: (i) => (i.secret ? '(secret)' : i.value === undefined ? '-' : String(i.value))},
        {header: 'SOURCE', value: (i) => i.source},
        {header: 'DESCRIPTION', value: (i) => i.description},
      ]);
    });

  config
    .command('path')
    .description('where the settings file lives')
    .action(() => {
      const p = settings(ctx).settingsPath();
      if (ctx.json) printJson({path: p});
      else process.stdout.write(`${p}\n`);
    });
}
