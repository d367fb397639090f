import {test} from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {freshDatabase} from './support/pg.js';

test('a fresh test database is reachable and empty', async () => {
  const db = await freshDatabase('harness');
  const client = new pg.Client({connectionString: db.url});
  await client.connect();
  const {rows} = await client.query("SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'");
  assert.equal(rows[0].n, 0);
  await client.end();
  await db.drop();
});
