// `hydra-ops reproduce`: the written script rebuilds a failed build in a separate, empty store from the exported
// closure alone, and keeps the failing build's directory.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {execa} from 'execa';
import pg from 'pg';
import {freshDatabase} from './support/pg.js';
import {nixFixture} from './support/nix-fixtures.js';
import {mkPrelude} from './support/runner-rig.js';
import {insertBuild, insertJobset, insertProject} from './support/fixtures.js';
import {runCli} from './support/cli.js';
import {initSchema} from '../source/db/schema.js';
import {planReproduce, reproduceCommands} from '../source/actions/reproduce.js';

test('reproduce: the script rebuilds a failed build on an empty store and keeps its build directory', {timeout: 60_000}, async () => {
  const db = await freshDatabase('utils_reproduce');
  const pool = new pg.Pool({connectionString: db.url});
  const nix = await nixFixture('utils-repro');
  const work = mkdtempSync(join(tmpdir(), 'hydra-ops-reproduce-'));
  const env = {HYDRA_DATABASE_URL: db.url, HYDRA_OPS_CONFIG_DIR: join(work, 'settings')};
  try {
    await initSchema(pool);
    const prelude = mkPrelude(nix.nonce);
    // `dep` is built on the coordinator; `fresh` never was; `broken` uses both and fails.
    const [depOut] = await nix.build(`${prelude} mk "dep" [] "echo dependency > $out"`);
    const [drv] = await nix.instantiate(`${prelude}
      let dep = mk "dep" [] "echo dependency > $out"; fresh = mk "fresh" [] "echo building fresh; echo fresh > $out";
      in mk "broken" [dep fresh] "cat \${dep} \${fresh}; echo partial > partial.txt; echo about to fail; exit 1"`);
    const drvText = readFileSync(drv!, 'utf8');
    const freshDrv = /"(\/nix\/store\/[0-9a-z]{32}-fresh\.drv)"/.exec(drvText)![1]!;
    const depDrv = /"(\/nix\/store\/[0-9a-z]{32}-dep\.drv)"/.exec(drvText)![1]!;
    const js = await insertJobset(pool);
    const id = await insertBuild(pool, {jobsetId: js.id, job: 'broken', finished: 1, buildStatus: 1, drvPath: drv!, outputs: {out: drvText.match(/"out","(\/nix\/store\/[^"]+)"/)![1]!}});

    const plan = await planReproduce(pool, id);
    assert.equal(plan.drvPath, drv);
    assert.deepEqual(plan.builtInputs, [depOut]);
    assert.deepEqual(plan.unbuiltInputs, [freshDrv]);
    assert.ok(plan.paths.includes(drv!) && plan.paths.includes(depOut!) && plan.paths.includes(freshDrv) && plan.paths.includes(depDrv));
    assert.ok(plan.paths.indexOf(depDrv) < plan.paths.indexOf(drv!), 'dependencies first');
    assert.deepEqual(reproduceCommands(plan).elsewhere, ['nix-store --import < closure.nixexport', `nix-store --realise ${drv} --keep-failed`]);

    const printed = await runCli(['reproduce', String(id), '--print'], env);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, new RegExp(`^nix-store --export .*${depOut}.* > closure\\.nixexport$`, 'm'));
    assert.match(printed.stdout, /^nix-store --import < closure\.nixexport$/m);
    assert.match(printed.stdout, new RegExp(`^nix-store --realise ${drv} --keep-failed$`, 'm'));

    const out = join(work, 'repro');
    const written = await runCli(['reproduce', String(id), '--to', out], env);
    assert.equal(written.code, 0, written.stderr);
    assert.ok(statSync(join(out, 'reproduce.sh')).mode & 0o100, 'the script is executable');
    assert.ok(existsSync(join(out, 'closure.nixexport')));

    // A separate store: an empty tmpfs over /nix in a private mount namespace; build directories under our TMPDIR.
    const buildTmp = join(work, 'tmp');
    mkdirSync(buildTmp);
    const r = await execa(
      'unshare',
      ['--mount', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs tmpfs /nix && test -z "$(ls /nix)" && "$0"/reproduce.sh --option build-users-group '' --option substituters ''`, out],
      {reject: false, env: {TMPDIR: buildTmp}, stdin: 'ignore'},
    );
    assert.notEqual(r.exitCode, 0, 'the build fails again');
    assert.match(r.stderr, /about to fail/);
    assert.match(r.stderr, /building fresh/, 'the input never built on the coordinator is built');
    assert.doesNotMatch(r.stderr, new RegExp(`building '${depDrv.replace(/[.]/g, '\\.')}'`), 'the already-built input is imported, not rebuilt');
    const kept = /keeping build directory '([^']+)'/.exec(r.stderr);
    assert.ok(kept, `-K keeps the build directory:\n${r.stderr}`);
    assert.ok(kept[1]!.startsWith(buildTmp));
    assert.equal(readFileSync(join(kept[1]!, 'partial.txt'), 'utf8'), 'partial\n');
    assert.deepEqual(readdirSync(buildTmp).filter((n) => n.includes('broken')).length, 1);

    const gone = await runCli(['reproduce', '424242'], env);
    assert.equal(gone.code, 3);
    assert.match(gone.stderr, /build 424242 does not exist/);
  } finally {
    await pool.end();
    await db.drop();
    await nix.cleanup();
    // The kept build directory belongs to root and may hold read-only files.
    await execa('chmod', ['-R', 'u+w', work], {reject: false});
    rmSync(work, {recursive: true, force: true});
  }
});

test('reproduce: a job name with a newline (old behaviour: it became a command of reproduce.sh) is shown escaped, and --to never writes into a directory it did not make', {timeout: 60_000}, async () => {
  const db = await freshDatabase('utils_reproduce_inject');
  const pool = new pg.Pool({connectionString: db.url});
  const nix = await nixFixture('utils-repro-inject');
  const work = mkdtempSync(join(tmpdir(), 'hydra-ops-reproduce-inject-'));
  const env = {HYDRA_DATABASE_URL: db.url, HYDRA_OPS_CONFIG_DIR: join(work, 'settings')};
  try {
    await initSchema(pool);
    const [drv] = await nix.instantiate(`${mkPrelude(nix.nonce)} mk "victim" [] "echo v > $out"`);
    const pwned = join(work, 'pwned');
    const js = await insertJobset(pool, {project: await insertProject(pool, {name: `p$(touch ${pwned})`})});
    const id = await insertBuild(pool, {jobsetId: js.id, job: `x\ntouch ${pwned} #\u001b[2J`, finished: 1, buildStatus: 1, drvPath: drv!});
    const out = join(work, 'repro');
    const written = await runCli(['reproduce', String(id), '--to', out], env);
    assert.equal(written.code, 0, written.stderr);
    const script = readFileSync(join(out, 'reproduce.sh'), 'utf8');
    assert.match(script, /x\\ntouch .* #\\x1b\[2J/, 'the newline and the escape are shown escaped');
    assert.doesNotMatch(script, /\u001b/);
    assert.ok(script.split('\n').every((l) => !l.startsWith('touch')), script);
    // Run it with sh; nix-store is a stub that only records its arguments.
    const bin = join(work, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'nix-store'), `#!/bin/sh\necho "$@" >> ${join(work, 'calls')}\n`);
    chmodSync(join(bin, 'nix-store'), 0o755);
    const r = await execa('sh', [join(out, 'reproduce.sh')], {reject: false, env: {PATH: `${bin}:/usr/bin:/bin`}, stdin: 'ignore'});
    assert.equal(r.exitCode, 0, r.stderr);
    assert.ok(!existsSync(pwned), 'nothing from the database ran');
    assert.deepEqual(readFileSync(join(work, 'calls'), 'utf8').trim().split('\n'), ['--import', `--realise ${drv} --keep-failed`]);

    // Written again into its own directory: fine. An operator's directory or a symlink: refused, untouched.
    assert.equal((await runCli(['reproduce', String(id), '--to', out], env)).code, 0);
    const theirs = join(work, 'theirs');
    mkdirSync(theirs);
    writeFileSync(join(theirs, 'notes.txt'), 'keep me');
    const refused = await runCli(['reproduce', String(id), '--to', theirs], env);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /was not made by hydra-ops reproduce/);
    assert.deepEqual(readdirSync(theirs), ['notes.txt']);
    const link = join(work, 'link');
    symlinkSync(out, link);
    const viaLink = await runCli(['reproduce', String(id), '--to', link], env);
    assert.notEqual(viaLink.code, 0);
    assert.match(viaLink.stderr, /symlinks are not followed/);
  } finally {
    await pool.end();
    await db.drop();
    await nix.cleanup();
    rmSync(work, {recursive: true, force: true});
  }
});
