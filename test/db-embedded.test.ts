import {test} from 'node:test';
import assert from 'node:assert/strict';
import {mkdtempSync, chmodSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {execFile} from 'node:child_process';
import {promisify} from 'node:util';
import pg from 'pg';
import {connectOrStart, stopEmbedded, embeddedStatus} from '../source/db/embedded.js';
import {freePort} from './support/free-port.js';

const run = promisify(execFile);
const childScript = new URL('./support/embedded-child.ts', import.meta.url).pathname;

test('two processes racing connect-or-start share one server, and data survives a restart', {timeout: 120_000}, async () => {
  const base = mkdtempSync(join(tmpdir(), 'hydra-ops-embedded-'));
  chmodSync(base, 0o755);
  const dir = join(base, 'pg');
  const port = await freePort();
  const password = 'secret with spaces & $';
  try {
    const racers = await Promise.all(
      [0, 1].map(() => run(process.execPath, ['--import', 'tsx', childScript, dir, String(port), password], {timeout: 90_000})),
    );
    const handles = racers.map((r) => JSON.parse(r.stdout.trim()) as {url: string; startedHere: boolean; pid: number});
    assert.equal(handles.filter((h) => h.startedHere).length, 1, 'exactly one racer starts the server');
    assert.equal(handles[0]!.pid, handles[1]!.pid, 'both racers use the same server');
    assert.ok(handles[0]!.pid > 0);
    // The server outlives the processes that started it.
    assert.equal(embeddedStatus(dir).pid, handles[0]!.pid);

    const c = new pg.Client({connectionString: handles[0]!.url});
    await c.connect();
    await c.query('CREATE TABLE survive (v text)');
    await c.query("INSERT INTO survive VALUES ('kept')");
    await c.end();

    assert.equal(await stopEmbedded(dir), handles[0]!.pid);
    assert.equal(embeddedStatus(dir).pid, null);

    const again = await connectOrStart({dir, port, password});
    assert.equal(again.startedHere, true);
    const c2 = new pg.Client({connectionString: again.url});
    await c2.connect();
    const {rows} = await c2.query('SELECT v FROM survive');
    assert.deepEqual(rows, [{v: 'kept'}]);
    await c2.end();
  } finally {
    await stopEmbedded(dir).catch(() => null);
    rmSync(base, {recursive: true, force: true});
  }
});
