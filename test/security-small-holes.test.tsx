// Smaller holes: terminal escape sequences from the database in script-mode tables and console tables, an output
// path a builder reports that is not a store path, a password on the command line, the export cache's --gc racing
// an export. Real CLI against a real PostgreSQL; real flock locks.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, mkdirSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import React from 'react';
import pg from 'pg';
import {runCli} from './support/cli.js';
import {freshDatabase, type TestDatabase} from './support/pg.js';
import {insertBuild, insertBuildStep, insertJobset, storePath} from './support/fixtures.js';
import {initSchema} from '../source/db/schema.js';
import {decodeBuiltOutputs} from '../source/nix/serve-client.js';
import {initBinaryCache, withCacheLock} from '../source/nix/binary-cache.js';
import {Table} from '../source/ui/components/Table.js';
import {themeFromEnv} from '../source/ui/theme.js';

const EVIL = 'job\x1b]0;pwned\x07\x1b[2J\x1b[31mred';
let tdb: TestDatabase;
let pool: pg.Pool;
let base: string;
let env: Record<string, string>;

before(async () => {
  tdb = await freshDatabase('small_holes');
  pool = new pg.Pool({connectionString: tdb.url, max: 2});
  await initSchema(pool);
  base = mkdtempSync(join(tmpdir(), 'hydra-ops-small-holes-'));
  mkdirSync(join(base, 'data'));
  writeFileSync(join(base, 'machines'), '');
  env = {
    HYDRA_DATABASE_URL: tdb.url,
    HYDRA_DATA: join(base, 'data'),
    HYDRA_OPS_CONFIG_DIR: join(base, 'settings'),
    HYDRA_CONFIG: '',
    NIX_REMOTE_SYSTEMS: join(base, 'machines'),
  };
});

after(async () => {
  await pool?.end().catch(() => {});
  await tdb?.drop();
  rmSync(base, {recursive: true, force: true});
});

test('escape sequences in job names, error messages and machine names (were sent raw to the terminal by script-mode tables) are shown escaped', {timeout: 60_000}, async () => {
  const js = await insertJobset(pool);
  const id = await insertBuild(pool, {jobsetId: js.id, job: EVIL, finished: 1, buildStatus: 1, outputs: {out: storePath('evil')}});
  await insertBuildStep(pool, {build: id, status: 1, machine: 'ssh://evil\x1b[8m', errorMsg: 'boom\x1b[2J'});
  for (const args of [['builds'], ['steps'], ['build', String(id)]]) {
    const r = await runCli(args, env);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes('\x1b') && !r.stdout.includes('\x07'), `${args[0]}: no raw control characters: ${JSON.stringify(r.stdout)}`);
    if (args[0] !== 'steps') assert.ok(r.stdout.includes('job\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred'), `${args[0]}: the name, escaped: ${r.stdout}`);
    if (args[0] !== 'builds') assert.ok(r.stdout.includes('ssh://evil\\x1b[8m'), `${args[0]}: the machine, escaped: ${r.stdout}`);
  }
});

test('escape sequences in console table cells (were written into the frame) are shown escaped', async () => {
  const {render} = await import('ink-testing-library');
  const r = render(
    <Table
      columns={[{title: 'JOB', width: 60}]}
      rows={[{key: 1, cells: [EVIL]}]}
      selected={-1}
      width={70}
      height={3}
      theme={themeFromEnv({NO_COLOR: '1'}, {ascii: true})}
    />,
  );
  const frame = r.lastFrame() ?? '';
  r.unmount();
  assert.ok(!frame.includes('\x1b]0;') && !frame.includes('\x07') && !frame.includes('\x1b[2J'), JSON.stringify(frame));
  assert.ok(frame.includes('job\\x1b]0;pwned\\x07\\x1b[2J'), frame);
});

test('an output path reported by a builder that is not a store path (was rooted, hashed and recorded) is refused', () => {
  const key = 'sha256:0000000000000000000000000000000000000000000000000000000000000000!out';
  const ok = decodeBuiltOutputs(new Map([[key, JSON.stringify({outPath: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x'})]]), '/nix/store');
  assert.deepEqual([...ok], [['out', '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x']]);
  for (const bad of ['../../etc/passwd', '/etc/passwd', '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x/../../../etc/shadow', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x/sub', 'x\x1b[2J']) {
    assert.throws(
      () => decodeBuiltOutputs(new Map([[key, JSON.stringify({outPath: bad})]]), '/nix/store'),
      (e: Error) => /the builder reports output 'out' at .* which is not a store path in \/nix\/store/.test(e.message) && !e.message.includes('\x1b'),
      bad,
    );
  }
});

test('--database-url with a password (visible in the process list) warns and names HYDRA_DATABASE_URL and the settings file', {timeout: 60_000}, async () => {
  const r = await runCli(['--database-url', 'postgres://ops:s3cret@127.0.0.1:1/hydra', 'builds'], env);
  assert.match(r.stderr, /warning: the password in --database-url is visible to every user of this machine in the process list; put the URL in HYDRA_DATABASE_URL or the settings file/);
  const quiet = await runCli(['--database-url', tdb.url.replace(/:[^:@/]*@/, '@'), 'builds'], {...env});
  assert.doesNotMatch(quiet.stderr, /visible to every user/);
});

test('export --gc waits for a running export (was: deleted the files of an export whose set was not recorded yet)', {timeout: 60_000}, async () => {
  const dir = join(base, 'cache');
  await initBinaryCache(dir);
  // An "export" holding the cache's lock for 2 s, with a narinfo no set lists yet.
  const narinfo = join(dir, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.narinfo');
  let gcStarted = 0;
  const t0 = Date.now();
  const exporting = withCacheLock(dir, async () => {
    writeFileSync(narinfo, 'StorePath: /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x\nURL: nar/none.nar\n');
    await new Promise((r) => setTimeout(r, 2000));
    writeFileSync(join(dir, 'sets', 'the-export'), '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x\n');
  });
  await new Promise((r) => setTimeout(r, 200));
  gcStarted = Date.now();
  const gc = await runCli(['export', '--gc', '--to', dir, '--json'], env);
  await exporting;
  assert.equal(gc.code, 0, gc.stderr);
  assert.ok(Date.now() - t0 >= 2000, 'the gc waited for the export');
  assert.ok(gcStarted - t0 < 2000);
  const doc = JSON.parse(gc.stdout);
  assert.equal(doc.gc.keptPaths, 1, 'the export\'s narinfo is kept: its set was recorded before the gc ran');
  assert.ok(!doc.gc.removed.includes('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.narinfo'));
});
