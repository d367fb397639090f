// `hydra-ops latest` end to end: a job built three times through the real runner (real PostgreSQL, real Nix,
// a real sshd builder), the derivations writing nix-support/hydra-build-products; the CLI picks the latest
// successful build (Hydra's rule), prints its product's path, and `--download` copies the file — from the
// local store, and after the output is deleted locally, from hydra.conf's store_uri as a substituter.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, unlinkSync, lstatSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {execa} from 'execa';
import {mkPrelude, runnerRig} from './support/runner-rig.js';
import {runCli} from './support/cli.js';
import {shapeErrors, type Shape} from './support/json-shape.js';
import {defaultRunnerSettings} from '../source/config/hydra-conf.js';

const BUILD_ROW: Shape = {
  id: 'number', finished: 'number', timestamp: 'number', jobset_id: 'number', project: 'string', jobset: 'string', job: 'string',
  nixname: '?string', description: '?string', drvpath: 'string', system: 'string', license: '?string', homepage: '?string',
  maintainers: '?string', maxsilent: '?number', timeout: '?number', ischannel: 'number', iscurrent: '?number', priority: 'number',
  globalpriority: 'number', starttime: '?number', stoptime: '?number', iscachedbuild: '?number', buildstatus: '?number',
  size: '?number', closuresize: '?number', releasename: '?string', keep: 'number', notificationpendingsince: '?number',
};
const PRODUCT: Shape = {build: 'number', productnr: 'number', type: 'string', subtype: 'string', filesize: '?number', sha256hash: '?string', path: '?string', name: 'string', defaultpath: '?string'};
/** The README's `latest --json` shape. */
const LATEST_SHAPE: Shape = {build: BUILD_ROW, outputs: [{name: 'string', path: '?string'}], products: [PRODUCT], product: '?any', download: '?any'};

/** A release job: a tarball and a manual declared as build products; `fail` makes the build fail after writing them. */
function release(nonce: string, version: string, fail = false): string {
  return `${mkPrelude(nonce)}
    mk "release" [] "mkdir -p $out/nix-support $out/share/doc; echo 'tarball ${version}' > $out/hello-${version}.tar.gz; echo 'manual ${version}' > $out/share/doc/index.html; echo \\"file source-dist $out/hello-${version}.tar.gz\\" > $out/nix-support/hydra-build-products; echo \\"doc manual $out/share/doc index.html\\" >> $out/nix-support/hydra-build-products${fail ? '; exit 1' : ''}"`;
}

test('latest: the latest successful build of a job, its product path, and --download from the store or from store_uri', {timeout: 240_000}, async () => {
  const rig = await runnerRig({builders: 1, label: 'utils_latest'});
  const cache = mkdtempSync(join(tmpdir(), 'hydra-ops-latest-cache-'));
  const out = mkdtempSync(join(tmpdir(), 'hydra-ops-latest-dl-'));
  const settings = mkdtempSync(join(tmpdir(), 'hydra-ops-latest-settings-'));
  const conf = join(settings, 'hydra.conf');
  writeFileSync(conf, `store_uri = file://${cache}\n`);
  const env = {HYDRA_DATABASE_URL: rig.db.url, HYDRA_OPS_CONFIG_DIR: settings, HYDRA_CONFIG: conf};
  try {
    const runner = defaultRunnerSettings();
    runner.gcRootsDir = join(rig.dataDir, 'gcroots');
    runner.storeUri = `file://${cache}`;
    const s = rig.scheduler({runner});
    await s.start();
    s.setMachines(rig.machines);
    const js = await rig.jobset('main');
    const ref = `${js.project}/main/release`;

    // Nothing built yet: exit 3 with a message naming the job.
    const none = await runCli(['latest', ref], env);
    assert.equal(none.code, 3, none.stderr);
    assert.match(none.stderr, new RegExp(`${ref} has no successful build`));

    // Three builds of the job, one after the other: 1.0 and 2.0 succeed, 3.0 fails.
    const ids: number[] = [];
    for (const [v, fail] of [['1.0', false], ['2.0', false], ['3.0', true]] as const) {
      const [drv] = await rig.nix.instantiate(release(`${rig.nix.nonce}-${v}`, v, fail));
      const [id] = await rig.queue([drv!], {jobsetId: js.id, jobs: ['release']});
      s.requestScan();
      await rig.waitFinished([id!], 120_000);
      ids.push(id!);
    }
    const status = await rig.pool.query('SELECT id, buildstatus FROM Builds WHERE id = ANY($1::int[]) ORDER BY id', [ids]);
    assert.deepEqual(status.rows.map((r) => r.buildstatus), [0, 0, 1]);
    const products = await rig.pool.query('SELECT build, type, subtype, name FROM BuildProducts WHERE build = $1 ORDER BY productnr', [ids[1]]);
    assert.deepEqual(products.rows.map((r) => `${r.type}/${r.subtype}/${r.name}`), ['file/source-dist/hello-2.0.tar.gz', 'doc/manual/doc']);

    // The summary: build 2 (build 3 failed), its output and products.
    const text = await runCli(['latest', ref], env);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`^build ${ids[1]}  ${js.project}:main  release`, 'm'));
    assert.match(text.stdout, /^output out: \/nix\/store\/[0-9a-z]{32}-release$/m);
    assert.match(text.stdout, /^product 1 file\/source-dist\/hello-2\.0\.tar\.gz: \/nix\/store\/.*\/hello-2\.0\.tar\.gz \(\d+ B\)$/m);

    const json = await runCli(['latest', ref, '--json', '--product', 'file/source-dist'], env);
    assert.equal(json.code, 0, json.stderr);
    const doc = JSON.parse(json.stdout);
    assert.deepEqual(shapeErrors(doc, LATEST_SHAPE), []);
    assert.deepEqual(shapeErrors(doc.product, PRODUCT), []);
    assert.equal(doc.build.id, ids[1]);
    assert.equal(doc.product.name, 'hello-2.0.tar.gz');
    assert.equal(doc.download, null);

    // --product prints the path; TYPE alone and TYPE/SUBTYPE/NAME match too.
    const path = await runCli(['latest', ref, '--product', 'file/source-dist'], env);
    assert.equal(path.code, 0, path.stderr);
    assert.match(path.stdout, /^\/nix\/store\/[0-9a-z]{32}-release\/hello-2\.0\.tar\.gz\n$/);
    const byType = await runCli(['latest', ref, '--product', 'file'], env);
    assert.equal(byType.stdout, path.stdout);
    const byName = await runCli(['latest', ref, '--product', 'file/source-dist/hello-2.0.tar.gz'], env);
    assert.equal(byName.stdout, path.stdout);
    const missing = await runCli(['latest', ref, '--product', 'file/binary-dist'], env);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /has no product file\/binary-dist \(its products: file\/source-dist\/hello-2\.0\.tar\.gz, doc\/manual\/doc\)/);

    // --download from the local store.
    const dl = await runCli(['latest', ref, '--product', 'file/source-dist', '--download', out], env);
    assert.equal(dl.code, 0, dl.stderr);
    assert.equal(dl.stdout, `${join(out, 'hello-2.0.tar.gz')}\n`);
    assert.equal(readFileSync(join(out, 'hello-2.0.tar.gz'), 'utf8'), 'tarball 2.0\n');
    // A directory product with a default path: the file it names.
    const manual = await runCli(['latest', ref, '--product', 'doc/manual', '--download', out], env);
    assert.equal(manual.code, 0, manual.stderr);
    assert.equal(readFileSync(join(out, 'index.html'), 'utf8'), 'manual 2.0\n');

    // Delete the output from the coordinator's store (its gc root first): --download fetches it from store_uri.
    const outPath = doc.outputs[0].path as string;
    await s.stop(5000);
    // The executor's long-lived coordinator store sessions hold temporary roots on what they imported.
    await rig.executor.close();
    for (const f of readdirSync(runner.gcRootsDir)) {
      const p = join(runner.gcRootsDir, f);
      if (lstatSync(p).isSymbolicLink()) unlinkSync(p);
    }
    const del = await execa('nix-store', ['--delete', outPath], {reject: false});
    assert.equal(del.exitCode, 0, del.stderr);
    assert.equal((await execa('nix-store', ['--check-validity', outPath], {reject: false})).exitCode !== 0, true, 'gone from the local store');
    rmSync(join(out, 'hello-2.0.tar.gz'));
    const fetched = await runCli(['latest', ref, '--product', 'file/source-dist', '--download', out, '--json'], env);
    assert.equal(fetched.code, 0, fetched.stderr);
    assert.deepEqual(JSON.parse(fetched.stdout).download, {file: join(out, 'hello-2.0.tar.gz'), source: 'store_uri'});
    assert.equal(readFileSync(join(out, 'hello-2.0.tar.gz'), 'utf8'), 'tarball 2.0\n');

    // --system and --eval scope it; bad input is a usage error naming the problem.
    const other = await runCli(['latest', ref, '--system', 'riscv64-linux'], env);
    assert.equal(other.code, 3);
    assert.match(other.stderr, /has no successful build for riscv64-linux/);
    const noEval = await runCli(['latest', ref, '--eval', '999999'], env);
    assert.equal(noEval.code, 3);
    assert.match(noEval.stderr, /no evaluation 999999/);
    const bad = await runCli(['latest', 'just-a-job'], env);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /bad job "just-a-job": expected PROJECT\/JOBSET\/JOB/);
    const badSpec = await runCli(['latest', ref, '--product', 'a/b/c/d'], env);
    assert.equal(badSpec.code, 2);
    assert.match(badSpec.stderr, /bad --product "a\/b\/c\/d"/);
    const noProduct = await runCli(['latest', ref, '--download', out], env);
    assert.equal(noProduct.code, 2);
    assert.match(noProduct.stderr, /--download needs --product/);
    const noJobset = await runCli(['latest', `${js.project}/nope/release`, '--json'], env);
    assert.equal(noJobset.code, 3);
    assert.equal(JSON.parse(noJobset.stdout).error.code, 'not-found');
  } finally {
    await rig.close();
    for (const d of [cache, out, settings]) rmSync(d, {recursive: true, force: true});
  }
});
