// A Scheduler that is never started, filled by hand with jobsets, builds, steps, machines and
// running steps, so that every status document has content. It is stopped right away: a stopped
// scheduler never dispatches, so the state stays exactly as built here.
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import pg from 'pg';
import {freshDatabase, type TestDatabase} from './pg.js';
import {initSchema} from '../../source/db/schema.js';
import {Scheduler} from '../../source/scheduler/scheduler.js';
import {Build, Jobset, Step, propagatePriorities} from '../../source/scheduler/model.js';
import {systemType, type Derivation} from '../../source/nix/drv.js';
import {defaultRunnerSettings} from '../../source/config/hydra-conf.js';
import type {MachineSpec} from '../../source/fleet/machines-file.js';
import type {StepExecutor} from '../../source/fleet/step-api.js';
import {BUSY} from '../../source/db/runner-sql.js';
import type {ActiveStepInfo} from '../../source/daemon/status-common.js';
import {SlotLease} from '../../source/scheduler/slot-lease.js';

export const LOCAL_SYSTEM = 'x86_64-linux';

let counter = 0;
function hash(): string {
  counter++;
  return String(counter).padStart(32, '0').replace(/0/g, 'a').slice(0, 32);
}

export function makeStep(name: string, platform = LOCAL_SYSTEM, features: string[] = [], preferLocal = false): Step {
  const h = hash();
  const out = `/nix/store/${h.replace(/a/g, 'b')}-${name}`;
  const drv: Derivation = {
    outputs: new Map([['out', {path: out, hashAlgo: '', hash: ''}]]),
    inputDrvs: new Map(),
    inputSrcs: [],
    platform,
    builder: '/bin/sh',
    args: [],
    env: new Map(),
  };
  const drvPath = `/nix/store/${h}-${name}.drv`;
  const step = new Step(drvPath, drv, platform, features, preferLocal, false, systemType(drv, features, preferLocal), new Map([['out', out]]));
  step.created = true;
  return step;
}

export function machine(uri: string, host: string, o: Partial<MachineSpec> = {}): MachineSpec {
  return {
    uri,
    kind: uri === 'localhost' ? 'local' : 'ssh',
    host,
    port: undefined,
    user: uri === 'localhost' ? undefined : 'hydra',
    systems: [LOCAL_SYSTEM],
    maxJobs: 2,
    speedFactor: 1,
    supportedFeatures: [],
    mandatoryFeatures: [],
    file: '(test)',
    line: 1,
    ...o,
  };
}

export interface StatusFixture {
  db: TestDatabase;
  pool: pg.Pool;
  scheduler: Scheduler;
  now: number;
  steps: Record<'hello' | 'kernel' | 'app' | 'darwin' | 'compiling' | 'uploading' | 'retrying', Step>;
  close(): Promise<void>;
}

const fakeExecutor: StepExecutor = {
  run: () => Promise.reject(new Error('the status fixture never runs steps')),
  close: () => Promise.resolve(),
};

export async function statusFixture(label: string): Promise<StatusFixture> {
  const db = await freshDatabase(label);
  const pool = new pg.Pool({connectionString: db.url, max: 4});
  const dataDir = mkdtempSync(join(tmpdir(), 'hydra-ops-status-'));
  await initSchema(pool);
  const scheduler = new Scheduler({
    pool,
    connection: {connectionString: db.url},
    dataDir,
    runner: defaultRunnerSettings(),
    executor: fakeExecutor,
    localSystem: LOCAL_SYSTEM,
  });
  await scheduler.stop(0);
  const now = Date.now();
  const g = scheduler.graph;

  const trunk = new Jobset(1, 'nixpkgs', 'trunk', 100);
  trunk.charge(-1, Math.floor(now / 1000) - 600, 3600);
  const main = new Jobset(2, 'hydra', 'main"quoted\\', 50);
  g.jobsets.set(trunk.id, trunk);
  g.jobsets.set(main.id, main);

  const steps = {
    hello: makeStep('hello'),
    kernel: makeStep('linux-6.1', LOCAL_SYSTEM, ['big-parallel']),
    app: makeStep('app'),
    darwin: makeStep('darwin-tool', 'aarch64-darwin'),
    compiling: makeStep('gcc'),
    uploading: makeStep('vm-test', LOCAL_SYSTEM, ['kvm']),
    retrying: makeStep('flaky'),
  };
  // app waits for hello.
  steps.app.deps.add(steps.hello);
  steps.hello.rdeps.add(steps.app);
  for (const s of Object.values(steps)) g.steps.set(s.drvPath, s);
  for (const s of [steps.hello, steps.kernel, steps.darwin, steps.retrying]) {
    s.runnableSince = now - 120_000;
    s.lastSupported = now;
    g.runnable.add(s);
  }
  steps.retrying.tries = 1;
  steps.retrying.after = now + 60_000;
  steps.retrying.lastError = 'error: connection reset by peer';
  steps.compiling.running = true;
  steps.uploading.running = true;

  const builds: Array<[number, Jobset, string, Step, number]> = [
    [101, trunk, 'app', steps.app, 0],
    [102, trunk, 'linux', steps.kernel, 10],
    [103, main, 'darwin-tool', steps.darwin, 0],
    [104, main, 'gcc', steps.compiling, 0],
    [105, trunk, 'vm-test', steps.uploading, 0],
    [106, trunk, 'flaky', steps.retrying, 0],
  ];
  for (const [id, jobset, job, step, prio] of builds) {
    const b = new Build(id, jobset, job, step.drvPath, 3600, 36000, Math.floor(now / 1000) - 3600, prio, 0);
    b.toplevel = step;
    step.builds.add(b);
    g.builds.set(id, b);
    propagatePriorities(b);
  }

  scheduler.setMachines([
    machine('ssh://hydra@builder1', 'builder1', {maxJobs: 2, speedFactor: 2}),
    machine('ssh://hydra@builder2', 'builder2', {maxJobs: 1, supportedFeatures: ['kvm'], systems: [LOCAL_SYSTEM, 'i686-linux']}),
    machine('localhost', 'localhost', {maxJobs: 4}),
    machine('ssh://root@127.0.0.1:2201', '127.0.0.1', {port: 2201}),
    machine('ssh://root@127.0.0.1:2202', '127.0.0.1', {port: 2202}),
    machine('ssh://hydra@old-builder', 'old-builder'),
  ]);
  // A reload without old-builder: it stays for statistics, unlisted.
  scheduler.setMachines([...scheduler.machines.values()].map((m) => m.spec).filter((m) => m.host !== 'old-builder'));

  const m1 = scheduler.machines.get('ssh://hydra@builder1')!;
  const m2 = scheduler.machines.get('ssh://hydra@builder2')!;
  const local = scheduler.machines.get('localhost')!;
  const old = scheduler.machines.get('ssh://hydra@old-builder')!;
  m1.rt.currentJobs = 1;
  m1.rt.lastUsed = now - 30_000;
  m1.rt.nrStepsDone = 4;
  m1.rt.totalStepTimeMs = 400_000;
  m1.rt.totalStepBuildTimeMs = 300_000;
  m2.rt.currentJobs = 1;
  m2.rt.lastUsed = now - 90_000;
  m2.rt.consecutiveFailures = 2;
  m2.rt.lastFailure = now - 10_000;
  m2.rt.disabledUntil = now + 170_000;
  m2.rt.lastError = 'ssh: connect to host builder2 port 22: Connection refused';
  m2.rt.lastErrorAt = now - 10_000;
  local.rt.drained = true;
  old.rt.nrStepsDone = 1;
  old.rt.totalStepTimeMs = 5000;
  old.rt.totalStepBuildTimeMs = 4000;
  old.rt.lastUsed = now - 7200_000;

  const activeStep = (step: Step, m: typeof m1, build: number, phase: number): ActiveStepInfo => ({
    step,
    machine: m,
    build,
    stepnr: 1,
    phase,
    startedAt: now - 60_000,
    phaseSince: now - 20_000,
    controller: new AbortController(),
    lease: new SlotLease(m),
  });
  scheduler.active.set(steps.compiling, activeStep(steps.compiling, m1, 104, BUSY.building));
  scheduler.active.set(steps.uploading, activeStep(steps.uploading, m2, 105, BUSY.sending));

  Object.assign(scheduler.stats, {
    nrBuildsRead: 6,
    buildReadTimeMs: 120,
    nrBuildsDone: 3,
    nrBuildsSucceeded: 2,
    nrBuildsFailed: 1,
    nrStepsStarted: 7,
    nrStepsDone: 5,
    nrRetries: 1,
    maxNrRetries: 1,
    nrQueueWakeups: 9,
    nrDispatcherWakeups: 12,
    dispatchTimeMs: 6.5,
    nrUnsupportedSteps: 2,
    totalStepTimeMs: 405_000,
    totalStepBuildTimeMs: 304_000,
    bytesSent: 1_000_000,
    bytesReceived: 2_000_000,
    queueChecksStarted: 3,
    queueChecksFinished: 3,
    queueBuildLoads: 6,
    queueStepsCreated: 7,
    dispatcherTimeSpentRunningUs: 6500,
    monitorTimeSpentRunningUs: 90_000,
    lastProgressAt: now - 600_000,
  });

  return {
    db,
    pool,
    scheduler,
    now,
    steps,
    async close() {
      await pool.end().catch(() => {});
      await db.drop();
      rmSync(dataDir, {recursive: true, force: true});
    },
  };
}
