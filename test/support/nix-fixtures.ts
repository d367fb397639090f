// Real Nix fixtures for tests: instantiate and build tiny derivations (builder /bin/sh) in the local store,
// each run with its own nonce so paths are fresh, and delete them again afterwards.

import {execa} from 'execa';
import {mkdtemp, rm, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {randomBytes} from 'node:crypto';

// No binary caches: builds are local and never wait for the network. No build users either: concurrent builds
// from other processes sharing a build user's uid can kill each other's clean-up ("cannot kill processes for uid").
const NIX_OPTS = ['--option', 'substituters', '', '--option', 'build-users-group', ''];

export interface NixFixture {
  /** Unique per fixture; put it into derivation names/attributes to get fresh store paths. */
  nonce: string;
  /** A scratch directory (removed by cleanup) for .nix files and path literals. */
  dir: string;
  /** nix-instantiate a file with this expression; returns the .drv paths (one per top-level derivation). */
  instantiate(expr: string): Promise<string[]>;
  /** nix-build (no out-link) an expression; returns every output path of the top-level derivations. */
  build(expr: string): Promise<string[]>;
  /** Registers extra store paths to delete at cleanup. */
  track(...paths: string[]): void;
  /** Deletes the tracked store paths (best effort: a path still referenced elsewhere stays) and the scratch dir. */
  cleanup(): Promise<void>;
}

export async function nixFixture(label: string): Promise<NixFixture> {
  const dir = await mkdtemp(join(tmpdir(), `hydra-ops-${label}-`));
  const nonce = `${label}-${randomBytes(5).toString('hex')}`;
  const tracked = new Set<string>();
  let n = 0;

  const writeExpr = async (expr: string): Promise<string> => {
    const file = join(dir, `expr-${n++}.nix`);
    await writeFile(file, expr);
    return file;
  };

  const fixture: NixFixture = {
    nonce,
    dir,
    async instantiate(expr) {
      const file = await writeExpr(expr);
      const r = await execa('nix-instantiate', [...NIX_OPTS, file], {stdin: 'ignore'});
      const drvs = r.stdout.split('\n').filter((l) => l.length > 0);
      // The closure of the .drv files (inputs, sources) is also the fixture's.
      const closure = await execa('nix-store', ['--query', '--requisites', ...drvs]);
      for (const p of closure.stdout.split('\n')) if (p.length > 0) tracked.add(p);
      return drvs;
    },
    async build(expr) {
      const file = await writeExpr(expr);
      const drvs = await fixture.instantiate(expr);
      await execa('nix-build', [...NIX_OPTS, '--no-out-link', file], {stdin: 'ignore'});
      const outs = (await execa('nix-store', ['--query', '--outputs', ...drvs])).stdout.split('\n').filter((l) => l.length > 0);
      const all = await execa('nix-store', ['--query', '--outputs', ...drvs, ...(await requisiteDrvs(drvs))]);
      for (const p of all.stdout.split('\n')) if (p.length > 0) tracked.add(p);
      return outs;
    },
    track(...paths) {
      for (const p of paths) tracked.add(p);
    },
    async cleanup() {
      if (tracked.size > 0) {
        const valid = await execa('nix-store', ['--check-validity', '--print-invalid', ...tracked], {reject: false});
        const invalid = new Set(valid.stdout.split('\n'));
        const paths = [...tracked].filter((p) => !invalid.has(p));
        if (paths.length > 0) await execa('nix-store', ['--delete', ...paths], {reject: false, stdin: 'ignore'});
      }
      await rm(dir, {recursive: true, force: true});
    },
  };
  return fixture;
}

async function requisiteDrvs(drvs: string[]): Promise<string[]> {
  const r = await execa('nix-store', ['--query', '--requisites', ...drvs]);
  return r.stdout.split('\n').filter((p) => p.endsWith('.drv'));
}
