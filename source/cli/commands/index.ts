import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {registerDbCommands} from './db.js';
import {registerConfigCommands} from './config.js';
import {registerActionCommands} from './actions.js';
import {registerAuditCommands} from './audit.js';

/** Every subcommand module registers itself here. */
export function registerCommands(program: Command, ctx: AppContext): void {
  registerDbCommands(program, ctx);
  registerConfigCommands(program, ctx);
  registerActionCommands(program, ctx);
  registerAuditCommands(program, ctx);
}
