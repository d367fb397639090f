// Read-only mode (--readonly, the readonly setting) writes nothing: no rows (not even audit rows), no schema,
// no migration, no scheduler; the daemon, db init and every mutating subcommand exit 4.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import pg from 'pg';
import {freshDatabase} from './support/pg.js';
import {insertBuild, insertJobset} from './support/fixtures.js';
import {runCli} from './support/cli.js';
import {initSchema} from '../source/db/schema.js';

async function fingerprint(pool: pg.Pool): Promise<string> {
  const tables = await pool.query(
    `SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ('public', 'hydra_ops') ORDER BY 1, 2`,
  );
  const counts: string[] = [];
  for (const t of tables.rows) {
    const n = await pool.query(`SELECT count(*)::int AS n FROM ${t.table_schema}.${JSON.stringify(t.table_name)}`);
    counts.push(`${t.table_schema}.${t.table_name}=${n.rows[0].n}`);
  }
  const builds = await pool.query('SELECT id, finished, buildstatus, globalpriority FROM builds ORDER BY id');
  return JSON.stringify({counts, builds: builds.rows});
}

test('--readonly (old behaviour: refusals wrote audit rows, db init and the daemon ran migrations) changes no row and no schema; mutating commands exit 4', {timeout: 120_000}, async () => {
  const db = await freshDatabase('cli_readonly');
  const empty = await freshDatabase('cli_readonly_empty');
  const pool = new pg.Pool({connectionString: db.url, max: 2});
  const emptyPool = new pg.Pool({connectionString: empty.url, max: 1});
  const work = mkdtempSync(join(tmpdir(), 'hydra-ops-readonly-'));
  try {
    await initSchema(pool);
    const js = await insertJobset(pool);
    const done = await insertBuild(pool, {jobsetId: js.id, job: 'a', finished: 1, buildStatus: 1});
    const queued = await insertBuild(pool, {jobsetId: js.id, job: 'b'});
    const expr = join(work, 'release.nix');
    writeFileSync(expr, '{ }: { }\n');
    const env = {
      HYDRA_DATABASE_URL: db.url,
      HYDRA_DATA: join(work, 'data'),
      HYDRA_OPS_CONFIG_DIR: join(work, 'settings'),
      NIX_REMOTE_SYSTEMS: '',
    };
    assert.equal((await runCli(['config', 'set', 'localAdmin', 'true'], env)).code, 0);
    const before = await fingerprint(pool);
    const commands: string[][] = [
      ['restart', String(done)],
      ['cancel', String(queued)],
      ['bump', String(queued)],
      ['bump', String(queued), '--dry-run'],
      ['restart-failed', '1', '--yes'],
      ['clear-failed-cache', '--yes'],
      ['clear-queue-non-current', '--yes'],
      ['unlock', '--yes'],
      ['machine', 'drain', 'localhost', '--yes'],
      ['project', 'create', 'ro', '--create-owner'],
      ['jobset', 'create', `${js.project}/ro`, '--expr', expr],
      ['eval', `${js.project}/${js.name}`],
      ['enqueue', '/nix/store/00000000000000000000000000000000-x.drv', '--jobset', `${js.project}/${js.name}`],
      ['check', String(done)],
      ['db', 'init'],
      ['daemon', '--status-address', 'off'],
    ];
    for (const args of commands) {
      const r = await runCli(['--readonly', ...args], env, {timeoutMs: 30_000});
      assert.equal(r.code, 4, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, /read-only/, args.join(' '));
    }
    // The setting works like the flag.
    assert.equal((await runCli(['config', 'set', 'readonly', 'true'], env)).code, 0);
    assert.equal((await runCli(['bump', String(queued)], env)).code, 4);
    assert.equal((await runCli(['daemon', '--status-address', 'off'], env)).code, 4);
    assert.equal(await fingerprint(pool), before, 'no row and no table changed');
    // An empty database stays empty: no schema, no migration.
    const r = await runCli(['--readonly', 'db', 'init'], {...env, HYDRA_DATABASE_URL: empty.url});
    assert.equal(r.code, 4, r.stderr);
    const n = await emptyPool.query(`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema IN ('public', 'hydra_ops')`);
    assert.equal(n.rows[0].n, 0);
  } finally {
    await pool.end();
    await emptyPool.end();
    await db.drop();
    await empty.drop();
    rmSync(work, {recursive: true, force: true});
  }
});
