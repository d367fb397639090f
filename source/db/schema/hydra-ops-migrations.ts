// hydra-ops' own tables, kept in the Postgres schema `hydra_ops` so Hydra's tables are never altered.
//
// Migrations are applied in version order, each recorded in hydra_ops.schema_migrations. To change the schema,
// APPEND a new entry with the next version number; never edit or reorder an entry that has shipped (databases
// that already applied it would not see the change). `validateMigrations` runs on import and rejects a list
// whose versions are not 1, 2, 3, … in order.
//
// Design notes:
// - No foreign keys point into Hydra's tables: a foreign key adds internal triggers to the referenced table,
//   needs the REFERENCES privilege on it, and would make Hydra's own TRUNCATE/DROP of that table fail. Rows keep
//   the build id (and the drv path, the stable key) and simply outlive a deleted build.
// - Every table has the index its list view pages on (keyset pagination).

export interface Migration {
  /** 1, 2, 3, … — the position in the list. */
  readonly version: number;
  /** One line saying what the migration does (shown by `db status`). */
  readonly description: string;
  /** SQL statements, no bind parameters; run as one simple query inside the migration transaction. */
  readonly sql: string;
}

/** Name of hydra-ops' Postgres schema. */
export const HYDRA_OPS_SCHEMA = 'hydra_ops';

/** Creates the schema (needs CREATE on the database); run only when the schema does not exist yet, so a
 *  DBA may pre-create it for a role without that privilege. */
export const HYDRA_OPS_CREATE_SCHEMA_SQL = 'create schema hydra_ops';

/** Creates the migration ledger; idempotent. Not a migration itself. */
export const HYDRA_OPS_LEDGER_SQL = `
create table if not exists hydra_ops.schema_migrations (
    version     integer primary key,
    applied_at  timestamptz not null default now()
);
`;

/** Values allowed in hydra_ops.audit_log.outcome. */
export const AUDIT_OUTCOMES = ['ok', 'refused', 'failed', 'dry-run'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/** Values allowed in hydra_ops.repro_checks.verdict. */
export const REPRO_VERDICTS = ['reproducible', 'not-reproducible', 'check-failed', 'unchecked', 'running'] as const;
export type ReproVerdict = (typeof REPRO_VERDICTS)[number];

const sqlList = (values: readonly string[]): string => values.map((v) => `'${v}'`).join(', ');

const migration1 = `
-- Every operator action, allowed or refused: who, what, on which targets, with what result.
create table hydra_ops.audit_log (
    id            bigserial primary key,
    at            timestamptz not null default now(),
    unix_user     text,
    hydra_user    text,
    host          text,
    action        text not null,
    scope         text,            -- filter text or a description of the ids acted on
    target_count  integer,
    target_ids    integer[],
    result_count  integer,
    outcome       text not null,
    message       text,
    duration_ms   integer,
    version       text,            -- hydra-ops version that acted
    constraint audit_log_outcome_check check (outcome in (${sqlList(AUDIT_OUTCOMES)}))
);
create index audit_log_at on hydra_ops.audit_log (at desc, id desc);

-- Runner-side machine state that is not part of the machines file (drain / enable).
create table hydra_ops.machine_state (
    machine       text primary key,
    drained       boolean not null default false,
    drained_by    text,
    drained_at    timestamptz,
    note          text
);

-- Reproducibility checks: a derivation rebuilt (possibly on another machine) and its outputs compared.
-- outputs is a JSON array of {name, path, expected, got} (expected/got are NAR hashes).
create table hydra_ops.repro_checks (
    id               bigserial primary key,
    build            integer,
    drv_path         text not null,
    original_machine text,
    check_machine    text,
    verdict          text not null,
    rounds           integer,
    outputs          jsonb not null default '[]'::jsonb,
    diff_log_path    text,
    error            text,
    requested_by     text,
    started_at       timestamptz,
    finished_at      timestamptz,
    constraint repro_checks_verdict_check check (verdict in (${sqlList(REPRO_VERDICTS)})),
    constraint repro_checks_outputs_array_check check (jsonb_typeof(outputs) = 'array')
);
create index repro_checks_build on hydra_ops.repro_checks (build);
create index repro_checks_drv_path on hydra_ops.repro_checks (drv_path);
create index repro_checks_started_at on hydra_ops.repro_checks (started_at desc, id desc);

-- Step logs copied aside before a restart or retry would overwrite them.
create table hydra_ops.log_archive (
    id            bigserial primary key,
    build         integer,
    stepnr        integer,
    drv_path      text,
    archived_path text not null,
    reason        text,
    at            timestamptz not null default now()
);
create index log_archive_build_step on hydra_ops.log_archive (build, stepnr);
create index log_archive_drv_path on hydra_ops.log_archive (drv_path);
`;

/** Values allowed in hydra_ops.post_build_runs.status (since migration 3: 'skipped'). */
export const POST_BUILD_STATUSES = ['pending', 'running', 'done', 'failed', 'timed-out', 'skipped'] as const;
export type PostBuildStatus = (typeof POST_BUILD_STATUSES)[number];
/** The statuses migration 2 shipped with (frozen: that migration's SQL must never change). */
const POST_BUILD_STATUSES_V2 = ['pending', 'running', 'done', 'failed', 'timed-out'] as const;

const migration2 = `
-- Post-build commands (hydra.conf <runcommand> blocks) run by the daemon: one row per finished build, configured
-- command and finish (a restarted build that finishes again runs its commands again). A 'running' row left by a
-- daemon that died is set back to 'pending' at the next start; 'done', 'failed' and 'timed-out' are final.
create table hydra_ops.post_build_runs (
    id              bigserial primary key,
    build           integer not null,
    build_stoptime  integer not null,   -- Builds.stopTime of the finish this run belongs to
    command_id      text not null,      -- stable id of the configured command (matcher and command text)
    matcher         text not null,
    command         text not null,
    status          text not null default 'pending',
    attempts        integer not null default 0,
    exit_code       integer,
    signal          text,
    output          text,               -- combined stdout and stderr (the tail when long)
    output_bytes    bigint,
    error           text,
    queued_at       timestamptz not null default now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    constraint post_build_runs_status_check check (status in (${sqlList(POST_BUILD_STATUSES_V2)})),
    constraint post_build_runs_once unique (build, command_id, build_stoptime)
);
create index post_build_runs_open on hydra_ops.post_build_runs (id) where status in ('pending', 'running');
create index post_build_runs_build on hydra_ops.post_build_runs (build);

-- How far the daemon's scan for finished builds has got (one row).
create table hydra_ops.post_build_cursor (
    id             integer primary key default 1 check (id = 1),
    scanned_until  integer not null
);
`;

const migration3 = `
-- A post-build run no longer stores the text it runs: only the command's identity (its hydra.conf block and the
-- SHA-256 of its text). The daemon runs the text of the matching block of the current hydra.conf, never
-- anything read from this table; a run whose command is no longer configured is 'skipped'.
alter table hydra_ops.post_build_runs add column command_source text;
alter table hydra_ops.post_build_runs add column command_sha256 text;
update hydra_ops.post_build_runs set command_sha256 = encode(sha256(convert_to(command, 'UTF8')), 'hex');
alter table hydra_ops.post_build_runs alter column command_sha256 set not null;
alter table hydra_ops.post_build_runs alter column command drop not null;
update hydra_ops.post_build_runs set command = null;
alter table hydra_ops.post_build_runs drop constraint post_build_runs_status_check;
alter table hydra_ops.post_build_runs add constraint post_build_runs_status_check check (status in (${sqlList(POST_BUILD_STATUSES)}));
`;

const migration4 = `
-- The audit log records the real Unix user's uid and, under sudo, the invoking user (SUDO_USER) beside the
-- Hydra user.
alter table hydra_ops.audit_log add column unix_uid integer;
alter table hydra_ops.audit_log add column sudo_user text;
`;

/** All hydra_ops migrations, oldest first. Append new ones at the end. */
export const HYDRA_OPS_MIGRATIONS: readonly Migration[] = [
  {version: 1, description: 'audit log, machine state, reproducibility checks, log archive', sql: migration1},
  {version: 2, description: 'post-build command runs and their scan cursor', sql: migration2},
  {version: 3, description: 'post-build runs keep a command identity (block, SHA-256), not its text', sql: migration3},
  {version: 4, description: 'audit log records the uid and SUDO_USER', sql: migration4},
];

/** Throws unless the versions are exactly 1, 2, 3, … in order and every entry has SQL. */
export function validateMigrations(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new Error(
        `hydra_ops migration list: entry ${i + 1} has version ${m.version}; versions must be 1, 2, 3, … in order`,
      );
    }
    if (m.sql.trim() === '') throw new Error(`hydra_ops migration ${m.version} has no SQL`);
  });
}

/** Highest version in the list (0 for an empty list). */
export function latestMigrationVersion(migrations: readonly Migration[] = HYDRA_OPS_MIGRATIONS): number {
  return migrations.length === 0 ? 0 : migrations[migrations.length - 1]!.version;
}

validateMigrations(HYDRA_OPS_MIGRATIONS);
