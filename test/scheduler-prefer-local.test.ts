// preferLocalBuild as Nix and Hydra read it (Nix's canBuildLocally): real derivations instantiated in the
// coordinator's store, loaded into the step graph under different local Nix settings, and the implicit localhost.
import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {nixFixture, type NixFixture} from './support/nix-fixtures.js';
import {readDrv} from '../source/nix/drv.js';
import {queryValidPaths} from '../source/nix/store.js';
import {implicitLocalhostFrom, localNixSettings, type LocalNixSettings} from '../source/fleet/machines-file.js';
import {StepGraph} from '../source/scheduler/graph.js';
import {supportsStep} from '../source/scheduler/machines.js';
import {Build, Jobset} from '../source/scheduler/model.js';

let fx: NixFixture | undefined;
after(async () => fx?.cleanup());

test('preferLocalBuild counts only where local Nix could build it: extra-platforms, max-jobs 0, system features', {timeout: 60_000}, async () => {
  fx = await nixFixture('prefer_local');
  const local = await localNixSettings();
  const other = local.system === 'aarch64-linux' ? 'riscv64-linux' : 'aarch64-linux';
  const mk = (name: string, system: string, extra = '') =>
    `(derivation { name = "${name}"; system = ${system}; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; nonce = "${fx!.nonce}"; preferLocalBuild = true; ${extra} })`;
  const [plain, foreign, featured] = await fx.instantiate(
    `[ ${mk('prefer-plain', 'builtins.currentSystem')} ${mk('prefer-foreign', `"${other}"`)} ${mk('prefer-featured', 'builtins.currentSystem', 'requiredSystemFeatures = [ "big-parallel" ];')} ]`,
  );
  const store = {readDrv, validPaths: (p: string[]) => queryValidPaths(p), failedPathsAmong: async () => []};
  const jobset = new Jobset(1, 'p', 'j', 100);
  const preferLocal = async (settings: Omit<LocalNixSettings, 'system'>, drvPath: string): Promise<boolean> => {
    const graph = new StepGraph(local.system, settings);
    const r = await graph.addBuild(new Build(1, jobset, 'job', drvPath, 3600, 36000, 0, 0, 0), store);
    assert.equal(r.kind, 'queued');
    return graph.steps.get(drvPath)!.preferLocal;
  };
  const base = {extraPlatforms: [], maxJobs: 2, systemFeatures: []};
  assert.equal(await preferLocal(base, plain!), true);
  assert.equal(await preferLocal({...base, maxJobs: 0}, plain!), false, 'max-jobs = 0: local Nix builds nothing');
  assert.equal(await preferLocal(base, foreign!), false);
  assert.equal(await preferLocal({...base, extraPlatforms: [other]}, foreign!), true, 'an extra platform builds locally');
  assert.equal(await preferLocal(base, featured!), false, 'a required feature the local Nix lacks');
  assert.equal(await preferLocal({...base, systemFeatures: ['big-parallel']}, featured!), true);

  // A machine whose mandatory feature is `local` takes exactly the steps that prefer local building.
  const graph = new StepGraph(local.system, {...base, maxJobs: 0});
  await graph.addBuild(new Build(2, jobset, 'job', plain!, 3600, 36000, 0, 0, 0), store);
  const localOnly = {...implicitLocalhostFrom({...local, extraPlatforms: []}), mandatoryFeatures: ['local'], supportedFeatures: ['local']};
  assert.equal(supportsStep(localOnly, graph.steps.get(plain!)!, local.system), false);

  // The implicit localhost lists the extra platforms local Nix builds.
  const implicit = implicitLocalhostFrom({system: 'x86_64-linux', extraPlatforms: ['i686-linux', 'aarch64-linux'], maxJobs: 0, systemFeatures: ['kvm']});
  assert.deepEqual(implicit.systems, ['i686-linux', 'x86_64-linux', 'aarch64-linux']);
  assert.equal(implicit.maxJobs, 0);
  assert.deepEqual(implicit.supportedFeatures, ['kvm']);
});
