// Farm utilities: machine ping, reproduce, export.
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {registerPingCommand} from './ping.js';
import {registerReproduceCommand} from './reproduce.js';
import {registerExportCommand} from './export.js';

export function registerUtilityCommands(program: Command, ctx: AppContext): void {
  registerPingCommand(program, ctx);
  registerReproduceCommand(program, ctx);
  registerExportCommand(program, ctx);
}
