// CLI start-up: `hydra-ops --version` vs `node -e 0`, and `hydra-ops builds --json --limit 20` vs the same query
// through `psql` on a warm database (10k builds), each run several times in alternation; prints medians and ratios.
//
//   node --import tsx bench/cli-startup.ts [--runs N] [--builds B]
//
// The compiled CLI (dist/cli.js, `npm run build`) is what is measured; the script builds it when it is older than
// the sources. Both sides of a row start a fresh process every run (node's start-up counts on both sides of the
// first row; psql's connection set-up on the second).
import {execFile, execFileSync} from 'node:child_process';
import {promisify} from 'node:util';
import pg from 'pg';
import {freshDatabase} from '../test/support/pg.js';
import {insertJobset} from '../test/support/fixtures.js';
import {cliArgs} from '../test/support/cli.js';
import {initSchema} from '../source/db/schema.js';
import {FILTER_FROM} from '../source/db/filter.js';
import {intArg, printTable} from './table.js';

const execFileAsync = promisify(execFile);

const runs = intArg('--runs', 15);
const nBuilds = intArg('--builds', 10_000);

async function timeOnce(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const t0 = performance.now();
  await execFileAsync(file, args, {env, maxBuffer: 16 << 20});
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  let cli = cliArgs();
  if (cli[0] === '--import') {
    console.log('dist/cli.js is older than the sources: building it (npm run build)');
    execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], {cwd: new URL('../', import.meta.url).pathname, stdio: 'inherit'});
    cli = [new URL('../dist/cli.js', import.meta.url).pathname];
  }
  const db = await freshDatabase('bench_cli');
  const pool = new pg.Pool({connectionString: db.url, max: 2});
  try {
    await initSchema(pool);
    const jobset = await insertJobset(pool, {name: 'cli'});
    await pool.query(
      `INSERT INTO Builds (finished, timestamp, jobset_id, job, nixName, drvPath, system, maxsilent, timeout, isCurrent, priority, globalPriority)
       SELECT 0, 1700000000 + g, $1, 'job-' || (g % 500), 'pkg-' || g, '/nix/store/' || lpad(g::text, 32, 'a') || '-pkg.drv', 'x86_64-linux', 7200, 36000, 1, 100, 0
       FROM generate_series(1, $2::int) g`,
      [jobset.id, nBuilds],
    );
    await pool.query('ANALYZE');
    // The query `builds --json --limit 20` runs (source/db/queries/builds.ts listBuilds), as psql runs it.
    const columns = `b.id, b.finished, b.timestamp, b.jobset_id, j.project, j.name AS jobset, b.job, b.nixname,
      b.description, b.drvpath, b.system, b.license, b.homepage, b.maintainers, b.maxsilent, b.timeout, b.ischannel,
      b.iscurrent, b.priority, b.globalpriority, b.starttime, b.stoptime, b.iscachedbuild, b.buildstatus,
      b.size::float8 AS size, b.closuresize::float8 AS closuresize, b.releasename, b.keep, b.notificationpendingsince`;
    const sql = `SELECT ${columns} FROM ${FILTER_FROM.builds} ORDER BY b.id DESC LIMIT 21`;
    const env = {...process.env, HYDRA_DATABASE_URL: db.url, HYDRA_OPS_CONFIG_DIR: '/nonexistent-hydra-ops-settings'};
    const check = await execFileAsync(process.execPath, [...cli, 'builds', '--json', '--limit', '20'], {env, maxBuffer: 16 << 20});
    const listed = (JSON.parse(check.stdout) as {builds: unknown[]}).builds.length;
    if (listed !== 20) throw new Error(`hydra-ops builds listed ${listed} builds, expected 20`);
    const t = {node: [] as number[], version: [] as number[], builds: [] as number[], psql: [] as number[]};
    for (let i = 0; i < runs; i++) {
      t.node.push(await timeOnce(process.execPath, ['-e', '0'], env));
      t.version.push(await timeOnce(process.execPath, [...cli, '--version'], env));
      t.builds.push(await timeOnce(process.execPath, [...cli, 'builds', '--json', '--limit', '20'], env));
      t.psql.push(await timeOnce('psql', [db.url, '-X', '-q', '-A', '-c', sql], env));
    }
    console.log(`${runs} runs each, alternating; load average ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    printTable('CLI start-up (medians)', 'peer', [
      {figure: '`hydra-ops --version` vs `node -e 0`', ours: median(t.version), peer: median(t.node), unit: 'ms', digits: 0},
      {figure: `\`builds --json --limit 20\` vs psql (${nBuilds} builds)`, ours: median(t.builds), peer: median(t.psql), unit: 'ms', digits: 0},
    ]);
  } finally {
    await pool.end().catch(() => {});
    await db.drop().catch(() => {});
  }
}

await main();
