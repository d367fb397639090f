// Draining a build machine: no new steps are dispatched to it, running ones finish. The state lives in
// hydra_ops.machine_state (keyed by the machine's URI as the machines file names it) and the hydra-ops
// daemon reads it with drainedMachines() before dispatching. Admin only: machines are farm configuration.
import type pg from 'pg';
import type {Queryable} from '../db/queryable.js';
import type {MachineSpec} from '../fleet/machines-file.js';
import {ActionError} from './errors.js';
import type {Actor} from './actor.js';
import {performAction, type ActionOptions, type ActionResult} from './perform.js';

export interface MachineStateRow {
  machine: string;
  drained: boolean;
  drained_by: string | null;
  /** ISO 8601 or null. */
  drained_at: string | null;
  note: string | null;
}

export type MachineDrainResult = ActionResult & {
  machine: string;
  drained: boolean;
  /** The drained flag before (false when the machine had no state row). */
  wasDrained: boolean;
};

/** Every machine_state row (drained or not), by machine. */
export async function machineStates(db: Queryable): Promise<Map<string, MachineStateRow>> {
  const {rows} = await db.query<MachineStateRow>(
    `SELECT machine, drained, drained_by,
            to_char(drained_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS drained_at, note
       FROM hydra_ops.machine_state ORDER BY machine`,
  );
  return new Map(rows.map((r) => [r.machine, r]));
}

/** URIs of drained machines (what the dispatcher must skip); the reader lives with the runner's queries. */
export {drainedMachines} from '../db/runner-sql.js';

/** The machine an operator means by NAME: its full URI, its host name, or `user@host`. */
export function matchMachine(machines: readonly MachineSpec[], name: string): MachineSpec[] {
  const exact = machines.filter((m) => m.uri === name || m.uri === `ssh://${name}`);
  if (exact.length > 0) return exact;
  return machines.filter((m) => m.host === name || (m.user !== undefined && `${m.user}@${m.host}` === name));
}

/**
 * Resolves NAME against the machines files' entries; a name that matches none is accepted only when it
 * already has a machine_state row (e.g. to enable a machine since removed from the file).
 */
async function resolveMachine(db: Queryable, machines: readonly MachineSpec[], name: string): Promise<string> {
  const hits = matchMachine(machines, name);
  if (hits.length === 1) return hits[0]!.uri;
  if (hits.length > 1) {
    throw new ActionError('usage', `machine name "${name}" is ambiguous: ${hits.map((m) => m.uri).join(', ')}; give the full URI`);
  }
  const {rows} = await db.query('SELECT 1 FROM hydra_ops.machine_state WHERE machine = $1', [name]);
  if (rows.length === 1) return name;
  throw new ActionError(
    'not-found',
    `no machine "${name}" in the machines files${machines.length ? ` (known: ${machines.map((m) => m.uri).join(', ')})` : ''}`,
    {machine: name},
  );
}

export function setMachineDrained(
  pool: pg.Pool,
  actor: Actor,
  machines: readonly MachineSpec[],
  name: string,
  drained: boolean,
  opts: ActionOptions & {note?: string} = {},
): Promise<MachineDrainResult> {
  let uri = name;
  return performAction(
    pool,
    actor,
    {
      action: drained ? 'machine-drain' : 'machine-enable',
      privilege: 'admin',
      scope: `machine ${name}`,
      async select(client) {
        uri = await resolveMachine(client, machines, name);
        return {targets: [], projects: []};
      },
      async apply(client) {
        const before = await client.query<{drained: boolean}>('SELECT drained FROM hydra_ops.machine_state WHERE machine = $1 FOR UPDATE', [uri]);
        const wasDrained = before.rows[0]?.drained ?? false;
        await client.query(
          `INSERT INTO hydra_ops.machine_state (machine, drained, drained_by, drained_at, note)
           VALUES ($1, $2, $3, CASE WHEN $2 THEN now() END, $4)
           ON CONFLICT (machine) DO UPDATE SET drained = EXCLUDED.drained, drained_by = EXCLUDED.drained_by,
             drained_at = EXCLUDED.drained_at, note = COALESCE(EXCLUDED.note, hydra_ops.machine_state.note)`,
          [uri, drained, drained ? actor.hydraUser : null, opts.note ?? null],
        );
        return {changed: [], resultCount: wasDrained === drained ? 0 : 1, machine: uri, drained, wasDrained};
      },
    },
    opts,
  );
}
