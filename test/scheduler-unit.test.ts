// Unit tests of the scheduler's pure parts, with in-memory derivations: the step graph (building, sharing,
// cached results, release), the dispatcher's order and machine choice, and the slot lease. No PostgreSQL, no Nix.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import type {Derivation} from '../source/nix/drv.js';
import {StepGraph, type GraphStore} from '../source/scheduler/graph.js';
import {Build, Jobset, type Step} from '../source/scheduler/model.js';
import {assignSteps, capabilityKey, criticalPathLengths, lowestShareUsed, orderRunnable, sortRunnable} from '../source/scheduler/dispatcher.js';
import {newRuntime, type RunnerMachine} from '../source/scheduler/machines.js';
import {SlotLease} from '../source/scheduler/slot-lease.js';
import type {MachineSpec} from '../source/fleet/machines-file.js';

const SYSTEM = 'x86_64-linux';
const hash = (name: string) => name.padEnd(32, '0').slice(0, 32).replace(/[^a-z0-9]/g, '0');
const drvPath = (name: string) => `/nix/store/${hash(name)}-${name}.drv`;
const outPath = (name: string) => `/nix/store/${hash(`o${name}`)}-${name}`;

/** name → its inputs (names), with optional attributes. */
function fakeStore(defs: Record<string, {deps?: string[]; env?: Record<string, string>; system?: string}>, opts: {valid?: string[]; failed?: string[]} = {}): GraphStore & {reads: string[]} {
  const reads: string[] = [];
  const drvs = new Map<string, Derivation>();
  for (const [name, d] of Object.entries(defs)) {
    drvs.set(drvPath(name), {
      path: drvPath(name),
      outputs: new Map([['out', {path: outPath(name), hashAlgo: '', hash: ''}]]),
      inputDrvs: new Map((d.deps ?? []).map((dep) => [drvPath(dep), ['out']])),
      inputSrcs: [],
      platform: d.system ?? SYSTEM,
      builder: '/bin/sh',
      args: [],
      env: new Map(Object.entries({name, ...(d.env ?? {})})),
    });
  }
  const valid = new Set((opts.valid ?? []).map(outPath));
  const failed = new Set((opts.failed ?? []).map(outPath));
  return {
    reads,
    async readDrv(p) {
      reads.push(p);
      const d = drvs.get(p);
      if (!d) throw Object.assign(new Error(`${p}: No such file or directory`), {code: 'ENOENT'});
      return d;
    },
    async validPaths(paths) {
      return new Set(paths.filter((p) => valid.has(p)));
    },
    async failedPathsAmong(paths) {
      return paths.filter((p) => failed.has(p));
    },
  };
}

const jobset = new Jobset(1, 'p', 'j', 100);
let nextId = 1;
const build = (top: string, o: {id?: number; globalPriority?: number; localPriority?: number; jobset?: Jobset} = {}) =>
  new Build(o.id ?? nextId++, o.jobset ?? jobset, top, drvPath(top), 3600, 36000, 0, o.globalPriority ?? 0, o.localPriority ?? 0);

const names = (steps: Iterable<Step>) => [...steps].map((s) => s.name).sort();

test('graph: a build becomes steps for its unbuilt derivations; only leaves are runnable; shared steps are shared', async () => {
  const store = fakeStore({a: {}, b: {deps: ['a']}, c: {deps: ['a', 'b']}, d: {deps: ['a']}});
  const g = new StepGraph(SYSTEM);
  const r1 = await g.addBuild(build('c'), store);
  assert.equal(r1.kind, 'queued');
  assert.deepEqual(names(g.steps.values()), ['a', 'b', 'c']);
  assert.deepEqual(names(g.runnable), ['a']);
  const c = g.steps.get(drvPath('c'))!;
  assert.deepEqual(names(c.deps), ['a', 'b']);
  // A second build sharing `a` reuses the step (and does not read `a` again).
  store.reads.length = 0;
  const r2 = await g.addBuild(build('d'), store);
  assert.equal(r2.kind, 'queued');
  assert.deepEqual(store.reads, [drvPath('d')]);
  assert.equal(g.steps.get(drvPath('a'))!.rdeps.size, 3);
  // A build of an already known top level attaches to its step.
  const again = await g.addBuild(build('c'), store);
  assert.equal(again.kind, 'queued');
  assert.deepEqual(again.kind === 'queued' && [again.newSteps, again.newRunnable], [[], []]);
  assert.equal(c.builds.size, 2);
});

test('graph: valid outputs are not steps and stop the walk; failed paths and missing derivations are results', async () => {
  const g = new StepGraph(SYSTEM);
  const store = fakeStore({a: {}, b: {deps: ['a']}, c: {deps: ['b']}}, {valid: ['b']});
  await g.addBuild(build('c'), store);
  assert.deepEqual(names(g.steps.values()), ['c']);
  assert.ok(!store.reads.includes(drvPath('a')), 'never descends below a valid derivation');
  assert.deepEqual(names(g.runnable), ['c']);

  assert.equal((await new StepGraph(SYSTEM).addBuild(build('a'), fakeStore({a: {}}, {valid: ['a']}))).kind, 'cached-success');
  const failed = await new StepGraph(SYSTEM).addBuild(build('b'), fakeStore({a: {}, b: {deps: ['a']}}, {failed: ['a']}));
  assert.equal(failed.kind, 'cached-failure');
  assert.equal(failed.kind === 'cached-failure' && failed.toplevel, false);
  // A missing top-level derivation aborts the build; a missing input derivation fails only this load (retried).
  assert.equal((await new StepGraph(SYSTEM).addBuild(build('a'), fakeStore({}))).kind, 'missing-drv');
  await assert.rejects(new StepGraph(SYSTEM).addBuild(build('b'), fakeStore({b: {deps: ['a']}})), /cannot read .*-a\.drv/);
});

test('graph: completing a step wakes its parents; dropping builds releases exactly the steps no build needs', async () => {
  const g = new StepGraph(SYSTEM);
  const store = fakeStore({a: {}, b: {deps: ['a']}, c: {deps: ['b']}, x: {deps: ['a']}});
  const bc = build('c');
  const bx = build('x');
  await g.addBuild(bc, store);
  await g.addBuild(bx, store);
  const a = g.steps.get(drvPath('a'))!;
  assert.deepEqual(names(g.completeStep(a)), ['b', 'x']);
  assert.ok(!g.steps.has(drvPath('a')));
  assert.deepEqual(names(g.runnable), ['b', 'x']);
  g.dropBuilds([bc.id]);
  assert.deepEqual(names(g.steps.values()), ['x'], 'b and c belonged to the dropped build only');
  assert.deepEqual(names(g.runnable), ['x']);
  assert.equal(g.builds.has(bc.id), false);
  g.dropBuilds([bx.id]);
  assert.equal(g.steps.size, 0);
  assert.equal(g.runnable.size, 0);
});

test('graph: priorities and jobsets propagate to every step of a build', async () => {
  const g = new StepGraph(SYSTEM);
  const store = fakeStore({a: {}, b: {deps: ['a']}, c: {deps: ['a']}});
  const other = new Jobset(2, 'p', 'k', 100);
  await g.addBuild(build('b', {id: 50, globalPriority: 5, localPriority: 1}), store);
  await g.addBuild(build('c', {id: 40, globalPriority: 9, localPriority: 3, jobset: other}), store);
  const a = g.steps.get(drvPath('a'))!;
  assert.equal(a.highestGlobalPriority, 9);
  assert.equal(a.highestLocalPriority, 3);
  assert.equal(a.lowestBuildId, 40);
  assert.equal(a.jobsets.size, 2);
  assert.equal(g.steps.get(drvPath('b'))!.highestGlobalPriority, 5);
});

/** Steps straight from a graph: leaves of independent builds with the given attributes. */
async function leaves(specs: Array<{name: string; globalPriority?: number; localPriority?: number; id?: number; jobset?: Jobset; env?: Record<string, string>; system?: string; parents?: number}>): Promise<Map<string, Step>> {
  const defs: Record<string, {deps?: string[]; env?: Record<string, string>; system?: string}> = {};
  for (const s of specs) {
    defs[s.name] = {env: s.env, system: s.system};
    for (let i = 0; i < (s.parents ?? 0); i++) defs[`${s.name}-parent${i}`] = {deps: [s.name]};
  }
  const store = fakeStore(defs);
  const g = new StepGraph(SYSTEM);
  for (const s of specs) {
    await g.addBuild(build(s.name, {id: s.id, globalPriority: s.globalPriority, localPriority: s.localPriority, jobset: s.jobset}), store);
    for (let i = 0; i < (s.parents ?? 0); i++) await g.addBuild(build(`${s.name}-parent${i}`, {id: (s.id ?? 1000) + i + 1, jobset: s.jobset}), store);
  }
  return new Map([...g.runnable].map((s) => [s.name, s]));
}

test('dispatch order: global priority, then share used, then reverse dependencies, local priority, lowest build id', async () => {
  const busy = new Jobset(3, 'p', 'busy', 100);
  busy.charge(1, Math.floor(Date.now() / 1000), 10_000);
  const steps = await leaves([
    {name: 'low', id: 1},
    {name: 'bumped', id: 2, globalPriority: 10},
    {name: 'busyjobset', id: 3, jobset: busy},
    {name: 'popular', id: 4, parents: 2},
    {name: 'local', id: 5, localPriority: 7},
    {name: 'older', id: 0},
  ]);
  const order = sortRunnable([...steps.values()]).map((s) => s.name);
  assert.deepEqual(order, ['bumped', 'popular', 'local', 'older', 'low', 'busyjobset']);
});

test('dispatch order: the lazy heap order equals a stable sort by the dispatch keys, ties included', () => {
  let seed = 7;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  const shares = [0, 0.5, 2].map((shareUsed) => ({shareUsed}));
  const steps = Array.from({length: 3000}, (_, i) => ({
    i,
    highestGlobalPriority: rnd(3),
    jobsets: new Set([shares[rnd(3)]!]),
    rdeps: new Set(Array.from({length: rnd(3)}, (_, k) => k)),
    highestLocalPriority: rnd(2),
    lowestBuildId: rnd(50),
  })) as unknown as Step[];
  const expected = [...steps].sort(
    (a, b) =>
      b.highestGlobalPriority - a.highestGlobalPriority ||
      lowestShareUsed(a) - lowestShareUsed(b) ||
      b.rdeps.size - a.rdeps.size ||
      b.highestLocalPriority - a.highestLocalPriority ||
      a.lowestBuildId - b.lowestBuildId,
  );
  const got = [...orderRunnable(steps)];
  assert.equal(got.length, steps.length);
  assert.deepEqual(got.map((s) => (s as unknown as {i: number}).i), expected.map((s) => (s as unknown as {i: number}).i));
  // Taking only the first few pops gives the same prefix.
  const it = orderRunnable(steps);
  const first = Array.from({length: 10}, () => it.next().value as Step);
  assert.deepEqual(first, expected.slice(0, 10));
});

test('dispatch order: critical path counts the longest chain waiting on a step', async () => {
  const store = fakeStore({a: {}, b: {deps: ['a']}, c: {deps: ['b']}, d: {deps: ['c']}, z: {}, y: {deps: ['z']}, w: {deps: ['z']}});
  const g = new StepGraph(SYSTEM);
  await g.addBuild(build('d'), store);
  await g.addBuild(build('y'), store);
  await g.addBuild(build('w'), store);
  const lengths = criticalPathLengths(g.runnable);
  const byName = new Map([...lengths].map(([s, n]) => [s.name, n]));
  assert.equal(byName.get('a'), 4);
  assert.equal(byName.get('z'), 2);
  assert.deepEqual(sortRunnable([...g.runnable], 'critical-path').map((s) => s.name), ['a', 'z']);
  assert.deepEqual(sortRunnable([...g.runnable], 'rdeps').map((s) => s.name), ['z', 'a'], 'z has two direct reverse dependencies');
});

function machine(uri: string, o: Partial<MachineSpec> = {}): RunnerMachine {
  const spec: MachineSpec = {
    uri,
    kind: 'ssh',
    host: uri.replace(/^ssh:\/\//, ''),
    port: undefined,
    user: undefined,
    systems: [SYSTEM],
    maxJobs: 1,
    speedFactor: 1,
    supportedFeatures: [],
    mandatoryFeatures: [],
    file: 'machines',
    line: 1,
    ...o,
  } as MachineSpec;
  return {spec, rt: newRuntime(0)};
}

test('machine choice: fastest free machine first, features and systems respected, each slot taken once', async () => {
  const steps = await leaves([
    {name: 's1', id: 1},
    {name: 's2', id: 2},
    {name: 'kvm', id: 3, env: {requiredSystemFeatures: 'kvm'}},
    {name: 'arm', id: 4, system: 'aarch64-linux'},
    {name: 's3', id: 5},
  ]);
  const fast = machine('ssh://fast', {speedFactor: 4, maxJobs: 1});
  const slow = machine('ssh://slow', {speedFactor: 1, maxJobs: 1});
  const kvm = machine('ssh://kvm', {supportedFeatures: ['kvm'], maxJobs: 1, speedFactor: 0.5});
  const sorted = sortRunnable([...steps.values()]);
  const got = assignSteps(sorted, [slow, kvm, fast], SYSTEM, Date.now());
  const where = new Map(got.map((a) => [a.step.name, a.machine.spec.uri]));
  assert.equal(where.get('s1'), 'ssh://fast');
  assert.equal(where.get('s2'), 'ssh://slow');
  // The kvm machine takes the kvm step, not s3 (no other machine could), and nothing takes the aarch64 step.
  assert.equal(where.get('kvm'), 'ssh://kvm');
  assert.equal(where.has('arm'), false);
  assert.equal(where.has('s3'), false, 'every x86_64 slot is taken');
  for (const m of [fast, slow, kvm]) assert.equal(m.rt.currentJobs, 1);
  for (const a of got) assert.equal(a.step.running, true);
  // The leases give each slot back exactly once.
  for (const a of got) {
    assert.equal(a.lease.release(), true);
    assert.equal(a.lease.release(), false);
  }
  for (const m of [fast, slow, kvm]) assert.equal(m.rt.currentJobs, 0);
});

test('machine choice: drained, backing-off and unusable machines get nothing; capability keys group alike steps', async () => {
  const steps = await leaves([{name: 'q1', id: 1}, {name: 'q2', id: 2}, {name: 'feat', id: 3, env: {requiredSystemFeatures: 'big'}}]);
  const drained = machine('ssh://drained');
  drained.rt.drained = true;
  const backing = machine('ssh://backing');
  backing.rt.consecutiveFailures = 1;
  backing.rt.disabledUntil = Date.now() + 60_000;
  const unusable = machine('ssh://unusable');
  unusable.rt.unusable = 'cannot write the store';
  assert.deepEqual(assignSteps(sortRunnable([...steps.values()]), [drained, backing, unusable], SYSTEM, Date.now()), []);
  assert.equal(capabilityKey(steps.get('q1')!), capabilityKey(steps.get('q2')!));
  assert.notEqual(capabilityKey(steps.get('q1')!), capabilityKey(steps.get('feat')!));
});

test('slot lease: take counts a slot, release gives it back once and marks the machine idle', () => {
  const m = machine('ssh://m', {maxJobs: 2});
  const a = SlotLease.take(m);
  const b = SlotLease.take(m);
  assert.equal(m.rt.currentJobs, 2);
  assert.equal(a.release(100), true);
  assert.equal(a.released, true);
  assert.equal(m.rt.currentJobs, 1);
  assert.equal(a.release(200), false);
  assert.equal(m.rt.currentJobs, 1);
  assert.equal(b.release(300), true);
  assert.equal(m.rt.currentJobs, 0);
  assert.equal(m.rt.idleSince, 300);
});
