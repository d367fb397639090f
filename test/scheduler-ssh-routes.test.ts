// Scheduled steps on builders reached as OpenSSH reaches them, end to end: the queue runner (real PostgreSQL, real
// Nix, real sshd builders) builds a two-step chain on a builder named only by an alias of the SSH configuration
// (resolved with ssh -G), then on a builder reachable only through a bastion (ProxyJump). The connection-level
// behaviour (pins, agent keys, certificates) is covered in fleet-ssh-openssh.test.ts.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {runnerRig, mkPrelude, type RunnerRig} from './support/runner-rig.js';
import {sshConfigText} from './support/ssh-config.js';
import {defaultRunnerSettings} from '../source/config/hydra-conf.js';
import {parseMachinesText, type MachineSpec} from '../source/fleet/machines-file.js';
import {FleetExecutor} from '../source/fleet/step-runner.js';
import {SshConnectionPool} from '../source/fleet/ssh-transport.js';
import {readDrv, outputPathMap} from '../source/nix/drv.js';
import {queryValidPaths} from '../source/nix/store.js';

function machine(line: string): MachineSpec {
  const parsed = parseMachinesText(line + '\n', 'routes');
  assert.deepEqual(parsed.errors, []);
  return parsed.machines[0]!;
}

/** Builds `app` (which needs `lib`) on `spec` only, through `pool`; returns the step rows of the app's build. */
async function buildChainOn(rig: RunnerRig, spec: MachineSpec, pool: SshConnectionPool, name: string) {
  const [app] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)}
    let lib = mk "${name}-lib" [] "echo ${name} > $out";
    in [ (mk "${name}-app" [lib] "cat \${lib} > $out") ]`);
  const executor = new FleetExecutor({sshPool: pool});
  try {
    const [id] = await rig.queue([app!]);
    const s = rig.scheduler({executor, runner: {...defaultRunnerSettings(), gcRootsDir: join(rig.dataDir, 'gcroots')}, maxTries: 1});
    await s.start();
    s.setMachines([spec]);
    s.requestScan();
    const row = (await rig.waitFinished([id!], 120_000)).get(id!)!;
    await s.stop(2000);
    const {rows: steps} = await rig.pool.query('SELECT drvpath, status, machine, errormsg FROM BuildSteps WHERE build = $1 ORDER BY stepnr', [id]);
    assert.equal(row.buildstatus, 0, JSON.stringify(steps));
    const out = outputPathMap(await readDrv(app!)).get('out')!;
    assert.equal((await queryValidPaths([out])).size, 1, 'the output came back to the coordinator');
    return steps as Array<{drvpath: string; status: number; machine: string}>;
  } finally {
    await executor.close();
  }
}

test('scheduled steps build on a builder named only by an SSH alias (ssh -G) and on one behind a bastion (ProxyJump)', {timeout: 300_000}, async () => {
  const rig = await runnerRig({builders: 2, label: 'ssh_routes', fleet: {privateNetwork: [1]}});
  const pools: SshConnectionPool[] = [];
  try {
    const fleet = rig.fleet!;
    const [open, hidden] = fleet.builders as [typeof fleet.builders[0], typeof fleet.builders[0]];
    const bastion = await fleet.startBastion(1);
    const knownHosts = join(fleet.dir, 'routes_known_hosts');
    writeFileSync(knownHosts, `[127.0.0.1]:${open.port} ${open.hostKeyLine}\n[127.0.0.1]:${bastion.port} ${bastion.hostKeyLine}\n[127.0.0.1]:${hidden.port} ${hidden.hostKeyLine}\n`);
    const config = join(fleet.dir, 'routes_ssh_config');
    writeFileSync(
      config,
      sshConfigText([
        {alias: 'farm-alias', port: open.port, identityFile: fleet.clientKey, knownHosts},
        {alias: 'jump-box', port: bastion.port, identityFile: bastion.clientKey, knownHosts},
        {alias: 'hidden-builder', port: hidden.port, identityFile: fleet.clientKey, knownHosts, proxyJump: 'jump-box'},
      ]),
    );
    const pool = (file: string) => {
      const p = new SshConnectionPool({connectTimeoutMs: 10_000, sshConfigFile: file});
      pools.push(p);
      return p;
    };

    // The alias: no column 3, no port, no user, no host key in the machine line; all of it from the configuration.
    const alias = machine(`ssh://farm-alias ${rig.localSystem} - 1 1 - - -`);
    const viaAlias = await buildChainOn(rig, alias, pool(config), 'via-alias');
    assert.equal(viaAlias.length, 2, 'both steps were built there');
    for (const st of viaAlias) assert.deepEqual([st.status, st.machine], [0, 'ssh://farm-alias']);

    // Without the configuration the same machine line reaches nothing: the build fails (one try) as a transport error.
    const [lost] = await rig.nix.instantiate(`${mkPrelude(rig.nix.nonce)} [ (mk "no-alias" [] "echo x > $out") ]`);
    const executor = new FleetExecutor({sshPool: pool('/dev/null')});
    try {
      const [id] = await rig.queue([lost!]);
      const s = rig.scheduler({executor, runner: {...defaultRunnerSettings(), gcRootsDir: join(rig.dataDir, 'gcroots')}, maxTries: 1});
      await s.start();
      s.setMachines([alias]);
      s.requestScan();
      assert.equal((await rig.waitFinished([id!], 60_000)).get(id!)!.buildstatus, 3);
      await s.stop(2000);
      const {rows} = await rig.pool.query('SELECT errormsg FROM BuildSteps WHERE build = $1', [id]);
      assert.match(rows[0].errormsg, /farm-alias/);
    } finally {
      await executor.close();
    }

    // The bastion: the builder's port is not reachable from here, only from the bastion.
    const before = bastion.connections();
    const behind = machine(`ssh://hidden-builder ${rig.localSystem} - 2 1 - - -`);
    const viaJump = await buildChainOn(rig, behind, pool(config), 'via-jump');
    assert.equal(viaJump.length, 2);
    for (const st of viaJump) assert.deepEqual([st.status, st.machine], [0, 'ssh://hidden-builder']);
    assert.equal(bastion.connections() - before, 1, 'every step went over one pooled bastion connection');
  } finally {
    for (const p of pools) p.closeAll();
    await rig.close();
  }
});
