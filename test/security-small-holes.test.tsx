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
import {readdirSync, readFileSync} from 'node:fs';
import {Table} from '../source/ui/components/Table.js';
import {themeFromEnv} from '../source/ui/theme.js';
import {FakeData, FakeLog} from './support/ui-fake.js';
import {KEYS, renderConsole} from './support/ui-render.js';
import {VIEW_NAMES} from '../source/ui/state/views.js';
import type {ActionOutcome, ActionRequest, BuildDetail, LogHandle} from '../source/ui/state/types.js';

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

/** Every string in `v` with EVIL appended (names, messages, machines, errors): what a hostile database could hold. */
function evil<T>(v: T): T {
  if (typeof v === 'string') return (v + EVIL) as T;
  if (Array.isArray(v)) return v.map(evil) as T;
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [k, evil(x)])) as T;
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, evil(x)])) as T;
  return v;
}

/** The fake console data with EVIL in every string it returns, in its log and in its errors. */
class EvilData extends FakeData {
  failing = false;
  constructor() {
    super({builds: 40, logLines: 30});
    this.builds = this.builds.map((b) => evil({...b, drvpath: b.drvpath}));
    this.evals = this.evals.map(evil);
    this.log = new FakeLog(`/data/build-logs/${EVIL}`, 1, Array.from({length: 30}, (_, i) => `line ${i} ${EVIL}`));
    this.audit = [evil({id: 1, at: '2026-01-15T11:59:00Z', hydraUser: 'alice', unixUser: 'root', action: 'cancel', scope: 'build 4', targetCount: 1, resultCount: 1, outcome: 'ok', message: 'done'})];
  }
  override describe() {
    return evil('fake database');
  }
  override async header() {
    return evil(await super.header());
  }
  override async overview() {
    return evil(await super.overview());
  }
  override async runningSteps(f: string | null) {
    return evil(await super.runningSteps(f));
  }
  override async machines() {
    return evil(await super.machines());
  }
  override async jobsets() {
    return evil(await super.jobsets());
  }
  override async pageChecks() {
    return evil([{id: 1, build: 4, drvPath: '/nix/store/c.drv', originalMachine: 'ssh://a', checkMachine: 'ssh://b', verdict: 'not-reproducible', differing: ['out'], diffLogPath: '/tmp/d', startedAt: '2026-01-15T11:00:00Z'}]);
  }
  override async countChecks() {
    return 1;
  }
  override async buildDetail(id: number): Promise<BuildDetail | null> {
    if (this.failing) throw new Error(`cannot read build ${id}: ${EVIL}`);
    const d = await super.buildDetail(id);
    return d && evil({...d, products: [{productnr: 1, type: 'file', subtype: 'binary-dist', name: 'hello.tar', path: '/nix/store/p/hello.tar', filesize: 1}]});
  }
  override async runnerStats() {
    if (this.failing) throw new Error(`runner status: ${EVIL}`);
    return evil(await super.runnerStats());
  }
  override async pageEvals(q: Parameters<FakeData['pageEvals']>[0]) {
    if (this.failing) throw new Error(`evals: ${EVIL}\nsecond line ${EVIL}`);
    return super.pageEvals(q);
  }
  override async openLog(build: number, stepnr?: number): Promise<LogHandle> {
    if (this.failing) throw new Error(`no log for ${EVIL}`);
    return super.openLog(build, stepnr);
  }
  override async act(req: ActionRequest): Promise<ActionOutcome> {
    const o = await super.act(req);
    return {...o, message: o.message + EVIL, scope: evil(o.scope ?? '')};
  }
}

/** The frame has no raw escape sequence or bell (Ink's own colour codes are stripped first), and shows EVIL escaped. */
function assertClean(frame: string, where: string, shown = true): void {
  assert.ok(!frame.includes('\x1b') && !frame.includes('\x07'), `${where}: raw control characters reached the frame: ${JSON.stringify(frame)}`);
  if (shown) assert.ok(frame.includes('\\x1b]0;pwned\\x07'), `${where}: the hostile text, escaped, is on the screen:\n${frame}`);
}

test('escape sequences in names, messages, errors and machine names (were written raw by titles, summaries, footers, dialogs and errors) are shown escaped in every console view', {timeout: 60_000}, async () => {
  const data = new EvilData();
  const visited = new Set<string>();
  const r = await renderConsole(data, {columns: 200, rows: 40});
  const at = async (what: string, ready: (f: string) => boolean, shown = true) => {
    const f = await r.waitFor(ready, what);
    assertClean(f, what, shown);
    visited.add(r.controller.getState().view);
  };
  await at('overview', (f) => f.includes('aarch64-linux') && f.includes('beta'));
  await r.press('2');
  await at('builds', (f) => f.includes('pkg40'));
  await r.press(KEYS.enter);
  await at('detail summary', (f) => f.includes('[Summary]') && f.includes('product 1'));
  for (const tab of ['Steps', 'Log', 'Deps', 'History']) {
    await r.press(']');
    await at(`detail ${tab}`, (f) => f.includes(`[${tab}]`) && !f.includes('reading the log'), tab !== 'Steps');
  }
  await r.press('l');
  await at('log', (f) => f.includes('line 29'));
  await r.press(KEYS.esc, KEYS.esc);
  await r.press(KEYS.ctrlD);
  await at('cancel dialog', (f) => f.includes('Cancel 1 build'));
  await r.press('y');
  await at('footer message of an action', (f) => f.includes('cancel 1 of 1'));
  await r.press('x');
  await at('action menu', (f) => f.includes('Actions — enter runs'), false);
  await r.press(KEYS.esc, '?');
  await at('help', (f) => f.includes('Commands'), false);
  await r.press('q');
  for (const key of ['3', '4', '5', '6', '7', '8']) {
    await r.press(key);
    await r.waitFor(() => r.controller.getState().view !== 'builds', key);
    await at(`view ${key}`, (f) => f.includes('pwned'));
  }
  await r.press('4', 'i');
  await at('ping message', (f) => f.includes('ping 0 of 0'));
  await r.press(':');
  await r.type('runner');
  await r.press(KEYS.enter);
  await at('runner', (f) => f.includes('dispatch rounds'));
  // Errors: of a list (ErrorLines), the Runner view, the build detail and the log.
  data.failing = true;
  await r.press('8');
  await at('evals error', (f) => f.includes('second line'));
  await r.press(':');
  await r.type('runner');
  await r.press(KEYS.enter);
  await at('runner error', (f) => f.includes('runner: runner status'));
  await r.press(':');
  await r.type('build 4');
  await r.press(KEYS.enter);
  await at('detail error', (f) => f.includes('cannot read build 4'));
  await r.press(':');
  await r.type('log 4');
  await r.press(KEYS.enter);
  await at('log error', (f) => f.includes('no log for'));
  await r.unmount();
  assert.deepEqual([...visited].sort(), [...VIEW_NAMES].sort(), 'every view was visited');
});

test('the console puts text on the screen only through its escaping Text (no component imports Ink\'s Text)', () => {
  const root = new URL('../source/ui/', import.meta.url).pathname;
  const files = (dir: string): string[] => readdirSync(dir, {withFileTypes: true}).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)]));
  const offenders = files(root).filter((f) => /\.tsx?$/.test(f) && !f.endsWith('components/Text.tsx') && /import \{[^}]*\bText\b[^}]*\} from 'ink'/.test(readFileSync(f, 'utf8')));
  assert.deepEqual(offenders, []);
});

test('a CLI error quoting a name from the database (was written raw to stderr) is escaped', {timeout: 60_000}, async () => {
  const js = await insertJobset(pool);
  const id = await insertBuild(pool, {jobsetId: js.id, job: EVIL, finished: 1, buildStatus: 0, outputs: {out: storePath('evil-log')}});
  const r = await runCli(['log', String(id)], env);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^hydra-ops: /);
  assert.ok(!r.stderr.includes('\x1b') && !r.stderr.includes('\x07'), JSON.stringify(r.stderr));
  assert.ok(r.stderr.includes('\\x1b]0;pwned\\x07'), r.stderr);
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
