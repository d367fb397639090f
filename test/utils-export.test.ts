// `hydra-ops export` into a file:// binary cache: importable by Nix 2.8 into an empty store, incremental, and
// `--gc` removes exactly what no exported set refers to.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {execa} from 'execa';
import pg from 'pg';
import {freshDatabase} from './support/pg.js';
import {nixFixture} from './support/nix-fixtures.js';
import {mkPrelude} from './support/runner-rig.js';
import {insertBuild, insertJobset} from './support/fixtures.js';
import {runCli} from './support/cli.js';
import {initSchema} from '../source/db/schema.js';
import {storePathHashPart} from '../source/nix/store-path.js';
import {exportClosure} from '../source/actions/export.js';
import {forgetSet, gcBinaryCache} from '../source/nix/binary-cache.js';
import {ActionError} from '../source/actions/errors.js';

/** Runs a shell script in a private mount namespace whose /nix is an empty tmpfs: a separate, empty store. */
function inEmptyStore(script: string, env: Record<string, string> = {}) {
  return execa('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs tmpfs /nix && ${script}`], {reject: false, env, stdin: 'ignore'});
}

test('export: runtime closure importable into an empty store, incremental, gc of unreferenced files', {timeout: 60_000}, async () => {
  const db = await freshDatabase('utils_export');
  const pool = new pg.Pool({connectionString: db.url});
  const nix = await nixFixture('utils-export');
  const cache = mkdtempSync(join(tmpdir(), 'hydra-ops-export-cache-'));
  const settings = mkdtempSync(join(tmpdir(), 'hydra-ops-export-settings-'));
  const env = {HYDRA_DATABASE_URL: db.url, HYDRA_OPS_CONFIG_DIR: settings};
  try {
    await initSchema(pool);
    const outs = await nix.build(`${mkPrelude(nix.nonce)}
      let dep = mk "dep" [] "echo dependency > $out";
      in [ (mk "appA" [dep] "echo \${dep} > $out") (mk "appB" [dep] "echo \${dep} > $out; echo b >> $out") ]`);
    const [outA, outB] = outs as [string, string];
    const dep = readFileSync(outA, 'utf8').trim();
    const drvOf = async (p: string) => (await execa('nix-store', ['--query', '--deriver', p])).stdout.trim();
    const js = await insertJobset(pool);
    const a = await insertBuild(pool, {jobsetId: js.id, job: 'appA', finished: 1, drvPath: await drvOf(outA), outputs: {out: outA}});
    const b = await insertBuild(pool, {jobsetId: js.id, job: 'appB', finished: 1, drvPath: await drvOf(outB), outputs: {out: outB}});

    const first = await runCli(['export', String(a), '--to', cache, '--json'], env);
    assert.equal(first.code, 0, first.stderr);
    const r1 = JSON.parse(first.stdout).export;
    assert.equal(r1.set, `build-${a}-runtime`);
    assert.equal(r1.paths, 2);
    assert.deepEqual([...r1.writtenPaths].sort(), [dep, outA].sort(), 'dependencies first is not required, but both are written');
    assert.equal(r1.writtenPaths[0], dep, 'the dependency is written first');
    assert.equal(readFileSync(join(cache, 'nix-cache-info'), 'utf8'), 'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n');
    const narinfo = readFileSync(join(cache, `${storePathHashPart(outA)}.narinfo`), 'utf8');
    assert.match(narinfo, new RegExp(`^StorePath: ${outA}$`, 'm'));
    assert.match(narinfo, /^URL: nar\/[0-9a-z]{52}\.nar\.xz$/m);
    assert.match(narinfo, /^Compression: xz$/m);
    assert.match(narinfo, new RegExp(`^References: ${dep.slice('/nix/store/'.length)}$`, 'm'));
    assert.match(narinfo, /^Deriver: [0-9a-z]{32}-appA\.drv$/m);
    const narHash = (await execa('nix-store', ['--query', '--hash', outA])).stdout.trim();
    assert.match(narinfo, new RegExp(`^NarHash: ${narHash}$`, 'm'));

    // An empty store substitutes the closure from the directory.
    const imported = await inEmptyStore(
      `test -z "$(ls /nix)" && nix-store --realise ${outA} --option substituters file://${cache} --option require-sigs false && cat ${outA} ${dep} && nix-store --query --references ${outA} && nix-store --verify-path ${outA} ${dep}`,
    );
    assert.equal(imported.exitCode, 0, imported.stderr);
    assert.equal(imported.stdout, [outA, `${dep}`, 'dependency', dep].join('\n'));

    // Again: nothing new is written and no file is touched.
    const snapshot = () => readdirSync(join(cache, 'nar')).map((f) => `${f} ${statSync(join(cache, 'nar', f)).mtimeMs}`).sort();
    const before = snapshot();
    const second = await runCli(['export', String(a), '--to', cache, '--json'], env);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(JSON.parse(second.stdout).export.written, 0);
    assert.equal(JSON.parse(second.stdout).export.skipped, 2);
    assert.deepEqual(snapshot(), before);

    // B shares the dependency: only B itself is new.
    const third = await exportClosure(pool, {build: b}, {dir: cache, closure: 'runtime'});
    assert.deepEqual([third.set, third.paths, third.written, third.skipped], [`build-${b}-runtime`, 2, [outB], [dep]]);
    const urlOf = (p: string) => /^URL: (\S+)$/m.exec(readFileSync(join(cache, `${storePathHashPart(p)}.narinfo`), 'utf8'))![1]!;
    const [urlA, urlB, urlDep] = [urlOf(outA), urlOf(outB), urlOf(dep)];
    writeFileSync(join(cache, 'nar', 'stray.nar.xz'), 'left over');

    // Forget A's set: A's files and the stray file are unreferenced; the shared dependency and B stay.
    assert.equal(await forgetSet(cache, `build-${a}-runtime`), true);
    const planned = (await gcBinaryCache(cache, {dryRun: true})).removed;
    assert.deepEqual([...planned].sort(), [`${storePathHashPart(outA)}.narinfo`, urlA, 'nar/stray.nar.xz'].sort());
    assert.ok(existsSync(join(cache, urlA)), 'a dry run removes nothing');
    const gc = await runCli(['export', '--to', cache, '--gc', '--json'], env);
    assert.equal(gc.code, 0, gc.stderr);
    assert.deepEqual((JSON.parse(gc.stdout).gc.removed as string[]).sort(), [...planned].sort());
    assert.ok(!existsSync(join(cache, urlA)) && !existsSync(join(cache, `${storePathHashPart(outA)}.narinfo`)));
    for (const u of [urlB, urlDep]) assert.ok(existsSync(join(cache, u)), `${u} is still referenced`);
    assert.deepEqual((await gcBinaryCache(cache)).removed, [], 'a second gc finds nothing');
    const stillB = await inEmptyStore(`nix-store --realise ${outB} --option substituters file://${cache} --option require-sigs false >/dev/null && cat ${outB}`);
    assert.equal(stillB.exitCode, 0, stillB.stderr);
    assert.equal(stillB.stdout, `${dep}\nb`);

    // The build closure holds the derivations; a build without valid outputs cannot export its runtime closure.
    const buildCache = join(cache, 'drvs');
    const drvClosure = (await execa('nix-store', ['--query', '--requisites', await drvOf(outA)])).stdout.split('\n');
    const bc = await exportClosure(pool, {build: a}, {dir: buildCache, closure: 'build'});
    assert.deepEqual([...bc.written].sort(), drvClosure.sort());
    const failed = await insertBuild(pool, {jobsetId: js.id, finished: 1, buildStatus: 1, drvPath: await drvOf(outA), outputs: {out: '/nix/store/0000000000000000000000000000000a-never-built'}});
    await assert.rejects(exportClosure(pool, {build: failed}, {dir: cache, closure: 'runtime'}), (e: unknown) => {
      assert.ok(e instanceof ActionError && e.kind === 'refused');
      assert.match(e.message, /outputs .* not in the local store: \/nix\/store\/0+a-never-built/);
      return true;
    });
    await assert.rejects(exportClosure(pool, {build: 999999}, {dir: cache, closure: 'runtime'}), (e: unknown) => e instanceof ActionError && e.kind === 'not-found');
    const usage = await runCli(['export', '--to', cache], env);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /give a BUILD, --eval EVAL, --forget SET or --gc/);
  } finally {
    await pool.end();
    await db.drop();
    await nix.cleanup();
    rmSync(cache, {recursive: true, force: true});
    rmSync(settings, {recursive: true, force: true});
  }
});
