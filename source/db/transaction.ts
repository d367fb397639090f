// Clients inside an action's transaction frame (actions/perform.ts). Helpers that normally open their own
// transaction run directly in the frame's instead, so the frame's audit row commits or rolls back with them.
import type pg from 'pg';

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
