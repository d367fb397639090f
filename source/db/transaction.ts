// Transactions: one on a client or on a connection taken from the pool, and the clients inside an action's
// transaction frame (actions/perform.ts). Helpers that normally open their own transaction run directly in the
// frame's instead, so the frame's audit row commits or rolls back with them.
import type pg from 'pg';

/** Runs fn between BEGIN and COMMIT on `c`, an idle client; ROLLBACK when it throws. */
export async function transactionOn<C extends pg.ClientBase, T>(c: C, fn: (c: C) => Promise<T>): Promise<T> {
  await c.query('BEGIN');
  try {
    const result = await fn(c);
    await c.query('COMMIT');
    return result;
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

/** Runs fn in a transaction on a connection of its own from the pool. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await transactionOn(client, fn);
  } finally {
    client.release();
  }
}

const framed = new WeakSet<pg.ClientBase>();

export function enterFrame(c: pg.ClientBase): void {
  framed.add(c);
}

export function leaveFrame(c: pg.ClientBase): void {
  framed.delete(c);
}

export function inFrame(c: unknown): boolean {
  return typeof c === 'object' && c !== null && framed.has(c as pg.ClientBase);
}
