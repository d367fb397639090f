// `hydra-ops db init|status|stop`
import type {Command} from 'commander';
import type {AppContext} from '../context.js';
import {initSchema, inspectSchema, SchemaError} from '../../db/schema.js';
import {embeddedStatus, stopEmbedded} from '../../db/embedded.js';
import {describeTarget} from '../../db/connection.js';
import {identityFile} from '../../db/embedded-identity.js';
import {CliError, EXIT} from '../exit-codes.js';
import {printJson} from '../output.js';
import {RUNNER_LOCK_KEY, describeLockSession, runnerLockSession} from '../../db/runner-advisory-lock.js';
import {runnerLockHolder} from '../../scheduler/runner-lock.js';
import {refuseReadonly} from './jobset-support.js';

export function registerDbCommands(program: Command, ctx: AppContext): void {
  const db = program.command('db').description('the database: create the schema, show which database is used, stop the embedded server');

  db.command('init')
    .description("create Hydra's schema (v87) on an empty database and apply hydra-ops' own migrations; idempotent")
    .addHelpText('after', '\nExamples:\n  hydra-ops db init\n  HYDRA_DBI="dbi:Pg:dbname=hydra;host=db1" hydra-ops db init --json\n')
    .action(async () => {
      refuseReadonly(ctx);
      const database = await ctx.database();
      let result;
      try {
        result = await initSchema(database.pool);
      } catch (e) {
        if (e instanceof SchemaError) throw new CliError(EXIT.failed, `refused: ${e.message}`, e.state);
        throw e;
      }
      if (ctx.json) {
        printJson({database: database.describe(), ...result});
        return;
      }
      const lines = [
        `database: ${database.describe()}`,
        result.createdHydraSchema ? `created Hydra's schema (version ${result.state.hydraVersion})` : `Hydra schema version ${result.state.hydraVersion}: left unchanged`,
        result.appliedMigrations.length > 0
          ? `applied hydra_ops migrations ${result.appliedMigrations.join(', ')}`
          : `hydra_ops schema up to date (version ${result.state.hydraOpsVersion})`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
    });

  db.command('status')
    .description("which database is in use, how it was chosen, the state of its schema, and who holds the database's runner lock")
    .addHelpText('after', '\nExamples:\n  hydra-ops db status\n  hydra-ops db status --json | jq .schema.hydraVersion\n')
    .action(async () => {
      const config = ctx.config();
      const target = ctx.databaseTarget();
      const database = await ctx.database();
      const handle = database.embedded;
      const serverPid = target.kind === 'embedded' ? embeddedStatus(target.dir).pid : null;
      const embedded =
        target.kind === 'embedded' && handle
          ? {
              dir: target.dir,
              port: handle.endpoint.kind === 'tcp' ? handle.endpoint.port : null,
              listen:
                handle.endpoint.kind === 'socket'
                  ? {kind: 'socket' as const, socketDir: handle.endpoint.dir, socket: handle.endpoint.path}
                  : {kind: 'tcp' as const, host: handle.endpoint.host, port: handle.endpoint.port, portFrom: handle.endpoint.reason},
              systemIdentifier: handle.systemIdentifier,
              identityVerified: handle.identityVerified,
              identityFile: identityFile(target.dir),
              pid: serverPid,
              startedNow: handle.startedHere,
            }
          : null;
      const schema = await inspectSchema(database.pool);
      const holder = await runnerLockSession(database.pool);
      const fileHolder = runnerLockHolder(config.dataDir.dir);
      const report = {
        database: {
          kind: target.kind,
          chosenBy: target.source,
          description: database.describe(),
          ...(embedded ? {embedded} : {}),
        },
        dataDir: {path: config.dataDir.dir, chosenBy: config.dataDir.source},
        schema,
        runnerLock: {
          key: RUNNER_LOCK_KEY.toString(),
          state: holder ? ('held' as const) : ('free' as const),
          holder,
          dataDirLock: fileHolder,
        },
      };
      if (ctx.json) {
        printJson(report);
      } else {
        const out = [
          `database:   ${report.database.description}`,
          ...(embedded && handle
            ? [
                `server:     pid ${serverPid ?? '-'}${handle.startedHere ? ' (started by this command)' : ''}, listening on ${handle.listen}`,
                `identity:   verified: system identifier ${embedded.systemIdentifier} matches ${embedded.identityFile}, SCRAM-SHA-256 authentication`,
              ]
            : []),
          `data dir:   ${config.dataDir.dir} (${config.dataDir.source})`,
          `schema:     ${schema.message}`,
          `hydra_ops:  ${schema.hydraOpsVersion === null ? 'not set up' : `version ${schema.hydraOpsVersion}`} (latest ${schema.hydraOpsLatest})`,
        ];
        if (schema.missing.length > 0) out.push(`missing:    ${schema.missing.join(', ')}`);
        out.push(`runner lock: ${holder ? `held by ${describeLockSession(holder)}` : 'free (no hydra-ops runner on this database)'}`);
        if (fileHolder) out.push(`lock file:  ${fileHolder.file} held${fileHolder.pid ? ` by pid ${fileHolder.pid}` : ''}`);
        process.stdout.write(out.join('\n') + '\n');
      }
      if (schema.kind === 'foreign' || (schema.kind === 'hydra' && !schema.supported)) ctx.exitCode = EXIT.failed;
    });

  db.command('stop')
    .description('stop the embedded PostgreSQL server (also an orphan left by a killed process)')
    .action(async () => {
      const target = ctx.databaseTarget();
      if (target.kind !== 'embedded') throw new CliError(EXIT.usage, `the configured database is not the embedded server (${describeTarget(target)})`);
      const pid = await stopEmbedded(target.dir);
      if (ctx.json) printJson({stopped: pid !== null, pid});
      else process.stdout.write(pid ? `stopped the embedded PostgreSQL server (pid ${pid})\n` : 'the embedded PostgreSQL server is not running\n');
    });
}
