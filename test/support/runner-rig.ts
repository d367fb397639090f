// End-to-end rig for the queue runner: a fresh database with Hydra's schema, real derivations in
// the coordinator's store, real sshd builders with their own stores, and an in-process Scheduler
// using the real FleetExecutor.
import {mkdtempSync, chmodSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import pg from 'pg';
import {freshDatabase, type TestDatabase} from './pg.js';
import {startFleet, type Fleet, type FleetOptions} from './fleet.js';
import {nixFixture, type NixFixture} from './nix-fixtures.js';
import {insertJobset} from './fixtures.js';
import {initSchema} from '../../source/db/schema.js';
import {readDrv, outputPathMap} from '../../source/nix/drv.js';
import {implicitLocalhostFrom, loadMachinesFiles, localNixSettings, type MachineSpec} from '../../source/fleet/machines-file.js';
import {FleetExecutor} from '../../source/fleet/step-runner.js';
import {defaultRunnerSettings} from '../../source/config/hydra-conf.js';
import {Scheduler, type SchedulerOptions} from '../../source/scheduler/scheduler.js';

export interface RunnerRig {
  db: TestDatabase;
  pool: pg.Pool;
  dataDir: string;
  fleet: Fleet | null;
  nix: NixFixture;
  localSystem: string;
  machines: MachineSpec[];
  /** A `localhost` machine spec (builds in the coordinator's store). */
  localhost(maxJobs?: number): MachineSpec;
  executor: FleetExecutor;
  jobset(name?: string, shares?: number): Promise<{id: number; project: string; name: string}>;
  /** Queues one build per drv path (Builds + BuildOutputs rows, then NOTIFY builds_added). */
  queue(drvPaths: string[], opts?: {jobsetId?: number; jobs?: string[]; priority?: number; globalPriority?: number; maxsilent?: number; timeout?: number}): Promise<number[]>;
  scheduler(overrides?: Partial<SchedulerOptions>): Scheduler;
  /** Waits until every build is finished in the database; returns their rows keyed by id. */
  waitFinished(ids: number[], timeoutMs?: number): Promise<Map<number, {buildstatus: number; iscachedbuild: number; starttime: number; stoptime: number}>>;
  close(): Promise<void>;
}

/** Nix expression helper put in front of generated expressions: `mk name deps script`. */
export function mkPrelude(nonce: string): string {
  return `let
  mk = name: deps: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
    nonce = "${nonce}";
    PATH = "/usr/bin:/bin";
    deps = deps;
  };
in`;
}

export async function runnerRig(
  opts: {
    builders?: number;
    maxJobs?: number;
    label?: string;
    /** Further fleet options (e.g. storeSizeBytes). */
    fleet?: FleetOptions;
    /** An empty database to use instead of a fresh one on the test server (close() calls its drop()). */
    db?: TestDatabase;
  } = {},
): Promise<RunnerRig> {
  const label = opts.label ?? 'runner';
  const db = opts.db ?? (await freshDatabase(label));
  const pool = new pg.Pool({connectionString: db.url, max: 10});
  pool.on('error', () => {});
  await initSchema(pool);
  const dataDir = mkdtempSync(join(tmpdir(), `hydra-ops-${label}-data-`));
  chmodSync(dataDir, 0o755);
  const nix = await nixFixture(label);
  const fleet = opts.builders ? await startFleet(opts.builders, {...opts.fleet, maxJobs: opts.maxJobs ?? opts.fleet?.maxJobs ?? 1}) : null;
  const machines = fleet ? (await loadMachinesFiles([fleet.machinesFile])).machines : [];
  const localSystem = (await localNixSettings()).system;
  const executor = new FleetExecutor({localServe: {extraArgs: ['--option', 'build-users-group', '']}});
  const schedulers: Scheduler[] = [];
  let jobsetCounter = 0;
  const rig: RunnerRig = {
    db,
    pool,
    dataDir,
    fleet,
    nix,
    localSystem,
    machines,
    executor,
    localhost(maxJobs = 1) {
      return {...implicitLocalhostFrom({system: localSystem, maxJobs, systemFeatures: []}), systems: [localSystem], file: '(test)', line: 0};
    },
    async jobset(name, shares = 100) {
      const j = await insertJobset(pool, {name: name ?? `js${++jobsetCounter}`, schedulingShares: shares});
      return j;
    },
    async queue(drvPaths, o = {}) {
      const jobsetId = o.jobsetId ?? (await rig.jobset()).id;
      const ids: number[] = [];
      for (const [i, drvPath] of drvPaths.entries()) {
        const drv = await readDrv(drvPath);
        const name = drv.env.get('name') ?? 'job';
        const {rows} = await pool.query(
          `INSERT INTO Builds (finished, timestamp, jobset_id, job, nixName, drvPath, system, maxsilent, timeout, isCurrent, priority, globalPriority)
           VALUES (0, $1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10) RETURNING id`,
          [Math.floor(Date.now() / 1000), jobsetId, o.jobs?.[i] ?? name, name, drvPath, drv.platform, o.maxsilent ?? 7200, o.timeout ?? 36000, o.priority ?? 100, o.globalPriority ?? 0],
        );
        const id = rows[0].id as number;
        for (const [out, path] of outputPathMap(drv)) await pool.query('INSERT INTO BuildOutputs (build, name, path) VALUES ($1, $2, $3)', [id, out, path]);
        ids.push(id);
      }
      await pool.query("SELECT pg_notify('builds_added', $1)", [String(Math.min(...ids))]);
      return ids;
    },
    scheduler(overrides = {}) {
      const runner = defaultRunnerSettings();
      runner.gcRootsDir = join(dataDir, 'gcroots');
      const s = new Scheduler({
        pool,
        connection: {connectionString: db.url},
        dataDir,
        runner,
        executor,
        localSystem,
        retryIntervalMs: 500,
        machineBackoffMs: 60_000,
        pollMs: 500,
        ...overrides,
      });
      schedulers.push(s);
      return s;
    },
    async waitFinished(ids, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (true) {
        const {rows} = await pool.query(
          'SELECT id, finished, buildStatus AS buildstatus, isCachedBuild AS iscachedbuild, startTime AS starttime, stopTime AS stoptime FROM Builds WHERE id = ANY($1::int[])',
          [ids],
        );
        if (rows.length === ids.length && rows.every((r) => r.finished === 1)) return new Map(rows.map((r) => [r.id as number, r]));
        if (Date.now() > deadline) {
          const pending = rows.filter((r) => r.finished !== 1).map((r) => r.id);
          throw new Error(`builds not finished after ${timeoutMs} ms: ${pending.join(', ')}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async close() {
      for (const s of schedulers) await s.stop(2000).catch(() => {});
      await executor.close();
      await fleet?.stop();
      await pool.end();
      await db.drop();
      await nix.cleanup().catch(() => {});
      rmSync(dataDir, {recursive: true, force: true});
    },
  };
  return rig;
}
