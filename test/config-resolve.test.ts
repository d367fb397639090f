import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, realpathSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import pg from 'pg';
import {resolveConfig, type ConfigFlags, type ResolveOptions} from '../source/config/resolve.js';
import {openSettings, SETTING_DEFAULTS} from '../source/config/settings.js';
import {checkReachableByUser, embeddedPgDir, resolveDataDir} from '../source/config/data-dir.js';
import {ConfigError} from '../source/config/errors.js';
import type {Env} from '../source/config/dbi.js';
import {freshDatabase} from './support/pg.js';

const root = realpathSync(mkdtempSync(join(tmpdir(), 'hydra-ops-resolve-')));
chmodSync(root, 0o755); // mkdtemp makes 0700 directories; the reachability test needs a traversable base
after(() => rmSync(root, {recursive: true, force: true}));

let counter = 0;
function freshDir(label: string): string {
  const dir = join(root, `${label}-${++counter}`);
  mkdirSync(dir, {recursive: true});
  return dir;
}

/** An isolated environment: own settings directory, no system data directory, fixed login. */
function isolated(extra: Env = {}): {env: Env; opts: (flags?: ConfigFlags) => ResolveOptions; home: string} {
  const home = freshDir('home');
  const env: Env = {HOME: home, LOGNAME: 'alice', HYDRA_OPS_CONFIG_DIR: join(home, 'cfg'), ...extra};
  const opts = (flags: ConfigFlags = {}): ResolveOptions => ({
    flags,
    env,
    nproc: 8,
    dataDirOptions: {systemDir: join(home, 'no-var-lib-hydra'), rootDir: join(home, 'root-data'), uid: 1000},
  });
  return {env, opts, home};
}

test('database precedence: --database-url > HYDRA_DATABASE_URL > HYDRA_DBI > DATABASE_URL > settings > embedded', () => {
  const all = {
    HYDRA_DATABASE_URL: 'postgres://a@h1/one',
    HYDRA_DBI: 'dbi:Pg:dbname=two;host=h2',
    DATABASE_URL: 'postgresql://h3/three',
  };
  const {env, opts, home} = isolated(all);
  openSettings(env).setSetting('databaseUrl', 'postgres://h4/four');
  const flags = {databaseUrl: 'postgres://h0/zero'};
  const mutable = env as Record<string, string | undefined>;

  const seen: Array<[string, string]> = [];
  const step = (f: ConfigFlags) => {
    const db = resolveConfig(opts(f)).database;
    seen.push([db.source, db.kind === 'server' ? `${db.config.host}/${db.config.database}` : db.dir]);
  };
  step(flags);
  step({});
  delete mutable.HYDRA_DATABASE_URL;
  step({});
  mutable.HYDRA_DBI = '';
  step({});
  delete mutable.DATABASE_URL;
  step({});
  openSettings(env).unsetSetting('databaseUrl');
  step({});
  assert.deepEqual(seen, [
    ['--database-url', 'h0/zero'],
    ['HYDRA_DATABASE_URL', 'h1/one'],
    ['HYDRA_DBI', 'h2/two'],
    ['DATABASE_URL', 'h3/three'],
    ['settings databaseUrl', 'h4/four'],
    ['no database configured', join(home, '.local/share/hydra-ops/pg')],
  ]);
});

test('only the winning database source is parsed; a bad winner is a ConfigError naming it', () => {
  const {opts} = isolated({HYDRA_DBI: 'dbi:Pg:dbname=hydra', DATABASE_URL: 'mysql://broken'});
  assert.equal(resolveConfig(opts()).database.source, 'HYDRA_DBI');
  const bad = isolated({HYDRA_DBI: 'dbi:Pg:dbname=hydra;port=0', DATABASE_URL: 'postgres://fine/db'});
  assert.throws(() => resolveConfig(bad.opts()), (e: unknown) => e instanceof ConfigError && /^HYDRA_DBI: bad port "0"/.test(e.message));
  assert.throws(() => resolveConfig(bad.opts({databaseUrl: 'postgres://h:99999/x'})), /^ConfigError: --database-url: bad port "99999"/);
});

test('the server choice carries a redacted URL and a description', () => {
  const {opts} = isolated({HYDRA_DBI: 'dbi:Pg:dbname=hydra;user=hydra;password=s3cret;host=db'});
  const db = resolveConfig(opts()).database;
  assert.equal(db.kind, 'server');
  if (db.kind !== 'server') return;
  assert.equal(db.url, 'postgresql://hydra:***@db/hydra');
  assert.equal(db.config.password, 's3cret');
  assert.ok(!db.description.includes('s3cret'));
});

test('embedded: <data dir>/pg, Unix socket unless embeddedPort is set, one generated password kept in a 0600 file', () => {
  const {env, opts} = isolated({HYDRA_DATA: '/srv/hydra-data'});
  const first = resolveConfig(opts()).database;
  assert.equal(first.kind, 'embedded');
  if (first.kind !== 'embedded') return;
  assert.equal(first.dir, '/srv/hydra-data/pg');
  assert.equal(first.dir, embeddedPgDir('/srv/hydra-data'));
  assert.equal(first.port, null, 'no TCP port unless the operator sets embeddedPort');
  assert.ok(!('embeddedPort' in SETTING_DEFAULTS));
  assert.match(first.password, /^[A-Za-z0-9_-]{32}$/);
  const settings = openSettings(env);
  assert.equal(statSync(settings.settingsPath()).mode & 0o777, 0o600);
  assert.equal(JSON.parse(readFileSync(settings.settingsPath(), 'utf8')).embeddedPassword, first.password);
  settings.setSetting('embeddedPort', '6543');
  const second = resolveConfig(opts()).database;
  assert.ok(second.kind === 'embedded' && second.password === first.password && second.port === 6543);
});

test('data directory: --data-dir > HYDRA_DATA > writable system dir > root default > XDG_DATA_HOME > HOME', () => {
  const {env, opts, home} = isolated({HYDRA_DATA: '/from/env', XDG_DATA_HOME: '/xdg'});
  assert.deepEqual(
    [resolveConfig(opts({dataDir: '/from/flag'})).dataDir.dir, resolveConfig(opts()).dataDir.dir],
    ['/from/flag', '/from/env'],
  );
  const mutable = env as Record<string, string | undefined>;
  delete mutable.HYDRA_DATA;
  const system = freshDir('var-lib-hydra');
  const probe = (uid: number, systemDir: string) => resolveDataDir(env, {systemDir, rootDir: '/var/lib/hydra-ops-test', uid});
  assert.deepEqual(probe(1000, system), {dir: system, source: 'system', reason: `${system} exists and is writable ($HYDRA_DATA unset)`});
  const missing = join(home, 'missing');
  assert.equal(probe(0, missing).source, 'root');
  assert.equal(probe(0, missing).dir, '/var/lib/hydra-ops-test');
  assert.deepEqual([probe(1000, missing).source, probe(1000, missing).dir], ['XDG_DATA_HOME', '/xdg/hydra-ops']);
  delete mutable.XDG_DATA_HOME;
  assert.deepEqual([probe(1000, missing).source, probe(1000, missing).dir], ['home', join(home, '.local/share/hydra-ops')]);
  // A regular file where the system directory should be is not usable.
  const file = join(home, 'not-a-dir');
  writeFileSync(file, '');
  assert.equal(probe(1000, file).source, 'home');
});

test('hydra.conf: --hydra-config > HYDRA_CONFIG (if it exists) > <data dir>/hydra.conf', () => {
  const data = freshDir('data');
  writeFileSync(join(data, 'hydra.conf'), 'max_unsupported_time = 30\n');
  const other = join(freshDir('etc'), 'hydra.conf');
  writeFileSync(other, 'max_unsupported_time = 45\nmax_log_size = 1024\n');
  const flagged = join(freshDir('flag'), 'custom.conf');
  writeFileSync(flagged, 'max_unsupported_time = 60\n');

  const {env, opts} = isolated({HYDRA_DATA: data, HYDRA_CONFIG: other});
  const viaFlag = resolveConfig(opts({hydraConfig: flagged}));
  assert.deepEqual([viaFlag.hydraConf?.source, viaFlag.hydraConf?.path, viaFlag.runner.maxUnsupportedTime], ['--hydra-config', flagged, 60]);
  const viaEnv = resolveConfig(opts());
  assert.deepEqual([viaEnv.hydraConf?.source, viaEnv.runner.maxLogSize, viaEnv.runnerSources.maxLogSize], ['HYDRA_CONFIG', 1024, `${other}:2`]);
  const mutable = env as Record<string, string | undefined>;
  mutable.HYDRA_CONFIG = join(data, 'absent.conf');
  const missing = resolveConfig(opts());
  assert.equal(missing.hydraConf, null);
  assert.equal(missing.runner.maxUnsupportedTime, 120);
  assert.match(missing.warnings.join('\n'), /HYDRA_CONFIG=.*absent\.conf does not exist/);
  delete mutable.HYDRA_CONFIG;
  const fromData = resolveConfig(opts());
  assert.deepEqual([fromData.hydraConf?.source, fromData.runner.maxUnsupportedTime], ['data directory', 30]);
  assert.throws(() => resolveConfig(opts({hydraConfig: join(data, 'nope.conf')})), /--hydra-config: ".*nope\.conf" is not an existing file/);
});

test('max_unsupported_time: flag > settings > hydra.conf > default 120', () => {
  const data = freshDir('data');
  const {env, opts} = isolated({HYDRA_DATA: data});
  const at = () => {
    const c = resolveConfig(opts());
    return [c.runner.maxUnsupportedTime, c.runnerSources.maxUnsupportedTime];
  };
  assert.deepEqual(at(), [120, 'default']);
  writeFileSync(join(data, 'hydra.conf'), '\nmax_unsupported_time = 0\n');
  assert.deepEqual(at(), [0, `${join(data, 'hydra.conf')}:2`]);
  openSettings(env).setSetting('maxUnsupportedTime', '300');
  assert.deepEqual(at(), [300, 'settings']);
  const flagged = resolveConfig(opts({maxUnsupportedTime: 5}));
  assert.deepEqual([flagged.runner.maxUnsupportedTime, flagged.runnerSources.maxUnsupportedTime], [5, '--max-unsupported-time']);
  assert.throws(() => resolveConfig(opts({maxUnsupportedTime: -1})), /--max-unsupported-time: expected an integer 0\.\.31536000, got "-1"/);
});

test('hydra user: --user > HYDRA_OPS_USER > settings > login name', () => {
  const {env, opts} = isolated({HYDRA_OPS_USER: 'from-env'});
  openSettings(env).setSetting('hydraUser', 'from-settings');
  const user = (f: ConfigFlags = {}) => {
    const u = resolveConfig(opts(f)).hydraUser;
    return `${u.value}@${u.source}`;
  };
  assert.equal(user({user: 'from-flag'}), 'from-flag@--user');
  assert.equal(user(), 'from-env@HYDRA_OPS_USER');
  delete (env as Record<string, string | undefined>).HYDRA_OPS_USER;
  assert.equal(user(), 'from-settings@settings');
  openSettings(env).unsetSetting('hydraUser');
  assert.equal(user(), 'alice@OS login name');
});

test('readonly, refresh, status address, log format: flag > settings > default', () => {
  const {env, opts} = isolated();
  const pick = (f: ConfigFlags = {}) => {
    const c = resolveConfig(opts(f));
    return [c.readonly, c.refreshMs, c.statusAddress, c.logFormat, c.localAdmin].map((s) => `${s.value}@${s.source}`);
  };
  assert.deepEqual(pick(), ['false@default', '2000@default', '127.0.0.1:8081@default', 'text@default', 'false@default']);
  const s = openSettings(env);
  s.setSetting('readonly', 'yes');
  s.setSetting('refreshMs', '500');
  s.setSetting('statusAddress', '[::1]:9000');
  s.setSetting('logFormat', 'json');
  s.setSetting('localAdmin', 'true');
  assert.deepEqual(pick(), ['true@settings', '500@settings', '[::1]:9000@settings', 'json@settings', 'true@settings']);
  assert.deepEqual(pick({readonly: true, refreshMs: 250, statusAddress: '0.0.0.0:1', logFormat: 'text', localAdmin: true}), [
    'true@--readonly',
    '250@--refresh-ms',
    '0.0.0.0:1@--status-address',
    'text@--log-format',
    'true@--local-admin',
  ]);
  assert.throws(() => resolveConfig(opts({refreshMs: 10})), /--refresh-ms: expected an integer 100\.\.3600000, got "10"/);
  assert.throws(() => resolveConfig(opts({statusAddress: 'nowhere'})), /--status-address: expected host:port/);
});

test('machines files: NIX_REMOTE_SYSTEMS (colon-separated) else /etc/nix/machines', () => {
  const {opts} = isolated({NIX_REMOTE_SYSTEMS: '/etc/nix/machines:/run/hydra/machines::'});
  assert.deepEqual(resolveConfig(opts()).machinesFiles, {value: ['/etc/nix/machines', '/run/hydra/machines'], source: 'NIX_REMOTE_SYSTEMS'});
  assert.deepEqual(resolveConfig(isolated().opts()).machinesFiles, {value: ['/etc/nix/machines'], source: 'default'});
});

test('settings: typed parsing, clear errors, isolation per directory', () => {
  const a = openSettings(isolated().env);
  const b = openSettings(isolated().env);
  assert.notEqual(a.settingsPath(), b.settingsPath());
  a.setSetting('refreshMs', '750');
  assert.equal(a.getSetting('refreshMs'), 750);
  assert.equal(b.getSetting('refreshMs'), 2000);
  assert.equal(b.hasSetting('refreshMs'), false);
  const errors: Array<[string, string, RegExp]> = [
    ['refreshMs', 'fast', /^setting refreshMs: expected an integer 100\.\.3600000, got "fast"$/],
    ['refreshMs', '99', /got "99"/],
    ['embeddedPort', '70000', /^setting embeddedPort: expected an integer 1\.\.65535, got "70000"$/],
    ['readonly', 'maybe', /^setting readonly: expected a boolean \(true\/false, 1\/0, yes\/no, on\/off\), got "maybe"$/],
    ['logFormat', 'xml', /^setting logFormat: expected one of text, json, got "xml"$/],
    ['hydraUser', '  ', /^setting hydraUser: expected a non-empty string, got "  "$/],
    ['databaseUrl', 'dbi:Pg:dbname=x', /^setting databaseUrl: a DBI string is not a URL/],
    ['statusAddress', 'localhost', /^setting statusAddress: expected host:port .*got "localhost"$/],
    ['colour', 'red', /^unknown setting "colour" \(known settings: databaseUrl, /],
  ];
  for (const [key, raw, message] of errors) {
    assert.throws(
      () => a.setSetting(key, raw),
      (e: unknown) => e instanceof ConfigError && e.field === key && message.test(e.message),
      `${key}=${raw}`,
    );
  }
  assert.equal(a.getSetting('refreshMs'), 750);
  const listed = a.listSettings().find((s) => s.key === 'refreshMs')!;
  assert.deepEqual([listed.value, listed.source], [750, 'settings']);
});

test('settings: a damaged file is a ConfigError naming it', () => {
  const {env, opts} = isolated();
  const s = openSettings(env);
  mkdirSync(join(s.settingsPath(), '..'), {recursive: true});
  writeFileSync(s.settingsPath(), '{"refreshMs": 5');
  assert.throws(() => openSettings(env).getSetting('refreshMs'), (e: unknown) => e instanceof ConfigError && e.file === s.settingsPath() && /not valid JSON/.test(e.message));
  writeFileSync(s.settingsPath(), '{"refreshMs": 5}');
  assert.throws(() => resolveConfig(opts()), /config\.json: invalid setting `refreshMs` must be >= 100/);
});

test('checkReachableByUser reports the first directory the user cannot traverse', () => {
  const base = freshDir('reach');
  chmodSync(base, 0o755);
  const locked = join(base, 'locked');
  mkdirSync(join(locked, 'inner', 'pg'), {recursive: true});
  chmodSync(locked, 0o700);
  const nobody = 65534;
  const result = checkReachableByUser(join(locked, 'inner', 'pg'), nobody, nobody);
  assert.equal(result.ok, false);
  if (!result.ok) {
    assert.equal(result.dir, locked);
    assert.equal(result.needed, 'o+x');
    assert.equal(result.mode, 0o700);
    assert.match(result.message, new RegExp(`directory ${locked} \\(mode 0700, owner \\d+:\\d+\\) cannot be traversed by uid 65534.*needs o\\+x \\(e\\.g\\. chmod 0701 `));
  }
  // The owner's bits apply to the owner, the group's to group members.
  const owner = statSync(locked);
  assert.equal(checkReachableByUser(join(locked, 'inner'), owner.uid === 0 ? 4242 : owner.uid, 4242).ok, owner.uid !== 0);
  chmodSync(locked, 0o750);
  const member = checkReachableByUser(join(locked, 'inner'), 4242, nobody, [owner.gid]);
  assert.equal(member.ok, true);
  chmodSync(locked, 0o711);
  assert.equal(checkReachableByUser(join(locked, 'inner', 'pg', 'not-yet'), nobody, nobody).ok, true);
  assert.equal(checkReachableByUser(locked, 0, 0).ok, true);
});

test('end to end: the resolved database configuration connects to the real PostgreSQL', async () => {
  const db = await freshDatabase('config_resolve');
  try {
    const {opts} = isolated({HYDRA_DATABASE_URL: db.url, HYDRA_DBI: 'dbi:Pg:dbname=ignored;host=nowhere.invalid'});
    const resolved = resolveConfig(opts());
    assert.equal(resolved.database.kind, 'server');
    if (resolved.database.kind !== 'server') return;
    const client = new pg.Client(resolved.database.config);
    await client.connect();
    try {
      const {rows} = await client.query('SELECT current_database() AS name');
      assert.equal(rows[0].name, db.name);
    } finally {
      await client.end();
    }
  } finally {
    await db.drop();
  }
});
