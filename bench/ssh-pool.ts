// Wall time of N trivial remote commands (`true`) through one persistent pooled SSH connection
// versus a fresh SSH connection per command, against a real loopback sshd builder.
//
//   node --import tsx bench/ssh-pool.ts [count]
import {readFileSync} from 'node:fs';
import {startFleet} from '../test/support/fleet.js';
import {parseMachinesText} from '../source/fleet/machines-file.js';
import {SshConnectionPool} from '../source/fleet/ssh-transport.js';

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 50);
  const fleet = await startFleet(1);
  try {
    const {machines, errors} = parseMachinesText(readFileSync(fleet.machinesFile, 'utf8'), fleet.machinesFile);
    if (errors.length > 0 || !machines[0]) throw new Error(errors.map((e) => e.message).join('\n'));
    const machine = machines[0];

    // Warm-up (sshd start-up, page cache), not measured.
    const warm = new SshConnectionPool({knownHostsFiles: []});
    await warm.run(machine, ['true']);
    warm.closeAll();

    const pooled = new SshConnectionPool({knownHostsFiles: []});
    let t0 = performance.now();
    for (let i = 0; i < count; i++) {
      const r = await pooled.run(machine, ['true']);
      if (r.code !== 0) throw new Error(`pooled exec ${i} exited with ${r.code}`);
    }
    const pooledMs = performance.now() - t0;
    const pooledConnections = pooled.connectionsOpened(machine);
    pooled.closeAll();

    let freshConnections = 0;
    t0 = performance.now();
    for (let i = 0; i < count; i++) {
      const fresh = new SshConnectionPool({knownHostsFiles: []});
      const r = await fresh.run(machine, ['true']);
      if (r.code !== 0) throw new Error(`fresh exec ${i} exited with ${r.code}`);
      freshConnections += fresh.connectionsOpened(machine);
      fresh.closeAll();
    }
    const freshMs = performance.now() - t0;

    const fmt = (ms: number) => `${ms.toFixed(0)} ms total, ${(ms / count).toFixed(1)} ms per exec`;
    console.log(`${count} x 'true' on ${machine.uri}`);
    console.log(`  persistent connection (${pooledConnections} opened): ${fmt(pooledMs)}`);
    console.log(`  fresh connection each  (${freshConnections} opened): ${fmt(freshMs)}`);
    console.log(`  ratio fresh/persistent: ${(freshMs / pooledMs).toFixed(1)}x`);
  } finally {
    await fleet.stop();
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
