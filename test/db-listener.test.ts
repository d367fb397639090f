import {test} from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {freshDatabase} from './support/pg.js';
import {PgListener, type Notification} from '../source/db/listener.js';

function waitFor<T>(emitter: PgListener, event: string, pred: (v: T) => boolean, ms = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), ms);
    const on = (v: T) => {
      if (pred(v)) {
        clearTimeout(t);
        emitter.off(event, on);
        resolve(v);
      }
    };
    emitter.on(event, on);
  });
}

test('the LISTEN client survives pg_terminate_backend, re-listens and calls the resync hook', {timeout: 60_000}, async () => {
  const db = await freshDatabase('listener');
  const resyncs: boolean[] = [];
  const listener = new PgListener({
    connection: {connectionString: db.url},
    channels: ['builds_added', 'builds_cancelled'],
    onResync: (reconnect) => {
      resyncs.push(reconnect);
    },
    minBackoffMs: 50,
  });
  const sender = new pg.Client({connectionString: db.url});
  try {
    await listener.start();
    assert.deepEqual(resyncs, [false]);
    await sender.connect();

    const first = waitFor<Notification>(listener, 'notification', (n) => n.channel === 'builds_added');
    await sender.query("SELECT pg_notify('builds_added', '17')");
    assert.deepEqual(await first, {channel: 'builds_added', payload: '17'});

    const pid = await listener.backendPid();
    assert.ok(pid);
    const ready = waitFor<boolean>(listener, 'ready', (r) => r === true);
    await sender.query('SELECT pg_terminate_backend($1)', [pid]);
    await ready;
    assert.deepEqual(resyncs, [false, true]);
    assert.notEqual(await listener.backendPid(), pid);

    const after = waitFor<Notification>(listener, 'notification', (n) => n.channel === 'builds_cancelled');
    await sender.query("SELECT pg_notify('builds_cancelled', '')");
    assert.equal((await after).channel, 'builds_cancelled');
  } finally {
    await listener.stop();
    await sender.end().catch(() => {});
    await db.drop();
  }
});
