import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {mkdirSync, mkdtempSync, rmSync, writeFileSync, realpathSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {dirname, join} from 'node:path';
import {defaultRunnerSettings, parseHydraConf} from '../source/config/hydra-conf.js';
import {ConfigError} from '../source/config/errors.js';

const root = realpathSync(mkdtempSync(join(tmpdir(), 'hydra-ops-conf-')));
after(() => rmSync(root, {recursive: true, force: true}));

let counter = 0;
/** Writes files (relative names → text) into a fresh directory and returns its path. */
function tree(files: Record<string, string>): string {
  const dir = join(root, `case-${++counter}`);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), {recursive: true});
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

const opts = {env: {NIX_STATE_DIR: '/nix/var/nix', LOGNAME: 'hydra-queue-runner'}, nproc: 8};

function expectError(run: () => unknown, fragments: string[], where?: {file: string; line: number}): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof ConfigError, String(error));
    for (const f of fragments) assert.ok(error.message.includes(f), `${error.message} lacks ${f}`);
    if (where) {
      assert.equal(error.file, where.file);
      assert.equal(error.line, where.line);
    }
    return true;
  });
}

test('Perl view: comments, both key forms, quotes, blocks, here-documents, continuation', () => {
  const dir = tree({
    'hydra.conf': [
      '# a comment',
      'base_uri = https://hydra.example.org   # trailing comment',
      'max_servers 25',
      'private=1',
      'notification_sender "hydra@example.org"',
      'channel_name = with\\#hash',
      '/* a C comment',
      'ignored_by_perl = yes',
      '*/',
      '<hydra_notify>',
      '  <prometheus>',
      '    listen_address = 127.0.0.1',
      '    port = 9199',
      '  </prometheus>',
      '</hydra_notify>',
      '<git-input nixpkgs>',
      '  timeout = 1800',
      '</git-input>',
      'motd <<EOT',
      'line one',
      '  line two',
      'EOT',
      'long_value = first \\',
      '   second',
      '',
    ].join('\n'),
  });
  const conf = parseHydraConf(join(dir, 'hydra.conf'), opts);
  assert.deepEqual(conf.values, {
    base_uri: 'https://hydra.example.org',
    max_servers: '25',
    private: '1',
    notification_sender: 'hydra@example.org',
    channel_name: 'with#hash',
    'hydra_notify.prometheus.listen_address': '127.0.0.1',
    'hydra_notify.prometheus.port': '9199',
    'git-input.nixpkgs.timeout': '1800',
    motd: 'line one\n  line two',
    long_value: 'first second',
  });
  const port = conf.entries.find((e) => e.key === 'port')!;
  assert.deepEqual(
    {blocks: port.blocks, line: port.line, file: port.file, included: port.included},
    {blocks: ['hydra_notify', 'prometheus'], line: 13, file: join(dir, 'hydra.conf'), included: false},
  );
  assert.deepEqual(conf.files, [join(dir, 'hydra.conf')]);
  assert.deepEqual(conf.warnings, []);
});

test('typed defaults when nothing is set', () => {
  const dir = tree({'hydra.conf': '# empty\n'});
  const conf = parseHydraConf(join(dir, 'hydra.conf'), opts);
  assert.deepEqual(conf.runner, {
    storeUri: '',
    maxDbConnections: 128,
    maxOutputSize: 2147483648,
    maxLogSize: 67108864,
    maxLocalWorkerThreads: 6,
    maxUnsupportedTime: 120,
    uploadLogsToBinaryCache: false,
    gcRootsDir: '/nix/var/nix/gcroots/per-user/hydra-queue-runner/hydra-roots',
    queueRunnerMetricsAddress: '127.0.0.1:9198',
    useSubstitutes: false,
    jobsetRepeats: [],
    compressBuildLogs: true,
    compressBuildLogsCompression: 'bzip2',
    compressBuildLogsSilent: false,
  });
  assert.equal(conf.runnerSources.maxLogSize, 'default');
  assert.deepEqual(conf.runner, defaultRunnerSettings(opts));
  // min(1024, max(4, nproc) − 2)
  assert.equal(defaultRunnerSettings({nproc: 1}).maxLocalWorkerThreads, 2);
  assert.equal(defaultRunnerSettings({nproc: 4}).maxLocalWorkerThreads, 2);
  assert.equal(defaultRunnerSettings({nproc: 5000}).maxLocalWorkerThreads, 1024);
  assert.equal(
    defaultRunnerSettings({env: {NIX_STATE_DIR: '/state', LOGNAME: 'ops'}}).gcRootsDir,
    '/state/gcroots/per-user/ops/hydra-roots',
  );
});

test('runner settings use the C++ rules: flat, last wins, "true"/"1" only, blocks leak', () => {
  const dir = tree({
    'hydra.conf': [
      'store_uri = s3://cache?compression=zstd&secret-key=/run/keys/k # the key',
      'max_db_connections = 50',
      'max_db_connections = 60',
      'max_output_size = 5368709120',
      'max_log_size = 1048576',
      'max_local_worker_threads = 3',
      'max_unsupported_time = 0',
      'upload_logs_to_binary_cache = 1',
      'use-substitutes = yes',
      'gc_roots_dir = /nix/var/nix/gcroots/hydra',
      'queue_runner_metrics_address = [::1]:9198',
      'xxx-jobset-repeats = nixpkgs:trunk:2 patchelf:master:3',
      'queue_runner_endpoint = http://127.0.0.1:8081',
      'compress_build_logs = true',
      'compress_build_logs_compression = zstd',
      '<hydra_notify>',
      '  queue_runner_metrics_address = 127.0.0.1:9300',
      '</hydra_notify>',
      'max_log_size 999',
    ].join('\n'),
  });
  const file = join(dir, 'hydra.conf');
  const conf = parseHydraConf(file, opts);
  assert.deepEqual(conf.runner, {
    storeUri: 's3://cache?compression=zstd&secret-key=/run/keys/k',
    maxDbConnections: 60,
    maxOutputSize: 5368709120,
    maxLogSize: 1048576,
    maxLocalWorkerThreads: 3,
    maxUnsupportedTime: 0,
    uploadLogsToBinaryCache: true,
    useSubstitutes: false,
    gcRootsDir: '/nix/var/nix/gcroots/hydra',
    queueRunnerMetricsAddress: '127.0.0.1:9300',
    jobsetRepeats: [
      {project: 'nixpkgs', jobset: 'trunk', repeats: 2},
      {project: 'patchelf', jobset: 'master', repeats: 3},
    ],
    queueRunnerEndpoint: 'http://127.0.0.1:8081',
    compressBuildLogs: false,
    compressBuildLogsCompression: 'zstd',
    compressBuildLogsSilent: false,
  });
  assert.equal(conf.runnerSources.maxDbConnections, `${file}:3`);
  assert.equal(conf.runnerSources.queueRunnerMetricsAddress, `${file}:17`);
  // The Perl view keeps the block and sees the value written without "=".
  assert.equal(conf.values['hydra_notify.queue_runner_metrics_address'], '127.0.0.1:9300');
  assert.equal(conf.values.max_log_size, '999');
  const w = conf.warnings.join('\n');
  assert.match(w, new RegExp(`${file}:3: max_db_connections is set again \\(also at ${file}:2\\)`));
  assert.match(w, new RegExp(`${file}:17: runner key queue_runner_metrics_address inside <hydra_notify>`));
  assert.match(w, new RegExp(`${file}:19: max_log_size is written without "="`));
  assert.match(w, /use-substitutes = "yes" counts as false/);
  assert.match(w, /compress_build_logs = "true" disables compression/);
});

test('Include: relative to the including file, nested, inside blocks; runner keys from includes warn', () => {
  const dir = tree({
    'etc/hydra.conf': ['base_uri = https://h', 'Include conf.d/runner.conf', '<ldap>', '  include ldap.conf', '</ldap>'].join('\n'),
    'etc/conf.d/runner.conf': ['max_log_size = 2048', 'include ../more/extra.conf'].join('\n'),
    'etc/more/extra.conf': 'store_uri = file:///srv/cache\n',
    'etc/ldap.conf': ['<config>', '  ldap_server = ldap.example.org', '</config>'].join('\n'),
  });
  const main = join(dir, 'etc/hydra.conf');
  const conf = parseHydraConf(main, opts);
  assert.equal(conf.runner.maxLogSize, 2048);
  assert.equal(conf.runner.storeUri, 'file:///srv/cache');
  assert.equal(conf.runnerSources.storeUri, `${join(dir, 'etc/more/extra.conf')}:1`);
  assert.equal(conf.values['ldap.config.ldap_server'], 'ldap.example.org');
  assert.deepEqual(conf.files, [
    main,
    join(dir, 'etc/conf.d/runner.conf'),
    join(dir, 'etc/more/extra.conf'),
    join(dir, 'etc/ldap.conf'),
  ]);
  const w = conf.warnings.join('\n');
  assert.match(w, /runner\.conf:1: runner key max_log_size comes from an included file/);
  assert.match(w, /extra\.conf:1: runner key store_uri comes from an included file/);
  assert.ok(conf.entries.find((e) => e.key === 'ldap_server')!.included);
});

test('Include with a wildcard expands sorted matches and warns', () => {
  const dir = tree({
    'hydra.conf': 'include conf.d/*.conf\n',
    'conf.d/10-a.conf': 'max_db_connections = 10\n',
    'conf.d/20-b.conf': 'max_db_connections = 20\n',
    'conf.d/ignored.txt': 'max_db_connections = 30\n',
  });
  const conf = parseHydraConf(join(dir, 'hydra.conf'), opts);
  assert.equal(conf.runner.maxDbConnections, 20);
  assert.equal(conf.files.length, 3);
  assert.match(conf.warnings.join('\n'), /include pattern "conf\.d\/\*\.conf" matched 2 file\(s\)/);
});

test('a missing included file is an error naming it and the including line', () => {
  const dir = tree({'hydra.conf': 'base_uri = x\n\nInclude secrets/hydra-auth.conf\n'});
  const file = join(dir, 'hydra.conf');
  expectError(
    () => parseHydraConf(file, opts),
    [`${file}:3:`, 'included file "secrets/hydra-auth.conf" does not exist', join(dir, 'secrets/hydra-auth.conf')],
    {file, line: 3},
  );
});

test('an include cycle is an error showing the chain', () => {
  const dir = tree({
    'a.conf': 'include b.conf\n',
    'b.conf': 'x = 1\ninclude sub/c.conf\n',
    'sub/c.conf': 'include ../a.conf\n',
  });
  const a = join(dir, 'a.conf');
  expectError(
    () => parseHydraConf(a, opts),
    [`${join(dir, 'sub/c.conf')}:1: include cycle: ${a} → ${join(dir, 'b.conf')} → ${join(dir, 'sub/c.conf')} → ${a}`],
    {file: join(dir, 'sub/c.conf'), line: 1},
  );
  // Including the same file twice without a cycle is fine.
  const twice = tree({'hydra.conf': 'include x.conf\ninclude x.conf\n', 'x.conf': 'motd = hi\n'});
  assert.equal(parseHydraConf(join(twice, 'hydra.conf'), opts).values.motd, 'hi');
});

test('bad numbers are errors naming file, line and key', () => {
  const cases: Array<[string, string, number, string]> = [
    ['max_log_size = 64M', 'max_log_size: bad number "64M"', 1, 'max_log_size'],
    ['\nmax_db_connections = -1', 'max_db_connections: bad number "-1"', 2, 'max_db_connections'],
    ['max_output_size = 1.5e9', 'max_output_size: bad number "1.5e9"', 1, 'max_output_size'],
    ['max_unsupported_time =', 'max_unsupported_time: bad number ""', 1, 'max_unsupported_time'],
    ['max_db_connections = 0', 'max_db_connections: must be at least 1', 1, 'max_db_connections'],
    ['max_local_worker_threads = 99999999999999999999', 'bad number "99999999999999999999"', 1, 'max_local_worker_threads'],
    ['xxx-jobset-repeats = nixpkgs:trunk', 'xxx-jobset-repeats: bad entry "nixpkgs:trunk"', 1, 'xxx-jobset-repeats'],
    ['xxx-jobset-repeats = a:b:c', 'bad entry "a:b:c" (expected project:jobset:N)', 1, 'xxx-jobset-repeats'],
  ];
  for (const [text, fragment, line, field] of cases) {
    const dir = tree({'hydra.conf': text + '\n'});
    const file = join(dir, 'hydra.conf');
    assert.throws(
      () => parseHydraConf(file, opts),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.ok(error.message.startsWith(`${file}:${line}: `), error.message);
        assert.ok(error.message.includes(fragment), `${error.message} lacks ${fragment}`);
        assert.equal(error.line, line);
        assert.equal(error.field, field);
        return true;
      },
    );
  }
  // In an included file the error names that file.
  const dir = tree({'hydra.conf': 'include runner.conf\n', 'runner.conf': '# x\nmax_log_size = lots\n'});
  expectError(() => parseHydraConf(join(dir, 'hydra.conf'), opts), ['runner.conf:2: max_log_size: bad number "lots"'], {
    file: join(dir, 'runner.conf'),
    line: 2,
  });
});

test('store_mode is fatal; deprecated binary cache keys warn', () => {
  const dir = tree({'hydra.conf': 'store_mode = direct\n'});
  expectError(() => parseHydraConf(join(dir, 'hydra.conf'), opts), [':1: store_mode is no longer supported', 'store_uri']);
  const old = tree({'hydra.conf': 'binary_cache_secret_key_file = /run/keys/k\nbinary_cache_dir = /srv/cache\n'});
  const conf = parseHydraConf(join(old, 'hydra.conf'), opts);
  assert.match(conf.warnings.join('\n'), /:1: binary_cache_secret_key_file is deprecated and ignored/);
  assert.match(conf.warnings.join('\n'), /:2: binary_cache_dir is deprecated and ignored/);
  assert.equal(conf.runner.storeUri, '');
});

test('runner keys in comments or quoted values are applied like the C++ runner, with warnings', () => {
  const dir = tree({
    'hydra.conf': ['/*', 'max_log_size = 4096', '*/', 'gc_roots_dir = "/srv/roots"'].join('\n'),
  });
  const conf = parseHydraConf(join(dir, 'hydra.conf'), opts);
  assert.equal(conf.runner.maxLogSize, 4096);
  assert.equal(conf.values.max_log_size, undefined);
  assert.equal(conf.runner.gcRootsDir, '"/srv/roots"');
  assert.equal(conf.values.gc_roots_dir, '/srv/roots');
  assert.match(conf.warnings.join('\n'), /:2: runner key max_log_size inside a \/\* \*\/ comment/);
  assert.match(conf.warnings.join('\n'), /:4: gc_roots_dir value "\/srv\/roots" is quoted/);
});

test('structural errors: unbalanced blocks, unterminated here-document, missing main file', () => {
  const cases: Array<[string, string, number]> = [
    ['<hydra_notify>\nx = 1\n', 'block <hydra_notify> is never closed', 1],
    ['<a>\n</b>\n', '"</b>" does not match <a> opened at', 2],
    ['x = 1\n</a>\n', '"</a>" closes a block that was never opened', 2],
    ['motd <<EOT\ntext\n', 'here-document "EOT" for "motd" is never closed', 1],
    ['<broken\n', 'malformed block tag "<broken"', 1],
  ];
  for (const [text, fragment, line] of cases) {
    const dir = tree({'hydra.conf': text});
    const file = join(dir, 'hydra.conf');
    expectError(() => parseHydraConf(file, opts), [`${file}:${line}: `, fragment], {file, line});
  }
  expectError(() => parseHydraConf(join(root, 'nope', 'hydra.conf'), opts), ['cannot read hydra.conf', 'ENOENT']);
});

test('a NixOS-style configuration parses with the expected runner settings', () => {
  const dir = tree({'hydra-gh.conf': '<github_authorization>\n  example = Bearer #token#\n</github_authorization>\n'});
  const main = join(dir, 'hydra.conf');
  writeFileSync(
    main,
    [
      'using_frontend_proxy = 1',
      'base_uri = https://hydra.example.org',
      'notification_sender = hydra@example.org',
      'max_servers = 25',
      'compress_num_threads = 0',
      'gc_roots_dir = /nix/var/nix/gcroots/hydra',
      'use-substitutes = 1',
      'max_output_size = 10737418240',
      'compress_build_logs = 1',
      'queue_runner_metrics_address = 127.0.0.1:6002',
      '',
      '<githubstatus>',
      '  jobs = .*',
      '  excludeBuildFromContext = 1',
      '</githubstatus>',
      '<runcommand>',
      '  job = *:*:merge-pr',
      '  command = /nix/store/x-merge-pr/bin/merge-pr',
      '</runcommand>',
      `Include ${join(dir, 'hydra-gh.conf')}`,
    ].join('\n'),
  );
  const conf = parseHydraConf(main, opts);
  assert.equal(conf.runner.useSubstitutes, true);
  assert.equal(conf.runner.maxOutputSize, 10 * 2 ** 30);
  assert.equal(conf.runner.gcRootsDir, '/nix/var/nix/gcroots/hydra');
  assert.equal(conf.runner.queueRunnerMetricsAddress, '127.0.0.1:6002');
  assert.equal(conf.runner.compressBuildLogs, true);
  assert.equal(conf.values['runcommand.job'], '*:*:merge-pr');
  // "#token#" starts a comment for Config::General, as it does for Hydra.
  assert.equal(conf.values['github_authorization.example'], 'Bearer');
  assert.deepEqual(conf.warnings, []);
});
