// Schema recognition and initialisation against a real PostgreSQL server.
import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {freshDatabase, testServerUrl, type TestDatabase} from './support/pg.js';
import {insertBuild, insertBuildStep, insertJobset, insertProject, storePath} from './support/fixtures.js';
import {inspectSchema, initSchema, SchemaError, requiredColumns} from '../source/db/schema.js';
import {
  HYDRA_SCHEMA_SQL,
  HYDRA_TABLES,
  HYDRA_TRIGGERS,
  HYDRA_TRIGRAM_INDEX,
} from '../source/db/schema/hydra-sql.js';
import {
  HYDRA_OPS_MIGRATIONS,
  validateMigrations,
  type Migration,
} from '../source/db/schema/hydra-ops-migrations.js';

interface Session {
  db: TestDatabase;
  client: pg.Client;
}

async function withDatabase(label: string, fn: (s: Session) => Promise<void>): Promise<void> {
  const db = await freshDatabase(label);
  const client = new pg.Client({connectionString: db.url});
  await client.connect();
  try {
    await fn({db, client});
  } finally {
    await client.end().catch(() => {});
    await db.drop();
  }
}

// One initialised database shared by the tests that only add rows of their own (saves a database per test).
let shared: Promise<Session> | undefined;
function sharedDatabase(): Promise<Session> {
  shared ??= (async () => {
    const db = await freshDatabase('schema_shared');
    const client = new pg.Client({connectionString: db.url});
    await client.connect();
    await initSchema(client);
    return {db, client};
  })();
  return shared;
}
after(async () => {
  if (!shared) return;
  const {db, client} = await shared;
  await client.end().catch(() => {});
  await db.drop();
});

async function withSharedDatabase(fn: (s: Session) => Promise<void>): Promise<void> {
  await fn(await sharedDatabase());
}

/**
 * Sorted description of every user-visible catalog object: namespaces, relations, columns (type, null, default),
 * constraints, indexes, triggers, rules, functions and extensions — optionally limited to one namespace.
 */
async function catalogSnapshot(client: pg.ClientBase, onlySchema?: string): Promise<string[]> {
  const {rows} = await client.query<{line: string}>(
    `WITH ns AS (
       SELECT oid, nspname FROM pg_namespace
        WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
          AND nspname NOT LIKE 'pg_temp_%' AND nspname NOT LIKE 'pg_toast_temp_%'
          AND ($1::text IS NULL OR nspname = $1))
     SELECT 'schema ' || nspname AS line FROM ns
     UNION ALL
     SELECT 'relation ' || ns.nspname || '.' || c.relname || ' ' || c.relkind::text
       FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
     UNION ALL
     SELECT 'column ' || ns.nspname || '.' || c.relname || '.' || a.attnum || ' ' || a.attname || ' '
            || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
            || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attnum > 0 AND NOT a.attisdropped
     UNION ALL
     SELECT 'constraint ' || ns.nspname || '.' || co.conname || ' ' || pg_get_constraintdef(co.oid)
       FROM pg_constraint co JOIN ns ON ns.oid = co.connamespace
     UNION ALL
     SELECT 'index ' || pg_get_indexdef(i.indexrelid)
       FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN ns ON ns.oid = c.relnamespace
     UNION ALL
     SELECT 'trigger ' || pg_get_triggerdef(t.oid)
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace
     UNION ALL
     SELECT 'rule ' || pg_get_ruledef(r.oid)
       FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN ns ON ns.oid = c.relnamespace
     UNION ALL
     SELECT 'function ' || ns.nspname || '.' || p.proname || ' ' || md5(coalesce(p.prosrc, ''))
       FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
     UNION ALL
     SELECT 'extension ' || extname || ' ' || extversion FROM pg_extension
      WHERE $1::text IS NULL`,
    [onlySchema ?? null],
  );
  return rows.map((r) => r.line).sort();
}

async function count(client: pg.ClientBase, sql: string, params: unknown[] = []): Promise<number> {
  const {rows} = await client.query<{n: number}>(`SELECT (${sql})::int AS n`, params);
  return rows[0]!.n;
}

async function createV87(client: pg.ClientBase): Promise<void> {
  await client.query('BEGIN');
  await client.query(HYDRA_SCHEMA_SQL);
  await client.query('COMMIT');
}

async function assertRefusedUnchanged(client: pg.ClientBase, pattern: RegExp): Promise<void> {
  const before = await catalogSnapshot(client);
  await assert.rejects(initSchema(client), (err: unknown) => {
    assert.ok(err instanceof SchemaError, `expected SchemaError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
  assert.deepEqual(await catalogSnapshot(client), before, 'refused init must not change the catalog');
  assert.equal(await count(client, "SELECT count(*) FROM pg_namespace WHERE nspname = 'hydra_ops'"), 0);
}

const SECTION_3_15_INDEXES = [
  'indexbuildsonfinished',
  'indexbuildsonfinishedstoptime',
  'indexbuildsontimestamp',
  'indexbuildsonjobsetidfinishedid',
  'indexfinishedsuccessfulbuilds',
  'indexbuildsondrvpath',
  'indexbuildsjobsetidcurrentunfinished',
  'indexbuildsonnotificationpendingsince',
  'indexbuildsonkeep',
  'indexbuildstepsonbusy',
  'indexbuildstepsondrvpath',
  'indexbuildstepsonpropagatedfrom',
  'indexbuildstepsonstoptime',
  'indexbuildstepoutputsonpath',
  'indexbuildoutputspath',
  'indexjobsetevalmembersonbuild',
  'indexjobsetevalmembersoneval',
  'indexbuildmetricsonjobtimestamp',
  'indexjobsetevalsonjobsetid',
  'indexjobsetidevals',
];

test('init on an empty database creates Hydra schema 87 and the hydra_ops schema', async () => {
  await withDatabase('schema_init', async ({client}) => {
    const empty = await inspectSchema(client);
    assert.equal(empty.kind, 'empty');
    assert.equal(empty.hydraOpsVersion, null);

    const result = await initSchema(client);
    assert.equal(result.createdHydraSchema, true);
    assert.deepEqual(result.appliedMigrations, HYDRA_OPS_MIGRATIONS.map((m) => m.version));
    assert.equal(result.state.kind, 'hydra');
    assert.equal(result.state.hydraVersion, 87);
    assert.equal(result.state.supported, true, result.state.message);
    assert.deepEqual(result.state.missing, []);
    assert.equal(result.state.hydraOpsVersion, result.state.hydraOpsLatest);

    const {rows: versions} = await client.query('SELECT version FROM schemaversion');
    assert.deepEqual(versions, [{version: 87}]);
    const {rows: nr} = await client.query('SELECT what, count FROM nrbuilds');
    assert.deepEqual(nr, [{what: 'finished', count: 0}]);

    const {rows: tables} = await client.query<{tablename: string}>(
      "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
    );
    assert.deepEqual(tables.map((t) => t.tablename), [...HYDRA_TABLES].sort());
    const {rows: opsTables} = await client.query<{tablename: string}>(
      "SELECT tablename FROM pg_tables WHERE schemaname = 'hydra_ops' ORDER BY tablename",
    );
    assert.deepEqual(
      opsTables.map((t) => t.tablename),
      ['audit_log', 'log_archive', 'machine_state', 'post_build_cursor', 'post_build_runs', 'repro_checks', 'schema_migrations'],
    );

    const {rows: idx} = await client.query<{indexname: string}>(
      "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'",
    );
    const indexNames = new Set(idx.map((r) => r.indexname));
    for (const name of SECTION_3_15_INDEXES) assert.ok(indexNames.has(name), `index ${name} missing`);
    const trgmAvailable = await count(client, "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'");
    assert.equal(indexNames.has(HYDRA_TRIGRAM_INDEX), trgmAvailable === 1, 'trigram index present iff pg_trgm');

    const {rows: trig} = await client.query<{tgname: string; relname: string}>(
      `SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE NOT t.tgisinternal ORDER BY 1`,
    );
    assert.deepEqual(
      trig.map((r) => `${r.relname}.${r.tgname}`).sort(),
      Object.entries(HYDRA_TRIGGERS).map(([name, table]) => `${table}.${name}`).sort(),
    );
    assert.equal(await count(client, "SELECT count(*) FROM pg_rules WHERE rulename = 'idempotentinsert'"), 1);
  });
});

test('Builds and BuildSteps columns come in Hydra schema order', async () => {
  await withSharedDatabase(async ({client}) => {
    const columns = async (table: string): Promise<string[]> => {
      const {rows} = await client.query<{column_name: string}>(
        `SELECT column_name FROM information_schema.columns
          WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position`,
        [table],
      );
      return rows.map((r) => r.column_name);
    };
    assert.deepEqual(await columns('builds'), [
      'id', 'finished', 'timestamp', 'jobset_id', 'job', 'nixname', 'description', 'drvpath', 'system', 'license',
      'homepage', 'maintainers', 'maxsilent', 'timeout', 'ischannel', 'iscurrent', 'priority', 'globalpriority',
      'starttime', 'stoptime', 'iscachedbuild', 'buildstatus', 'size', 'closuresize', 'releasename', 'keep',
      'notificationpendingsince',
    ]);
    assert.deepEqual(await columns('buildsteps'), [
      'build', 'stepnr', 'type', 'drvpath', 'busy', 'status', 'errormsg', 'starttime', 'stoptime', 'machine',
      'system', 'propagatedfrom', 'overhead', 'timesbuilt', 'isnondeterministic', 'resolveddrvpath',
    ]);
    const {rows} = await client.query(
      `SELECT is_nullable FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = 'buildsteps' AND column_name = 'drvpath'`,
    );
    assert.equal(rows[0].is_nullable, 'NO');
  });
});

test('init twice: the second run changes nothing', async () => {
  await withDatabase('schema_twice', async ({client}) => {
    await initSchema(client);
    const before = await catalogSnapshot(client);
    const second = await initSchema(client);
    assert.equal(second.createdHydraSchema, false);
    assert.deepEqual(second.appliedMigrations, []);
    assert.equal(second.state.supported, true);
    assert.deepEqual(await catalogSnapshot(client), before);
    assert.equal(await count(client, 'SELECT count(*) FROM schemaversion'), 1);
    assert.equal(await count(client, 'SELECT count(*) FROM hydra_ops.schema_migrations'), HYDRA_OPS_MIGRATIONS.length);
  });
});

test('two concurrent inits: exactly one creates, both succeed', async () => {
  await withDatabase('schema_race', async ({db, client}) => {
    const pool = new pg.Pool({connectionString: db.url, max: 2});
    try {
      const other = await pool.connect();
      try {
        const [a, b] = await Promise.all([initSchema(client), initSchema(other)]);
        assert.equal([a, b].filter((r) => r.createdHydraSchema).length, 1);
        assert.deepEqual([...a.appliedMigrations, ...b.appliedMigrations], HYDRA_OPS_MIGRATIONS.map((m) => m.version));
      } finally {
        other.release();
      }
      // A pool is accepted too.
      const third = await initSchema(pool);
      assert.equal(third.createdHydraSchema, false);
    } finally {
      await pool.end();
    }
    assert.equal(await count(client, 'SELECT count(*) FROM schemaversion'), 1);
  });
});

test('a database with foreign tables is refused and left unchanged', async () => {
  await withDatabase('schema_foreign', async ({client}) => {
    await client.query('CREATE TABLE builds (id integer primary key, name text)');
    await client.query("INSERT INTO builds VALUES (1, 'mine')");
    const state = await inspectSchema(client);
    assert.equal(state.kind, 'foreign');
    assert.equal(state.supported, false);
    assert.match(state.message, /no SchemaVersion/);
    await assertRefusedUnchanged(client, /not a Hydra database/);
    assert.deepEqual((await client.query('SELECT * FROM builds')).rows, [{id: 1, name: 'mine'}]);
  });
});

test('a malformed SchemaVersion is refused and left unchanged', async () => {
  await withDatabase('schema_malformed', async ({client}) => {
    await createV87(client);
    await client.query('INSERT INTO schemaversion VALUES (86)');
    const two = await inspectSchema(client);
    assert.equal(two.kind, 'foreign');
    assert.match(two.message, /SchemaVersion has 2 rows, expected exactly one/);
    await assertRefusedUnchanged(client, /2 rows/);

    await client.query('DELETE FROM schemaversion');
    assert.match((await inspectSchema(client)).message, /0 rows/);
    await assertRefusedUnchanged(client, /0 rows/);

    await client.query('ALTER TABLE schemaversion ALTER COLUMN version TYPE text');
    await client.query("INSERT INTO schemaversion VALUES ('eighty-seven')");
    assert.match((await inspectSchema(client)).message, /type text, expected integer/);
    await assertRefusedUnchanged(client, /type text/);
  });
});

test('unsupported Hydra versions are refused and left unchanged', async () => {
  await withDatabase('schema_old', async ({client}) => {
    await createV87(client);
    await client.query('UPDATE schemaversion SET version = 80');
    const old = await inspectSchema(client);
    assert.equal(old.kind, 'hydra');
    assert.equal(old.hydraVersion, 80);
    assert.equal(old.supported, false);
    assert.match(old.message, /version 80 is not supported \(older than the supported range 85–87\)/);
    await assertRefusedUnchanged(client, /version 80 .*85–87/);

    await client.query('UPDATE schemaversion SET version = 88');
    const newer = await inspectSchema(client);
    assert.equal(newer.supported, false);
    assert.match(newer.message, /version 88 is not supported \(newer than the supported range 85–87\)/);
    await assertRefusedUnchanged(client, /version 88/);
  });
});

test('a supported older Hydra database (85) only gets the hydra_ops migrations', async () => {
  await withDatabase('schema_v85', async ({client}) => {
    await createV87(client);
    await client.query('UPDATE schemaversion SET version = 85');
    const jobset = await insertJobset(client);
    await insertBuild(client, {jobsetId: jobset.id});
    const hydraBefore = await catalogSnapshot(client, 'public');

    const state = await inspectSchema(client);
    assert.equal(state.kind, 'hydra');
    assert.equal(state.hydraVersion, 85);
    assert.equal(state.supported, true, state.message);
    assert.equal(state.hydraOpsVersion, null);

    const result = await initSchema(client);
    assert.equal(result.createdHydraSchema, false);
    assert.deepEqual(result.appliedMigrations, HYDRA_OPS_MIGRATIONS.map((m) => m.version));
    assert.equal(result.state.hydraVersion, 85);
    assert.deepEqual(await catalogSnapshot(client, 'public'), hydraBefore, "Hydra's tables must not change");
    assert.equal(await count(client, 'SELECT version FROM schemaversion'), 85);
    assert.equal(await count(client, 'SELECT count(*) FROM builds'), 1);
    assert.equal(await count(client, "SELECT count(*) FROM pg_tables WHERE schemaname = 'hydra_ops'"), 7);
  });
});

test('missing required columns or triggers make the schema incomplete and refused', async () => {
  await withDatabase('schema_missing', async ({client}) => {
    await createV87(client);
    // resolvedDrvPath is only required from 87 on.
    await client.query('ALTER TABLE buildsteps DROP COLUMN resolveddrvpath');
    await client.query('UPDATE schemaversion SET version = 86');
    assert.equal((await inspectSchema(client)).supported, true);
    await client.query('UPDATE schemaversion SET version = 87');
    assert.deepEqual((await inspectSchema(client)).missing, ['buildsteps.resolveddrvpath']);

    await client.query('UPDATE schemaversion SET version = 86');
    await client.query('ALTER TABLE builds DROP COLUMN notificationpendingsince');
    await client.query('DROP TRIGGER buildbumped ON builds');
    await client.query('DROP TABLE failedpaths');
    const state = await inspectSchema(client);
    assert.equal(state.kind, 'hydra');
    assert.equal(state.supported, false);
    assert.deepEqual(state.missing.sort(), ['builds.notificationpendingsince', 'failedpaths', 'trigger builds.buildbumped']);
    assert.match(state.message, /incomplete: missing .*builds\.notificationpendingsince/);
    await assertRefusedUnchanged(client, /incomplete/);
  });
});

test('requiredColumns lists the columns hydra-ops relies on', () => {
  const v87 = requiredColumns(87);
  for (const c of ['finished', 'jobset_id', 'globalpriority', 'notificationpendingsince', 'iscachedbuild']) {
    assert.ok(v87.builds!.includes(c), `builds.${c}`);
  }
  assert.ok(v87.buildsteps!.includes('resolveddrvpath'));
  assert.ok(!requiredColumns(86).buildsteps!.includes('resolveddrvpath'));
  assert.deepEqual(v87.jobsets!.filter((c) => ['id', 'project', 'name', 'schedulingshares'].includes(c)).length, 4);
});

test('CHECK constraints of Builds, Jobsets and BuildSteps hold', async () => {
  await withSharedDatabase(async ({client}) => {
    const jobset = await insertJobset(client);
    const violates = async (sql: string, params: unknown[], constraint: RegExp): Promise<void> => {
      await assert.rejects(client.query(sql, params), (err: {code?: string; constraint?: string}) => {
        assert.equal(err.code, '23514', `expected a check violation for: ${sql}`);
        assert.match(err.constraint ?? '', constraint);
        return true;
      });
    };
    const insert = `INSERT INTO builds (finished, timestamp, jobset_id, job, drvpath, system, starttime, stoptime)
                    VALUES ($1, 1, $2, 'j', '/nix/store/x.drv', 'x86_64-linux', $3, $4)`;
    await violates(insert, [1, jobset.id, 10, null], /^builds_check/);
    await violates(insert, [1, jobset.id, 10, 0], /^builds_check/);
    await violates(insert, [1, jobset.id, null, 10], /^builds_check/);
    await client.query(insert, [1, jobset.id, 10, 20]);
    await client.query(insert, [0, jobset.id, null, null]);

    const queued = await insertBuild(client, {jobsetId: jobset.id});
    await violates('UPDATE builds SET finished = 1, buildstatus = 0 WHERE id = $1', [queued], /^builds_check/);

    await violates('UPDATE jobsets SET schedulingshares = 0 WHERE id = $1', [jobset.id], /schedulingshares_nonzero/);
    await violates('UPDATE jobsets SET nixexprinput = NULL WHERE id = $1', [jobset.id], /legacy_paths|flake_paths/);
    await violates('UPDATE jobsets SET type = 2 WHERE id = $1', [jobset.id], /type_known|legacy_paths|flake_paths/);
    await client.query(
      "UPDATE jobsets SET type = 1, nixexprinput = NULL, nixexprpath = NULL, flake = 'github:x/y' WHERE id = $1",
      [jobset.id],
    );

    // status 13 (resolved) if and only if resolvedDrvPath is set; a busy step (status NULL) passes.
    await violates(
      `INSERT INTO buildsteps (build, stepnr, type, drvpath, busy, status) VALUES ($1, 1, 0, '/nix/store/a.drv', 0, 13)`,
      [queued],
      /^buildsteps_check/,
    );
    await violates(
      `INSERT INTO buildsteps (build, stepnr, type, drvpath, busy, status, resolveddrvpath)
       VALUES ($1, 1, 0, '/nix/store/a.drv', 0, 0, 'b.drv')`,
      [queued],
      /^buildsteps_check/,
    );
    await insertBuildStep(client, {build: queued, busy: 1});
    await insertBuildStep(client, {build: queued, status: 13, resolvedDrvPath: 'abc-resolved.drv'});
    // Schema 86: drvPath is NOT NULL.
    await assert.rejects(
      client.query(`INSERT INTO buildsteps (build, stepnr, type, drvpath, busy) VALUES ($1, 9, 0, NULL, 1)`, [queued]),
      (err: {code?: string}) => err.code === '23502',
    );
  });
});

test('FailedPaths IdempotentInsert drops a duplicate path silently', async () => {
  await withSharedDatabase(async ({client}) => {
    const path = storePath('failed-output');
    const first = await client.query('INSERT INTO failedpaths (path) VALUES ($1)', [path]);
    assert.equal(first.rowCount, 1);
    const again = await client.query('INSERT INTO failedpaths (path) VALUES ($1)', [path]);
    assert.equal(again.rowCount, 0);
    await client.query('INSERT INTO failedpaths (path) VALUES ($1)', [storePath('other')]);
    assert.equal(await count(client, 'SELECT count(*) FROM failedpaths'), 2);
    assert.equal(await count(client, 'SELECT count(*) FROM failedpaths WHERE path = $1', [path]), 1);
  });
});

test('hydra_ops migrations: appended ones apply later, a failing one rolls everything back', async () => {
  const m1 = HYDRA_OPS_MIGRATIONS[0]!;
  const m2: Migration = {version: 2, description: 'test table', sql: 'create table hydra_ops.extra (x int)'};
  const broken: Migration = {version: 2, description: 'broken', sql: 'create table hydra_ops.bad (x no_such_type)'};

  await withDatabase('schema_migrations', async ({client}) => {
    const first = await initSchema(client, {migrations: [m1]});
    assert.deepEqual(first.appliedMigrations, [1]);
    const pending = await inspectSchema(client, {migrations: [m1, m2]});
    assert.equal(pending.hydraOpsVersion, 1);
    assert.equal(pending.hydraOpsLatest, 2);
    assert.match(pending.message, /1 pending/);
    const second = await initSchema(client, {migrations: [m1, m2]});
    assert.equal(second.createdHydraSchema, false);
    assert.deepEqual(second.appliedMigrations, [2]);
    assert.equal(second.state.hydraOpsVersion, 2);
    assert.equal(await count(client, "SELECT count(*) FROM pg_tables WHERE tablename = 'extra'"), 1);
  });

  await withDatabase('schema_migration_fail', async ({client}) => {
    const before = await catalogSnapshot(client);
    await assert.rejects(initSchema(client, {migrations: [m1, broken]}), (err: unknown) => {
      assert.ok(err instanceof SchemaError);
      assert.match(err.message, /applying hydra_ops migration 2 \(broken\) failed: .*no_such_type/);
      return true;
    });
    assert.deepEqual(await catalogSnapshot(client), before);
    assert.equal((await inspectSchema(client)).kind, 'empty');
  });
});

test('validateMigrations rejects gaps and reordering', () => {
  const m = (version: number): Migration => ({version, description: 'x', sql: 'select 1'});
  assert.doesNotThrow(() => validateMigrations([m(1), m(2), m(3)]));
  assert.throws(() => validateMigrations([m(1), m(3)]), /entry 2 has version 3/);
  assert.throws(() => validateMigrations([m(2), m(1)]), /entry 1 has version 2/);
  assert.throws(() => validateMigrations([{version: 1, description: 'x', sql: '  '}]), /no SQL/);
});

test('init works for a role that may not install pg_trgm: the trigram index is skipped', async () => {
  const server = await testServerUrl();
  const role = `hydra_ops_noext_${process.pid}`;
  const reader = `hydra_ops_reader_${process.pid}`;
  const admin = new pg.Client({connectionString: server});
  await admin.connect();
  const db = await freshDatabase('schema_noext');
  try {
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'test'`);
    const owner = new pg.Client({connectionString: db.url});
    await owner.connect();
    try {
      // No CREATE on the database (so no CREATE EXTENSION); tables may go into public and hydra_ops.
      await owner.query(`REVOKE CREATE ON DATABASE ${db.name} FROM PUBLIC`);
      await owner.query(`GRANT USAGE, CREATE ON SCHEMA public TO ${role}`);
      await owner.query(`CREATE SCHEMA hydra_ops AUTHORIZATION ${role}`);
    } finally {
      await owner.end();
    }
    const url = new URL(db.url);
    url.username = role;
    url.password = 'test';
    const client = new pg.Client({connectionString: url.toString()});
    await client.connect();
    try {
      const notices: string[] = [];
      client.on('notice', (n) => notices.push(n.message ?? ''));
      const result = await initSchema(client);
      assert.equal(result.createdHydraSchema, true);
      assert.equal(result.state.supported, true, result.state.message);
      assert.ok(notices.some((n) => /trigram index on builds\.drvpath skipped/.test(n)), notices.join('\n'));
      assert.equal(await count(client, "SELECT count(*) FROM pg_indexes WHERE indexname = 'indexbuildsondrvpath'"), 1);
      assert.equal(await count(client, 'SELECT count(*) FROM pg_indexes WHERE indexname = $1', [HYDRA_TRIGRAM_INDEX]), 0);
      assert.equal(await count(client, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'"), 0);

      // A read-only role that may read Hydra's tables but not hydra_ops still gets a state, not an error.
      await admin.query(`CREATE ROLE ${reader} LOGIN PASSWORD 'test'`);
      await client.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${reader}`);
      url.username = reader;
      const readOnly = new pg.Client({connectionString: url.toString()});
      await readOnly.connect();
      try {
        const state = await inspectSchema(readOnly);
        assert.equal(state.supported, true, state.message);
        assert.equal(state.hydraOpsVersion, null);
        assert.match(state.message, /hydra_ops schema exists but this role may not read it/);
        await assert.rejects(initSchema(readOnly), (err: unknown) => err instanceof SchemaError);
      } finally {
        await readOnly.end();
      }
    } finally {
      await client.end();
    }
  } finally {
    await db.drop();
    for (const r of [reader, role]) await admin.query(`DROP ROLE IF EXISTS ${r}`).catch(() => {});
    await admin.end();
  }
});

test('fixtures insert a consistent project / jobset / build / step chain', async () => {
  await withSharedDatabase(async ({client}) => {
    const project = await insertProject(client, {name: 'nixpkgs'});
    const jobset = await insertJobset(client, {project, name: 'trunk', schedulingShares: 42});
    const build = await insertBuild(client, {jobsetId: jobset.id, finished: 1, buildStatus: 1});
    const step = await insertBuildStep(client, {build, status: 1});
    assert.equal(step, 1);
    assert.equal(await insertBuildStep(client, {build, busy: 30}), 2);
    const {rows} = await client.query(
      `SELECT j.project, j.name, j.schedulingshares, b.finished, b.buildstatus, b.starttime IS NOT NULL AS started,
              (SELECT count(*)::int FROM buildoutputs o WHERE o.build = b.id) AS outputs,
              (SELECT count(*)::int FROM buildstepoutputs o WHERE o.build = b.id) AS stepoutputs
         FROM builds b JOIN jobsets j ON j.id = b.jobset_id WHERE b.id = $1`,
      [build],
    );
    assert.deepEqual(rows, [
      {project: 'nixpkgs', name: 'trunk', schedulingshares: 42, finished: 1, buildstatus: 1, started: true, outputs: 1, stepoutputs: 2},
    ]);
    assert.equal(
      await count(client, "SELECT count FROM nrbuilds WHERE what = 'finished'"),
      await count(client, 'SELECT count(*) FROM builds WHERE finished = 1'),
    );
  });
});
