// hydra_ops.audit_log: every mutation attempt — allowed, refused, failed or dry-run — with who, when,
// what, on which scope and how many rows it changed.
import type {Queryable} from '../db/queryable.js';
import {newestFirstPage} from '../db/queries/sql.js';
import type {AuditOutcome} from '../db/schema/hydra-ops-migrations.js';
import type {Actor} from './actor.js';

/** At most this many target ids are stored per entry (target_count always holds the full count). */
export const AUDIT_MAX_IDS = 10_000;

export interface AuditEntryInput {
  action: string;
  scope: string;
  targetIds?: readonly number[];
  targetCount?: number | null;
  resultCount?: number | null;
  outcome: AuditOutcome;
  message?: string | null;
  durationMs?: number | null;
}

export interface AuditRow {
  id: number;
  /** ISO 8601 time. */
  at: string;
  unix_user: string | null;
  unix_uid: number | null;
  sudo_user: string | null;
  hydra_user: string | null;
  host: string | null;
  action: string;
  scope: string | null;
  target_count: number | null;
  target_ids: number[] | null;
  result_count: number | null;
  outcome: AuditOutcome;
  message: string | null;
  duration_ms: number | null;
  version: string | null;
}

/** Inserts one entry and returns its id. */
export async function writeAudit(db: Queryable, actor: Actor, e: AuditEntryInput): Promise<number> {
  const ids = e.targetIds ? [...e.targetIds].slice(0, AUDIT_MAX_IDS) : null;
  const {rows} = await db.query<{id: string}>(
    `INSERT INTO hydra_ops.audit_log (unix_user, unix_uid, sudo_user, hydra_user, host, action, scope, target_count,
                                      target_ids, result_count, outcome, message, duration_ms, version)
     VALUES ($1, $13, $14, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id`,
    [
      actor.unixUser,
      actor.hydraUser,
      actor.host,
      e.action,
      e.scope,
      e.targetCount ?? e.targetIds?.length ?? null,
      ids,
      e.resultCount ?? null,
      e.outcome,
      e.message ?? null,
      e.durationMs ?? null,
      actor.version,
      actor.unixUid,
      actor.sudoUser,
    ],
  );
  return Number(rows[0]!.id);
}

/** Like writeAudit, but never throws (a refusal must surface even when the audit table is unwritable). */
export async function tryWriteAudit(db: Queryable, actor: Actor, e: AuditEntryInput): Promise<number | null> {
  try {
    return await writeAudit(db, actor, e);
  } catch {
    return null;
  }
}

export interface ListAuditOptions {
  limit?: number;
  /** Entries with id below this (keyset paging, newest first). */
  before?: number;
  action?: string;
  hydraUser?: string;
  outcome?: AuditOutcome;
}

/** Newest entries first. */
export async function listAudit(db: Queryable, opts: ListAuditOptions = {}): Promise<{entries: AuditRow[]; nextBefore: number | null}> {
  const {rows, nextBefore} = await newestFirstPage<AuditRow>(
    db,
    'hydra_ops.audit_log',
    `id::float8 AS id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at, unix_user, unix_uid, sudo_user, hydra_user,
     host, action, scope, target_count, target_ids, result_count, outcome, message, duration_ms, version`,
    opts,
    (q) => {
      if (opts.action) q.where(`action = ${q.param(opts.action)}`);
      if (opts.hydraUser) q.where(`hydra_user = ${q.param(opts.hydraUser)}`);
      if (opts.outcome) q.where(`outcome = ${q.param(opts.outcome)}`);
    },
  );
  return {entries: rows, nextBefore};
}
