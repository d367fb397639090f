import {test} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, chmodSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {runCli} from './support/cli.js';
import {freshDatabase} from './support/pg.js';
import {freePort} from './support/free-port.js';

test('zero configuration: db init then db status on the embedded server', {timeout: 180_000}, async () => {
  const base = mkdtempSync(join(tmpdir(), 'hydra-ops-cli-'));
  chmodSync(base, 0o755);
  const env = {
    HYDRA_DATA: base,
    HYDRA_OPS_CONFIG_DIR: join(base, 'settings'),
    HYDRA_DATABASE_URL: '',
    HYDRA_DBI: '',
    DATABASE_URL: '',
    NIX_REMOTE_SYSTEMS: '',
  };
  try {
    // A port nothing listens on keeps parallel runs apart.
    const port = String(await freePort());
    assert.equal((await runCli(['config', 'set', 'embeddedPort', port], env)).code, 0);

    const init = await runCli(['db', 'init'], env);
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, /created Hydra's schema \(version 87\)/);

    const again = await runCli(['db', 'init', '--json'], env);
    assert.equal(again.code, 0, again.stderr);
    const doc = JSON.parse(again.stdout);
    assert.equal(doc.createdHydraSchema, false);
    assert.deepEqual(doc.appliedMigrations, []);

    const status = await runCli(['db', 'status', '--json'], env);
    assert.equal(status.code, 0, status.stderr);
    const s = JSON.parse(status.stdout);
    assert.equal(s.database.kind, 'embedded');
    assert.equal(s.database.chosenBy, 'no database configured');
    assert.equal(s.database.embedded.port, Number(port));
    assert.deepEqual(s.database.embedded.listen, {kind: 'tcp', host: '127.0.0.1', port: Number(port), portFrom: 'embeddedPort'});
    assert.equal(s.database.embedded.identityVerified, true);
    assert.match(s.database.embedded.systemIdentifier, /^-?[0-9]+$/);
    assert.ok(s.database.embedded.pid > 0, 'the server keeps running between invocations');
    assert.equal(s.schema.kind, 'hydra');
    assert.equal(s.schema.hydraVersion, 87);
    assert.equal(s.dataDir.path, base);

    const stop = await runCli(['db', 'stop', '--json'], env);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(JSON.parse(stop.stdout).pid, s.database.embedded.pid);
  } finally {
    await runCli(['db', 'stop'], env).catch(() => {});
    rmSync(base, {recursive: true, force: true});
  }
});

test('db status names a configured server, and a foreign schema is refused by db init', {timeout: 60_000}, async () => {
  const db = await freshDatabase('cli_foreign');
  try {
    const env = {HYDRA_DATABASE_URL: db.url};
    const status = await runCli(['db', 'status', '--json'], env);
    assert.equal(status.code, 0, status.stderr);
    assert.equal(JSON.parse(status.stdout).database.chosenBy, 'HYDRA_DATABASE_URL');
    assert.equal(JSON.parse(status.stdout).schema.kind, 'empty');

    const pg = (await import('pg')).default;
    const c = new pg.Client({connectionString: db.url});
    await c.connect();
    await c.query('CREATE TABLE builds (id int)');
    await c.end();
    const init = await runCli(['db', 'init', '--json'], env);
    assert.equal(init.code, 1);
    assert.equal(JSON.parse(init.stdout).error.code, 'failed');
    assert.match(JSON.parse(init.stdout).error.message, /refused/);
  } finally {
    await db.drop();
  }
});

test('usage errors exit 2 with a message; an unreachable database exits 69', {timeout: 60_000}, async () => {
  const bogus = await runCli(['no-such-command']);
  assert.equal(bogus.code, 2);
  assert.match(bogus.stderr, /unknown command/);

  const badDbi = await runCli(['db', 'status'], {HYDRA_DATABASE_URL: '', HYDRA_DBI: 'dbi:mysql:dbname=x'});
  assert.equal(badDbi.code, 2);
  assert.match(badDbi.stderr, /HYDRA_DBI/);

  const down = await runCli(['db', 'status', '--json'], {HYDRA_DATABASE_URL: 'postgres://nobody@127.0.0.1:9/none'});
  assert.equal(down.code, 69);
  assert.equal(JSON.parse(down.stdout).error.code, 'unavailable');
});
