// Wall time of N trivial build steps run through FleetExecutor on one loopback sshd builder: all steps over one
// persistent pooled SSH connection, versus a fresh SSH connection per step (a new pool per step, closed after).
// Each step is a distinct tiny derivation, so every step really connects, builds and copies its output back.
// The two variants alternate step by step (fair under changing machine load); a fresh pool's time includes
// its SSH connection set-up, which falls into the 'connecting' phase.
//
//   node --import tsx bench/step-dispatch.ts [count]
import {readFileSync} from 'node:fs';
import {join} from 'node:path';
import {startFleet} from '../test/support/fleet.js';
import {nixFixture, type NixFixture} from '../test/support/nix-fixtures.js';
import {parseMachinesText, type MachineSpec} from '../source/fleet/machines-file.js';
import {SshConnectionPool} from '../source/fleet/ssh-transport.js';
import {FleetExecutor} from '../source/fleet/step-runner.js';
import type {StepPhase} from '../source/fleet/step-api.js';
import {readDrv} from '../source/nix/drv.js';
import {drvLogBucketPath} from '../source/nix/store.js';

const PHASES: StepPhase[] = ['connecting', 'sending', 'building', 'receiving', 'postprocessing'];

async function derivations(fx: NixFixture, label: string, count: number): Promise<string[]> {
  const attrs = Array.from(
    {length: count},
    (_, i) =>
      `s${String(i).padStart(4, '0')} = derivation { name = "bench-${label}-${i}"; system = builtins.currentSystem; ` +
      `builder = "/bin/sh"; args = [ "-c" "echo ${i} > $out" ]; nonce = "${fx.nonce}"; };`,
  );
  return fx.instantiate(`{ ${attrs.join(' ')} }`);
}

interface Timing {
  totalMs: number;
  connections: number;
  phaseMs: Map<StepPhase, number>;
}

function newTiming(): Timing {
  return {totalMs: 0, connections: 0, phaseMs: new Map()};
}

/** Run one step, adding its wall time (and per-phase times; closing counts to the last phase) to `into`. */
async function runStep(drvPath: string, machine: MachineSpec, fx: NixFixture, pool: SshConnectionPool, into: Timing): Promise<void> {
  const executor = new FleetExecutor({sshPool: pool, localStoreIsDestination: true});
  const t0 = performance.now();
  let last = t0;
  let current: StepPhase | undefined;
  const mark = (next: StepPhase | undefined) => {
    const now = performance.now();
    if (current) into.phaseMs.set(current, (into.phaseMs.get(current) ?? 0) + now - last);
    current = next;
    last = now;
  };
  const r = await executor.run({
    machine,
    drvPath,
    drv: await readDrv(drvPath),
    maxSilentTime: 60,
    buildTimeout: 60,
    maxLogSize: 1 << 20,
    maxOutputSize: 0,
    logPath: drvLogBucketPath(join(fx.dir, 'data'), drvPath),
    signal: new AbortController().signal,
    onPhase: (phase) => mark(phase),
  });
  mark(undefined);
  into.totalMs += performance.now() - t0;
  if (r.status !== 0) throw new Error(`step ${drvPath} ended with status ${r.status}: ${r.errorMsg ?? ''}`);
  for (const o of r.outputs.values()) fx.track(o.path);
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 50);
  if (!Number.isInteger(count) || count < 1) throw new Error(`count must be a positive integer, got '${process.argv[2]}'`);
  const [fleet, fx] = await Promise.all([startFleet(1), nixFixture('bench-dispatch')]);
  try {
    const {machines, errors} = parseMachinesText(readFileSync(fleet.machinesFile, 'utf8'), fleet.machinesFile);
    if (errors.length > 0 || !machines[0]) throw new Error(errors.map((e) => e.message).join('\n'));
    const machine = machines[0];
    const [warm, pooledDrvs, freshDrvs] = [await derivations(fx, 'warm', 3), await derivations(fx, 'pooled', count), await derivations(fx, 'fresh', count)];

    // Warm-up (sshd start-up, the builder's store database, page cache), not measured.
    const warmPool = new SshConnectionPool({knownHostsFiles: []});
    for (const drv of warm) await runStep(drv, machine, fx, warmPool, newTiming());
    warmPool.closeAll();

    // The two variants alternate step by step, so that load changes on the machine hit both alike.
    const shared = new SshConnectionPool({knownHostsFiles: []});
    const pooled = newTiming();
    const fresh = newTiming();
    for (let i = 0; i < count; i++) {
      await runStep(pooledDrvs[i]!, machine, fx, shared, pooled);
      const own = new SshConnectionPool({knownHostsFiles: []});
      try {
        await runStep(freshDrvs[i]!, machine, fx, own, fresh);
        fresh.connections += own.connectionsOpened(machine);
      } finally {
        own.closeAll();
      }
    }
    pooled.connections = shared.connectionsOpened(machine);
    shared.closeAll();

    const fmt = (t: Timing) => `${t.totalMs.toFixed(0)} ms total, ${(t.totalMs / count).toFixed(1)} ms per step`;
    const phases = (t: Timing) => PHASES.map((p) => `${p} ${((t.phaseMs.get(p) ?? 0) / count).toFixed(1)}`).join(', ');
    console.log(`${count} trivial steps on ${machine.uri}`);
    console.log(`  persistent connection (${pooled.connections} opened): ${fmt(pooled)}`);
    console.log(`    mean ms per phase: ${phases(pooled)}`);
    console.log(`  fresh connection each  (${fresh.connections} opened): ${fmt(fresh)}`);
    console.log(`    mean ms per phase: ${phases(fresh)}`);
    console.log(`  ratio fresh/persistent: ${(fresh.totalMs / pooled.totalMs).toFixed(2)}x`);
  } finally {
    await fleet.stop();
    await fx.cleanup();
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
