import {test} from 'node:test';
import assert from 'node:assert/strict';
import {existsSync} from 'node:fs';
import pg from 'pg';
import {
  DEFAULT_SOCKET_DIR,
  dbiToUrl,
  describeDbi,
  parseDatabaseUrl,
  parseHydraDbi,
  skipHostnameCheck,
  type DbiConfig,
} from '../source/config/dbi.js';
import {ConfigError} from '../source/config/errors.js';
import {freshDatabase, testServerUrl} from './support/pg.js';

const S = DEFAULT_SOCKET_DIR;

const valid: Array<[string, DbiConfig]> = [
  ['dbi:Pg:dbname=hydra;', {host: S, database: 'hydra'}],
  ['dbi:Pg:dbname=hydra', {host: S, database: 'hydra'}],
  ['DBI:Pg:dbname=hydra;user=hydra;', {host: S, database: 'hydra', user: 'hydra'}],
  [
    'dbi:Pg:dbname=hydra;host=db.example.org;port=5433;user=hydra;password=s3cret;sslmode=verify-full',
    {host: 'db.example.org', port: 5433, database: 'hydra', user: 'hydra', password: 's3cret', ssl: {rejectUnauthorized: true}},
  ],
  ['dbi:Pg:dbname=hydra;host=/var/run/postgresql', {host: '/var/run/postgresql', database: 'hydra'}],
  ['dbi:Pg:dbname=hydra;;host=10.0.0.5;;', {host: '10.0.0.5', database: 'hydra'}],
  // libpq conninfo rules inside one segment: spaces separate pairs, spaces around "=".
  ['dbi:Pg:dbname = hydra host=10.0.0.1', {host: '10.0.0.1', database: 'hydra'}],
  ["dbi:Pg:dbname=hydra;password='a b\\'c;d'", {host: S, database: 'hydra', password: "a b'c;d"}],
  ['dbi:Pg:dbname=hy\\ dra', {host: S, database: 'hy dra'}],
  ['dbi:Pg:dbname=hydra;sslmode=disable', {host: S, database: 'hydra', ssl: false}],
  ['dbi:Pg:dbname=hydra;sslmode=prefer', {host: S, database: 'hydra', ssl: false}],
  ['dbi:Pg:host=db;sslmode=require', {host: 'db', ssl: {rejectUnauthorized: false}}],
  [
    'dbi:Pg:host=db;sslmode=verify-ca',
    {host: 'db', ssl: {rejectUnauthorized: true, checkServerIdentity: skipHostnameCheck}},
  ],
  [
    'dbi:Pg:hostaddr=10.1.2.3;host=db.example.org;sslmode=verify-full;dbname=hydra',
    {host: '10.1.2.3', database: 'hydra', ssl: {rejectUnauthorized: true, servername: 'db.example.org'}},
  ],
  ['dbi:Pg:hostaddr=::1;port=5432', {host: '::1', port: 5432}],
  ['dbi:Pg:dbname=hydra;port=', {host: S, database: 'hydra'}],
  ['dbi:Pg:dbname=hydra;port=65535;connect_timeout=10', {host: S, database: 'hydra', port: 65535, connectionTimeoutMillis: 10000}],
  [
    "dbi:Pg:dbname=hydra;application_name=hydra-ops;options='-c statement_timeout=0'",
    {host: S, database: 'hydra', application_name: 'hydra-ops', options: '-c statement_timeout=0'},
  ],
  ["dbi:Pg:password=''", {host: S}],
];

test('valid HYDRA_DBI strings give the exact node-postgres config', () => {
  assert.ok(valid.length >= 10);
  for (const [dbi, expected] of valid) {
    assert.deepEqual(parseHydraDbi(dbi), expected, dbi);
  }
});

test('the result is a node-postgres ClientConfig', () => {
  const config: pg.ClientConfig = parseHydraDbi('dbi:Pg:dbname=hydra;host=db;sslmode=verify-ca');
  assert.equal(config.host, 'db');
});

test('an absent host uses PGHOST when set, otherwise the socket directory', () => {
  assert.equal(parseHydraDbi('dbi:Pg:dbname=hydra').host, '/run/postgresql');
  assert.equal(parseHydraDbi('dbi:Pg:dbname=hydra', {env: {PGHOST: '/tmp/sock'}}).host, '/tmp/sock');
  assert.equal(parseHydraDbi('dbi:Pg:dbname=hydra;host=db', {env: {PGHOST: '/tmp/sock'}}).host, 'db');
});

// [input, fragments the message must contain (quoting the offending part)]
const malformed: Array<[string, string[]]> = [
  ['', ['HYDRA_DBI: empty']],
  ['   ', ['HYDRA_DBI: empty']],
  ['dbi:Pg:', ['no connection parameters', '"dbi:Pg:"']],
  ['dbi:Pg:;;', ['no connection parameters']],
  ['dbi:Pg', ['prefix "dbi:Pg" at position 1']],
  ['dbi:mysql:dbname=hydra', ['driver "dbi:mysql:" at position 1', 'does not denote a PostgreSQL database']],
  ['dbi:SQLite:dbname=/tmp/x', ['driver "dbi:SQLite:"', 'PostgreSQL']],
  ['dbi:pg:dbname=hydra', ['driver "dbi:pg:"', 'case-sensitive']],
  ['Dbi:Pg:dbname=hydra', ['prefix "Dbi:Pg:" at position 1']],
  ['postgres://hydra@db/hydra', ['a URL is not a DBI string', 'HYDRA_DATABASE_URL']],
  ['hydra', ['starts with "hydra" at position 1']],
  [' dbi:Pg:dbname=hydra', ['starts with " dbi:Pg" at position 1']],
  ['dbi:Pg:dbname', ['missing "=" after key "dbname" at position 8']],
  ['dbi:Pg:dbname=hydra;host', ['missing "=" after key "host" at position 21']],
  ['dbi:Pg:dbname=a b', ['missing "=" after key "b" at position 17']],
  ['dbi:Pg:=hydra', ['empty key before "=" at position 8']],
  ['dbi:Pg:dbname=hydra;=x', ['empty key before "=" at position 21']],
  ['dbi:Pg:dbname=a;dbname=b', ['duplicate key "dbname" at position 17', 'first given at position 8']],
  ['dbi:Pg:port=0', ['bad port "0" at position 13 (must be an integer 1..65535)']],
  ['dbi:Pg:port=70000', ['bad port "70000" at position 13']],
  ['dbi:Pg:port=12a', ['bad port "12a" at position 13']],
  ['dbi:Pg:port=+5432', ['bad port "+5432"']],
  ['dbi:Pg:port=-1', ['bad port "-1"']],
  ["dbi:Pg:dbname=x;port=5432.0", ["bad port \"5432.0\" at position 22"]],
  ['dbi:Pg:dbnme=x', ['unknown key "dbnme" at position 8', 'did you mean "dbname"']],
  ['dbi:Pg:DBNAME=x', ['unknown key "DBNAME" at position 8']],
  ['dbi:Pg:database=hydra', ['unknown key "database" at position 8', '"dbname"']],
  ['dbi:Pg:dbname=hydra;sslrootcert=/x', ['unknown key "sslrootcert" at position 21']],
  ["dbi:Pg:dbname='hydra", ['unterminated quoted value for key "dbname" starting at position 15']],
  ["dbi:Pg:dbname='a'b", ['unexpected "b" after the quoted value of "dbname" at position 18']],
  ['dbi:Pg:user=a\\', ['trailing backslash in the value of "user" at position 14']],
  ['dbi:Pg:host=a,b', ['multiple hosts "a,b" at position 13']],
  ['dbi:Pg:sslmode=bogus', ['bad sslmode "bogus" at position 16', 'verify-full']],
  ['dbi:Pg:hostaddr=db.example.org', ['hostaddr "db.example.org" at position 17 (must be a numeric IP address)']],
  ['dbi:Pg:connect_timeout=-5', ['bad connect_timeout "-5" at position 24']],
];

test('malformed HYDRA_DBI strings give a ConfigError quoting the bad part and its position', () => {
  assert.ok(malformed.length >= 25);
  for (const [dbi, fragments] of malformed) {
    assert.throws(
      () => parseHydraDbi(dbi),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, `${dbi}: not a ConfigError`);
        assert.equal(error.field, 'HYDRA_DBI');
        for (const fragment of fragments) {
          assert.ok(error.message.includes(fragment), `${JSON.stringify(dbi)}: ${error.message} lacks ${fragment}`);
        }
        if (dbi.trim() !== '') assert.ok(error.message.includes(JSON.stringify(dbi)), `${error.message} lacks the input`);
        return true;
      },
    );
  }
});

test('error messages never show the password', () => {
  for (const dbi of ['dbi:Pg:password=hunter2;port=x', "dbi:Pg:password='hunter2", "dbi:Pg:password = 'hun ter2';dbnme=x"]) {
    assert.throws(
      () => parseHydraDbi(dbi),
      (error: Error) => !error.message.includes('hunter2') && !error.message.includes('hun ter2') && /\*{7}/.test(error.message),
    );
  }
  // Masking keeps the length, so positions still point at the right character.
  assert.throws(() => parseHydraDbi('dbi:Pg:password=hunter2;port=x'), /bad port "x" at position 30 \(must be an integer 1\.\.65535\) in "dbi:Pg:password=\*{7};port=x"$/);
});

test('the label names the variable the string came from', () => {
  assert.throws(() => parseHydraDbi('dbi:Pg:x=1', {label: 'hydra.conf dbi'}), /^ConfigError: hydra\.conf dbi: unknown key "x"/);
});

const validUrls: Array<[string, DbiConfig]> = [
  ['postgres://hydra:pw@db:5433/hydra', {host: 'db', port: 5433, database: 'hydra', user: 'hydra', password: 'pw'}],
  ['postgresql:///hydra', {host: S, database: 'hydra'}],
  ['postgresql://%2Fvar%2Frun%2Fpostgresql/hydra', {host: '/var/run/postgresql', database: 'hydra'}],
  ['postgresql://hydra@/hydra?host=/tmp&port=5999', {host: '/tmp', port: 5999, database: 'hydra', user: 'hydra'}],
  ['postgres://[::1]:5433/db?sslmode=require', {host: '::1', port: 5433, database: 'db', ssl: {rejectUnauthorized: false}}],
  ['POSTGRES://u%40x:p%3Aw@h/d%20b', {host: 'h', user: 'u@x', password: 'p:w', database: 'd b'}],
  ['postgresql://h', {host: 'h'}],
];

test('postgres:// URLs parse into the same config shape', () => {
  for (const [url, expected] of validUrls) assert.deepEqual(parseDatabaseUrl(url), expected, url);
});

const badUrls: Array<[string, string[]]> = [
  ['', ['empty']],
  ['mysql://db/hydra', ['scheme "mysql"']],
  ['dbi:Pg:dbname=hydra', ['a DBI string is not a URL', 'HYDRA_DBI']],
  ['postgres:db', ['expected "//" after "postgres:"']],
  ['postgres://db:70000/hydra', ['bad port "70000"']],
  ['postgres://db:12a/hydra', ['bad port "12a"']],
  ['postgres://db:0/hydra', ['bad port "0"']],
  ['postgres://a,b/hydra', ['multiple hosts "a,b"']],
  ['postgres://db/a/b', ['database name "a/b"']],
  ['postgres://db/hydra?schema=public', ['unknown query parameter "schema"']],
  ['postgres://db/hydra?sslmode=on', ['bad sslmode "on"', 'query parameter "sslmode"']],
  ['postgres://db/hydra?port=1&port=2', ['duplicate query parameter "port"']],
  ['postgres://db/hydra?host=/tmp', ['query parameter "host" repeats']],
  ['postgres://db/hydra#x', ['unexpected fragment "#x"']],
  ['postgres://db/%E0%A4%A', ['bad percent-encoding']],
];

test('malformed URLs give a ConfigError quoting the bad part', () => {
  for (const [url, fragments] of badUrls) {
    assert.throws(
      () => parseDatabaseUrl(url, {label: 'HYDRA_DATABASE_URL'}),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.ok(error.message.startsWith('HYDRA_DATABASE_URL: '), error.message);
        for (const f of fragments) assert.ok(error.message.includes(f), `${url}: ${error.message} lacks ${f}`);
        return true;
      },
    );
  }
  assert.throws(() => parseDatabaseUrl('postgres://u:hunter2@db:0/x'), (e: Error) => !e.message.includes('hunter2') && e.message.includes('u:***@db'));
});

test('dbiToUrl round-trips through parseDatabaseUrl and redacts by default', () => {
  const samples = valid.map(([dbi]) => parseHydraDbi(dbi)).filter((c) => !(c.ssl && c.ssl.servername));
  for (const config of samples) {
    const url = dbiToUrl(config, {redact: false});
    const back = parseDatabaseUrl(url);
    // sslmode=allow/prefer both come back as disable: the same node-postgres config.
    assert.deepEqual(back, config, url);
  }
  const secret = parseHydraDbi('dbi:Pg:dbname=hydra;user=hydra;password=s3cret;host=db');
  assert.equal(dbiToUrl(secret), 'postgresql://hydra:***@db/hydra');
  assert.equal(dbiToUrl(parseHydraDbi('dbi:Pg:dbname=hydra')), 'postgresql:///hydra?host=%2Frun%2Fpostgresql');
});

test('describeDbi names database, user, place and TLS but not the password', () => {
  const d = describeDbi(parseHydraDbi('dbi:Pg:dbname=hydra;user=hydra;password=s3cret;host=db;port=5433;sslmode=require'));
  assert.equal(d, 'database "hydra" as user "hydra" on db:5433, password set, TLS require');
  assert.equal(
    describeDbi(parseHydraDbi('dbi:Pg:dbname=hydra;')),
    'database "hydra" as the default user via socket /run/postgresql (default port), TLS per PGSSLMODE',
  );
});

test('end to end: a HYDRA_DBI over TCP reaches the real PostgreSQL', async () => {
  const db = await freshDatabase('config_dbi');
  try {
    const server = new URL(await testServerUrl());
    const parts = [`dbname=${db.name}`, `host=${server.hostname}`, `port=${server.port || 5432}`];
    if (server.username) parts.push(`user=${decodeURIComponent(server.username)}`);
    if (server.password) parts.push(`password='${decodeURIComponent(server.password).replace(/['\\]/g, '\\$&')}'`);
    parts.push('sslmode=disable', 'application_name=hydra-ops-test');
    const client = new pg.Client(parseHydraDbi(`dbi:Pg:${parts.join(';')};`));
    await client.connect();
    try {
      const {rows} = await client.query('SELECT current_database() AS db, current_setting($1) AS app', ['application_name']);
      assert.deepEqual(rows[0], {db: db.name, app: 'hydra-ops-test'});
    } finally {
      await client.end();
    }
  } finally {
    await db.drop();
  }
});

test('end to end: a HYDRA_DBI without host goes through the Unix socket', async (t) => {
  const socket = `${DEFAULT_SOCKET_DIR}/.s.PGSQL.5432`;
  if (!existsSync(socket)) {
    t.skip(`no PostgreSQL socket at ${socket} on this machine`);
    return;
  }
  const client = new pg.Client(parseHydraDbi('dbi:Pg:dbname=postgres;user=postgres'));
  await client.connect();
  try {
    const {rows} = await client.query("SELECT coalesce(inet_server_addr()::text, 'socket') AS via");
    assert.equal(rows[0].via, 'socket');
  } finally {
    await client.end();
  }
});
