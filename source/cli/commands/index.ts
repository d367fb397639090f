import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {registerDbCommands} from './db.js';
import {registerConfigCommands} from './config.js';
import {registerDaemonCommand} from './daemon.js';
import {registerActionCommands} from './actions.js';
import {registerAuditCommands} from './audit.js';
import {registerReadCommands} from './read.js';
import {registerStatusCommands} from './status.js';
import {registerLogCommands} from './log.js';
import {registerWatchCommands} from './watch.js';
import {registerProjectCommands} from './project.js';
import {registerJobsetCommands} from './jobset.js';
import {registerEvalCommands} from './eval.js';
import {registerEnqueueCommands} from './enqueue.js';
import {registerDemoCommands} from './demo.js';
import {registerCheckCommand} from './check.js';
import {registerReproCommand} from './repro.js';
import {registerUtilityCommands} from './utilities.js';

/** Every subcommand module registers itself here. */
export function registerCommands(program: Command, ctx: AppContext): void {
  registerDbCommands(program, ctx);
  registerConfigCommands(program, ctx);
  registerDaemonCommand(program, ctx);
  registerActionCommands(program, ctx);
  registerAuditCommands(program, ctx);
  registerReadCommands(program, ctx);
  registerStatusCommands(program, ctx);
  registerLogCommands(program, ctx);
  registerWatchCommands(program, ctx);
  registerProjectCommands(program, ctx);
  registerJobsetCommands(program, ctx);
  registerEvalCommands(program, ctx);
  registerEnqueueCommands(program, ctx);
  registerDemoCommands(program, ctx);
  registerCheckCommand(program, ctx);
  registerReproCommand(program, ctx);
  registerUtilityCommands(program, ctx);
}
