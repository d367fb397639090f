// Fault injection: 1,000 generated malformed inputs — machines-file text, HYDRA_DBI strings, filter expressions
// and nix-support files (products, metrics, release name), 250 of each — made by a seeded pseudo-random
// mutator from valid samples. Every input must give either a valid result or the documented error with a
// message naming the place (file:line + field + column, "position N", "column N"); never another exception
// type and never a slow call. Nothing is written: compiled filters run against a real database inside
// transactions that must not have been assigned a transaction id (no write), with unchanged row counts; a
// machines-file reload with a bad file keeps the last good configuration. nix-support files have no error
// channel by design (Hydra skips lines that do not match): there, every result must satisfy the documented
// shape, and nothing outside the build's outputs may become a product.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import pg from 'pg';
import {freshDatabase} from './support/pg.js';
import {insertBuild, insertBuildStep, insertJobset, storePath} from './support/fixtures.js';
import {initSchema} from '../source/db/schema.js';
import {parseMachinesText} from '../source/fleet/machines-file.js';
import {MachinesMonitor} from '../source/fleet/machines-monitor.js';
import {parseHydraDbi} from '../source/config/dbi.js';
import {ConfigError} from '../source/config/errors.js';
import {compileFilter, parseFilter, FilterError, FILTER_FROM, type FilterTarget} from '../source/db/filter.js';
import {checkRegexes} from '../source/db/queries/sql.js';
import {collectNixSupport, memberMapFs, parseMetrics, parseReleaseName, type RecordedMember} from '../source/nix/nix-support.js';

const PER_KIND = 250;
/** Longest any single parse may take (a hang or catastrophic backtracking shows up here). */
const MAX_CALL_MS = 500;

/** mulberry32: a small deterministic generator (the same inputs on every run). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Mutator {
  private readonly rand: () => number;
  constructor(
    seed: number,
    private readonly tokens: readonly string[],
  ) {
    this.rand = prng(seed);
  }
  int(n: number): number {
    return Math.floor(this.rand() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  /** 1–4 random edits: insert/replace/delete characters or grammar tokens, duplicate, swap, truncate, blow up. */
  mutate(text: string): string {
    let s = text;
    const edits = 1 + this.int(4);
    for (let e = 0; e < edits; e++) {
      const at = this.int(s.length + 1);
      switch (this.int(9)) {
        case 0:
          s = s.slice(0, at) + this.pick(this.tokens) + s.slice(at);
          break;
        case 1:
          s = s.slice(0, at) + this.pick(JUNK) + s.slice(at + 1);
          break;
        case 2:
          s = s.slice(0, at) + s.slice(at + 1 + this.int(4));
          break;
        case 3: {
          const len = 1 + this.int(12);
          s = s.slice(0, at) + s.slice(at, at + len) + s.slice(at);
          break;
        }
        case 4: {
          const b = this.int(s.length + 1);
          const [x, y] = at < b ? [at, b] : [b, at];
          s = s.slice(0, x) + s.slice(y, y + 1) + s.slice(x + 1, y) + s.slice(x, x + 1) + s.slice(y + 1);
          break;
        }
        case 5:
          s = s.slice(0, at);
          break;
        case 6: {
          // Long runs: the usual trigger of slow regexes and quadratic scanners.
          const piece = this.pick([...this.tokens, ...JUNK, s.slice(at, at + 3) || 'a']);
          s = s.slice(0, at) + piece.repeat(200 + this.int(2000)) + s.slice(at);
          break;
        }
        case 7:
          s = s.slice(0, at) + String.fromCharCode(this.int(0x80)) + s.slice(at);
          break;
        default:
          s = s.slice(0, at) + this.pick(this.tokens) + s.slice(at + 1 + this.int(3));
      }
    }
    return s;
  }
}

const JUNK = ['\0', '\n', '\r', '\t', ' ', '"', "'", '\\', ';', ',', '=', ':', '#', '@', '/', '..', '%', '%zz', 'é', '\u202e', '😀', '\ud800', '-', '+', '*', '?', '~', '!', '(', '[', '{', '0', '9', 'x'];

/**
 * Runs a (pure) parse and measures it. A slow call is repeated, and the fastest of three counts: a garbage
 * collection pause does not repeat, a slow input does.
 */
function timed<T>(fn: () => T): {value?: T; error?: unknown; ms: number} {
  const once = (): {value?: T; error?: unknown; ms: number} => {
    const t0 = performance.now();
    try {
      const value = fn();
      return {value, ms: performance.now() - t0};
    } catch (error) {
      return {error, ms: performance.now() - t0};
    }
  };
  let r = once();
  for (let k = 0; k < 2 && r.ms >= MAX_CALL_MS; k++) {
    const again = once();
    if (again.ms < r.ms) r = again;
  }
  return r;
}

async function timedAsync<T>(what: string, fn: () => Promise<T>): Promise<{value: T; ms: number}> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const value = await Promise.race([
    fn(),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${MAX_CALL_MS * 4} ms`)), MAX_CALL_MS * 4))),
  ]);
  clearTimeout(timer);
  return {value, ms: performance.now() - t0};
}

function show(s: string): string {
  return JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}…(${s.length} chars)` : s);
}

/** An OpenSSH ed25519 public-key line (random key bytes) and its base64 for column 8. */
function hostKeyColumn(rand: Mutator): string {
  const type = Buffer.from('ssh-ed25519');
  const key = Buffer.from(Array.from({length: 32}, () => rand.int(256)));
  const blob = Buffer.alloc(4 + type.length + 4 + key.length);
  blob.writeUInt32BE(type.length, 0);
  type.copy(blob, 4);
  blob.writeUInt32BE(key.length, 4 + type.length);
  key.copy(blob, 8 + type.length);
  return Buffer.from(`ssh-ed25519 ${blob.toString('base64')}`).toString('base64');
}

test('1,000 malformed inputs: a valid result or a located error each, never a crash, nothing written', {timeout: 90_000}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hydra-ops-fault-fuzz-'));
  const db = await freshDatabase('fault_fuzz');
  const pool = new pg.Pool({connectionString: db.url, max: 2});
  pool.on('error', () => {});
  const monitor: {m?: MachinesMonitor} = {};
  const tally: Record<string, {valid: number; errors: number; maxMs: number; sqlRun?: number; pgRegexRefused?: number}> = {};
  const count = (kind: string, valid: boolean, ms: number, input: string) => {
    const t = (tally[kind] ??= {valid: 0, errors: 0, maxMs: 0});
    if (valid) t.valid++;
    else t.errors++;
    t.maxMs = Math.max(t.maxMs, ms);
    assert.ok(ms < MAX_CALL_MS, `${kind}: one call took ${ms.toFixed(1)} ms for ${show(input)}`);
  };
  try {
    // ------------------------------------------------------------------ machines files
    {
      const rand = new Mutator(0x9e3779b9, ['ssh://', 'root@', 'localhost', ':22', ':0', ':99999', '?remote-store=', '&', '-', ' ', ';', '#', ',', 'x86_64-linux', 'kvm', '4', '-1', '1.5e3', 'NaN', '[::1]', '@', '=']);
      const good = [
        `ssh://root@builder1:2222 x86_64-linux,i686-linux keys/id_ed25519 4 2 kvm,big-parallel benchmark ${hostKeyColumn(rand)}`,
        `localhost x86_64-linux - 2 1 - -`,
        `ssh://hydra@[::1]:22?remote-store=/mnt/store aarch64-linux - 1 0.5 - - -  # comment`,
        `builder2 x86_64-linux ; ssh://b3 riscv64-linux keys/k 8`,
      ].join('\n');
      const file = join(dir, 'machines');
      writeFileSync(file, good + '\n');
      const goodParse = parseMachinesText(good, file);
      assert.deepEqual(goodParse.errors, []);
      assert.equal(goodParse.machines.length, 5);
      const m = new MachinesMonitor({files: [file], watch: false, pollIntervalMs: 3_600_000});
      monitor.m = m;
      assert.equal(await m.start(), true);
      const inForce = m.machines().map((x) => x.uri);
      let badReloads = 0;
      for (let i = 0; i < PER_KIND; i++) {
        const lines = good.split('\n');
        const li = rand.int(lines.length);
        lines[li] = rand.mutate(lines[li]!);
        const text = lines.join('\n');
        const r = timed(() => parseMachinesText(text, file));
        assert.equal(r.error, undefined, `machines: threw ${String(r.error)} for ${show(text)}`);
        const {machines, errors} = r.value!;
        count('machines', errors.length === 0, r.ms, text);
        for (const e of errors) {
          assert.ok(e.line >= 1 && e.line <= text.split('\n').length + 1000, `machines: line ${e.line}`);
          assert.ok(e.column >= 1 && e.column <= 8, `machines: column ${e.column}`);
          assert.ok(e.problem.length > 0);
          assert.ok(e.message.includes(`:${e.line}: field ${e.field} (column ${e.column}): `), `machines: message ${show(e.message)}`);
        }
        for (const x of machines) {
          assert.ok(x.kind === 'local' || x.kind === 'ssh');
          assert.ok(x.host.length > 0);
          assert.ok(Number.isInteger(x.maxJobs) && x.maxJobs >= 0, `maxJobs ${x.maxJobs}`);
          assert.ok(Number.isFinite(x.speedFactor) && x.speedFactor > 0, `speedFactor ${x.speedFactor}`);
          assert.ok(x.port === undefined || (Number.isInteger(x.port) && x.port >= 1 && x.port <= 65535));
          assert.ok(x.systems.every((sys) => sys.length > 0 && !/[\s,]/.test(sys)));
        }
        // A bad file on disk: the reload fails and the last good configuration stays in force.
        if (errors.length > 0 && badReloads < 60) {
          badReloads++;
          writeFileSync(file, text);
          assert.equal(await m.reload(), false, `machines: a bad file was applied: ${show(text)}`);
          assert.deepEqual(m.machines().map((x) => x.uri), inForce);
          assert.ok(m.lastErrors.length > 0 && m.lastErrors.every((e) => e.message.startsWith(`${file}:`)));
        }
      }
      assert.ok(badReloads >= 30, `only ${badReloads} bad files reloaded`);
      writeFileSync(file, good + '\n');
      assert.equal(await m.reload(), true);
      assert.deepEqual(m.machines().map((x) => x.uri), inForce);
    }

    // ------------------------------------------------------------------ HYDRA_DBI
    {
      const secret = 'Zq7secretPw';
      const rand = new Mutator(0x51ed270b, ['dbi:Pg:', 'DBI:Pg:', 'dbname=', 'host=', 'port=', 'user=', 'password=', 'sslmode=', 'connect_timeout=', "'", "\\'", ';', ' = ', '5432', '99999', 'verify-full', 'hostaddr=', '::1', 'database=']);
      const seeds = [
        'dbi:Pg:dbname=hydra;host=db.example.org;port=5432;user=hydra',
        `dbi:Pg:dbname=hydra;host=localhost;user=hydra;password=${secret};sslmode=verify-full`,
        "DBI:Pg:dbname='hy dra' host=127.0.0.1 connect_timeout=5 application_name='hydra \\' ops'",
        'dbi:Pg:dbname=hydra;hostaddr=10.0.0.1;host=db;options=-c\\ statement_timeout=5s;',
      ];
      for (const s of seeds) assert.doesNotThrow(() => parseHydraDbi(s), s);
      for (let i = 0; i < PER_KIND; i++) {
        const text = rand.mutate(rand.pick(seeds));
        const r = timed(() => parseHydraDbi(text, {env: {}}));
        count('HYDRA_DBI', r.error === undefined, r.ms, text);
        if (r.error === undefined) {
          assert.equal(typeof r.value!.host, 'string');
          assert.ok(!JSON.stringify(r.value).includes('\\u0000'), `HYDRA_DBI: a NUL reached the configuration from ${show(text)}`);
          assert.ok(r.value!.port === undefined || (Number.isInteger(r.value!.port) && r.value!.port >= 1 && r.value!.port <= 65535), `port ${r.value!.port} from ${show(text)}`);
          continue;
        }
        const e = r.error;
        assert.ok(e instanceof ConfigError, `HYDRA_DBI: ${show(text)} threw ${(e as Error)?.name}: ${(e as Error)?.message}`);
        assert.equal(e.field, 'HYDRA_DBI');
        assert.match(e.message, /^HYDRA_DBI: /);
        assert.ok(
          /position \d+/.test(e.message) || /^HYDRA_DBI: (empty;|a URL is not a DBI string|no connection parameters after)/.test(e.message),
          `HYDRA_DBI: the message does not say where: ${show(e.message)}`,
        );
        // A password given with its intact key never appears in a message.
        if (text.split(secret).length === 2 && text.includes(`password=${secret}`)) {
          assert.ok(!e.message.includes(secret), `HYDRA_DBI: password shown in ${show(e.message)}`);
        }
      }
    }

    // ------------------------------------------------------------------ filters
    {
      await initSchema(pool);
      const js = await insertJobset(pool, {name: 'trunk'});
      const now = Math.floor(Date.now() / 1000);
      const b1 = await insertBuild(pool, {jobsetId: js.id, job: 'hello', drvPath: storePath('hello-2.12.drv'), timestamp: now - 3600});
      const b2 = await insertBuild(pool, {jobsetId: js.id, job: 'python3', finished: 1, buildStatus: 1, globalPriority: 5});
      await insertBuildStep(pool, {build: b1, busy: 30, machine: 'ssh://root@builder1', startTime: now - 60});
      await insertBuildStep(pool, {build: b2, status: 1, machine: 'ssh://builder2:22', startTime: now - 600, stopTime: now - 30});
      await pool.query("INSERT INTO JobsetEvals (jobset_id, timestamp, checkouttime, evaltime, hasnewbuilds, hash) VALUES ($1, $2, 0, 0, 1, 'abc')", [js.id, now]);
      const tables = ['Projects', 'Jobsets', 'Builds', 'BuildSteps', 'BuildStepOutputs', 'BuildOutputs', 'JobsetEvals', 'JobsetEvalMembers', 'FailedPaths'];
      const counts = async () => {
        const out: Record<string, number> = {};
        for (const t of tables) out[t] = (await pool.query(`SELECT count(*)::int AS n FROM ${t}`)).rows[0].n;
        return out;
      };
      const before = await counts();
      const rand = new Mutator(0x2545f491, ['status:', 'job:', 'jobset:', 'project:', 'drv=', 'id>', 'id:', '..', 'age>', 'age:', 'duration<', 'phase:', 'machine:', 'eval:', 'bumped:', 'cached:', 'feature:', 'state:', '~', '!', ',', '"', '\\"', '/', '/i', '*', '?', '1h30m', '-5', '9999999999999999999999', '(', '[a-', '{1,2}', '\\']);
      const seeds = [
        'status:failed job:hel*',
        '!status:succeeded,aborted project:nix?pkgs',
        'id:1200..1300 age>2h duration<=1h30m',
        'job~^python3{1,2} jobset:nixpkgs/trunk',
        '"quoted text" /^gcc-1[34]/i drv:hello',
        'machine:builder1 eval:4711,4712 bumped:yes cached:no',
        'phase:building system:x86_64-linux status:running',
        'jobset~^proj:tr.* !machine:"builder 2"',
      ];
      const client = await pool.connect();
      let executed = 0;
      let regexRefused = 0;
      try {
        for (const s of seeds) assert.doesNotThrow(() => parseFilter(s), s);
        for (let i = 0; i < PER_KIND; i++) {
          const text = rand.mutate(rand.pick(seeds));
          const r = timed(() => parseFilter(text));
          count('filter', r.error === undefined, r.ms, text);
          if (r.error !== undefined) {
            const e = r.error;
            assert.ok(e instanceof FilterError, `filter: ${show(text)} threw ${(e as Error)?.name}: ${(e as Error)?.message}`);
            assert.ok(e.position >= 0 && e.position <= text.length, `filter: position ${e.position} outside ${show(text)}`);
            assert.match(e.message, /column \d+/, `filter: ${show(e.message)}`);
            continue;
          }
          for (const target of ['builds', 'steps', 'evals'] as FilterTarget[]) {
            const c = timed(() => compileFilter(r.value!, target, {now}));
            assert.ok(c.ms < MAX_CALL_MS, `filter compile took ${c.ms} ms`);
            if (c.error !== undefined) {
              assert.ok(c.error instanceof FilterError, `filter: compiling ${show(text)} for ${target} threw ${(c.error as Error)?.name}: ${(c.error as Error)?.message}`);
              assert.match(c.error.message, /column \d+/);
              continue;
            }
            const {where, params} = c.value!;
            await client.query('BEGIN');
            try {
              // As the query layer does: regexes JavaScript accepts but PostgreSQL does not become a located FilterError.
              try {
                await checkRegexes(client, r.value!);
              } catch (e) {
                assert.ok(e instanceof FilterError, `filter: regex check of ${show(text)} threw ${(e as Error).message}`);
                assert.match(e.message, /is not valid in PostgreSQL at column \d+/);
                regexRefused++;
                continue;
              }
              await client.query(`SELECT count(*) FROM ${FILTER_FROM[target]}${where ? ` WHERE ${where}` : ''}`, params);
              const xid = await client.query('SELECT pg_current_xact_id_if_assigned() AS xid');
              assert.equal(xid.rows[0].xid, null, `filter: ${show(text)} wrote in its transaction`);
              executed++;
            } catch (e) {
              assert.fail(`filter: ${show(text)} compiled for ${target} but PostgreSQL refused it: ${(e as Error).message}\n${where}`);
            } finally {
              await client.query('ROLLBACK');
            }
          }
        }
      } finally {
        client.release();
      }
      assert.ok(executed >= 50, `only ${executed} compiled filters ran`);
      tally.filter!.sqlRun = executed;
      tally.filter!.pgRegexRefused = regexRefused;
      assert.deepEqual(await counts(), before, 'no row count changed');
    }

    // ------------------------------------------------------------------ nix-support files
    {
      const out = storePath('hello-2.12');
      const dev = storePath('hello-2.12-dev');
      const elsewhere = storePath('other-1.0');
      const rand = new Mutator(0x68e31da4, [out, dev, elsewhere, '/nix/store', '/../', '/./', '"', ' ', '\t', '\n', 'file', 'doc', 'nix-build', 'binary-dist', '0x1p3', 'nan', 'inf', '1e400', '1e-400', '-', '%', 'MiB']);
      const seeds = {
        'hydra-build-products': `file binary-dist ${out}/bin/hello\ndoc manual "${out}/share/doc/hello manual.html" index.html\nnix-build none ${dev}\n`,
        'hydra-metrics': 'time 12.5 s\nsize 0x1p3 bytes\ncount 42\nratio .5 %\n',
        'hydra-release-name': 'hello-2.12\n',
      };
      const names = Object.keys(seeds) as (keyof typeof seeds)[];
      const nameOk = /^[a-zA-Z0-9.@:_ -]*$/;
      for (let i = 0; i < PER_KIND; i++) {
        const which = names[i % names.length]!;
        const text = rand.mutate(seeds[which]);
        const members = new Map<string, RecordedMember>([
          [out, {type: 'directory'}],
          [`${out}/bin`, {type: 'directory'}],
          [`${out}/bin/hello`, {type: 'regular', size: 5, sha256: 'ab'.repeat(32)}],
          [`${out}/share/doc/hello manual.html`, {type: 'regular', size: 1, sha256: 'cd'.repeat(32)}],
          [`${out}/link`, {type: 'symlink'}],
          [dev, {type: 'directory'}],
          [`${out}/nix-support/${which}`, {type: 'regular', contents: Buffer.from(text)}],
        ]);
        const {value: res, ms} = await timedAsync(`nix-support ${show(text)}`, () =>
          collectNixSupport(
            [
              {name: 'out', path: out},
              {name: 'dev', path: dev},
            ],
            memberMapFs(members),
          ),
        );
        count('nix-support', true, ms, text);
        res.products.forEach((p, k) => {
          assert.equal(p.productnr, k + 1);
          assert.ok(p.path !== null, 'a parsed product has a path');
          assert.ok(p.path === out || p.path === dev || p.path.startsWith(`${out}/`) || p.path.startsWith(`${dev}/`), `product outside the outputs: ${p.path} from ${show(text)}`);
          assert.ok(!p.path.includes('/../') && !p.path.includes('/./') && !p.path.includes('\0'));
          assert.ok(members.has(p.path), `product that does not exist: ${p.path}`);
          if (which === 'hydra-build-products') {
            assert.match(p.type, /^[a-zA-Z0-9_-]+$/);
            assert.match(p.subtype, /^[a-zA-Z0-9_-]+$/);
          }
          assert.match(p.name, nameOk);
          assert.ok(p.filesize === null || Number.isInteger(p.filesize));
        });
        assert.ok(res.releaseName === null || /^[a-zA-Z0-9.@:_-]+$/.test(res.releaseName), `release name ${show(res.releaseName ?? '')}`);
        for (const [name, metric] of res.metrics) {
          assert.equal(metric.name, name);
          assert.match(name, /^[a-zA-Z0-9._-]+$/);
          assert.equal(typeof metric.value, 'number');
          assert.ok(metric.unit === null || /^[a-zA-Z0-9._%-]+$/.test(metric.unit));
        }
        // The single-file parsers on their own agree with the collected result.
        if (which === 'hydra-release-name') assert.equal(parseReleaseName(text), res.releaseName);
        if (which === 'hydra-metrics') assert.deepEqual([...parseMetrics(text).values()], [...res.metrics.values()]);
      }
    }

    const total = Object.values(tally).reduce((n, t) => n + t.valid + t.errors, 0);
    assert.equal(total, 4 * PER_KIND);
    for (const kind of ['machines', 'HYDRA_DBI', 'filter']) {
      assert.ok(tally[kind]!.errors >= PER_KIND / 5, `${kind}: only ${tally[kind]!.errors} of the inputs were rejected`);
    }
    process.stderr.write(`# ${JSON.stringify(tally)}\n`);
  } finally {
    monitor.m?.stop();
    await pool.end();
    await db.drop();
    rmSync(dir, {recursive: true, force: true});
  }
});
