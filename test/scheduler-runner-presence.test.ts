// The console's attach-or-run decision (scheduler/runner-presence.ts) from observed signals; no database.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {decideConsoleRunner, otherRunner, NO_RUNNER_NOTE, type PresenceObservations} from '../source/scheduler/runner-presence.js';
import type {RunnerLockSession} from '../source/db/runner-advisory-lock.js';

const nothing: PresenceObservations = {lockHolder: null, lockFile: null, rest: [], systemStatus: null, busy: {count: 0, newestAgeSec: null}};
const obs = (o: Partial<PresenceObservations>): PresenceObservations => ({...nothing, ...o});
const holder: RunnerLockSession = {
  backendPid: 777,
  applicationName: 'hydra-ops runner pid 1234 on farm1',
  clientAddr: '10.0.0.5',
  clientHostname: null,
  clientPort: 50000,
  user: 'hydra',
  backendStart: '2026-01-01T00:00:00.000Z',
  runnerPid: 1234,
  runnerHost: 'farm1',
};

test('nothing alive: embedded runs by default, a server only with --scheduler, --no-scheduler never', () => {
  assert.deepEqual(decideConsoleRunner({observations: nothing, database: 'embedded', scheduler: undefined}), {action: 'run'});
  assert.deepEqual(decideConsoleRunner({observations: nothing, database: 'embedded', scheduler: true}), {action: 'run'});
  assert.deepEqual(decideConsoleRunner({observations: nothing, database: 'server', scheduler: true}), {action: 'run'});
  assert.deepEqual(decideConsoleRunner({observations: nothing, database: 'server', scheduler: undefined}), {action: 'none', note: NO_RUNNER_NOTE});
  assert.equal(NO_RUNNER_NOTE, 'start one with hydra-ops --daemon, or open the console with --scheduler');
  for (const database of ['embedded', 'server'] as const) {
    const d = decideConsoleRunner({observations: nothing, database, scheduler: false});
    assert.equal(d.action, 'none');
    assert.match((d as {note: string}).note, /--no-scheduler/);
  }
});

test('a hydra-ops lock holder: always attach, naming it, even with --scheduler', () => {
  for (const scheduler of [true, false, undefined]) {
    for (const database of ['embedded', 'server'] as const) {
      const d = decideConsoleRunner({observations: obs({lockHolder: holder}), database, scheduler});
      assert.equal(d.action, 'attach');
      assert.equal((d as {note: string}).note, 'hydra-ops runner pid 1234 on farm1 (lock holder)');
    }
  }
  // A holder that is not a hydra-ops runner by its application_name is described by its session.
  const foreign = otherRunner(obs({lockHolder: {...holder, applicationName: 'psql', runnerPid: null, runnerHost: null}}));
  assert.equal(foreign?.kind, 'lock-holder');
  assert.match(foreign!.description, /session "psql" \(database backend pid 777, client 10\.0\.0\.5/);
});

test('Hydra runners: a fresh or answering SystemStatus row, a REST endpoint that answers', () => {
  const fresh = decideConsoleRunner({observations: obs({systemStatus: {ageSec: 12, answered: false, pid: null}}), database: 'server', scheduler: true});
  assert.deepEqual(fresh, {action: 'attach', runner: {kind: 'system-status', description: "Hydra's queue runner (SystemStatus 12 s ago)"}, note: "Hydra's queue runner (SystemStatus 12 s ago)"});
  // Stale (left by a crash) and silent: not a runner.
  assert.deepEqual(decideConsoleRunner({observations: obs({systemStatus: {ageSec: 3600, answered: false, pid: 99}}), database: 'server', scheduler: true}), {action: 'run'});
  // Stale but it answered dump_status: alive (the C++ runner writes the row only when asked).
  const answered = otherRunner(obs({systemStatus: {ageSec: 0.4, answered: true, pid: 99}}));
  assert.equal(answered?.description, "Hydra's queue runner pid 99 (SystemStatus 0 s ago)");
  // Thresholds are the documented ones: 60 s.
  assert.ok(otherRunner(obs({systemStatus: {ageSec: 60, answered: false, pid: null}})));
  assert.equal(otherRunner(obs({systemStatus: {ageSec: 61, answered: false, pid: null}})), null);
  const rest = otherRunner(obs({rest: [{url: 'http://[::1]:8080', source: 'queue-runner-endpoint'}]}));
  assert.deepEqual(rest, {kind: 'rest', description: "Hydra's queue runner at http://[::1]:8080 (REST status answering)"});
});

test('busy steps started recently by someone else mean a runner; old ones are crash leftovers', () => {
  const recent = decideConsoleRunner({observations: obs({busy: {count: 2, newestAgeSec: 30}}), database: 'embedded', scheduler: undefined});
  assert.equal(recent.action, 'attach');
  assert.match((recent as {note: string}).note, /^an unknown runner \(2 busy steps, newest started 30 s ago; if none runs: hydra-ops unlock\)$/);
  assert.ok(otherRunner(obs({busy: {count: 1, newestAgeSec: 600}})));
  assert.equal(otherRunner(obs({busy: {count: 1, newestAgeSec: 601}})), null);
  assert.deepEqual(decideConsoleRunner({observations: obs({busy: {count: 5, newestAgeSec: 7200}}), database: 'embedded', scheduler: undefined}), {action: 'run'});
});

test('signal order: lock holder, then lock file, REST, SystemStatus, busy steps', () => {
  const all = obs({
    lockHolder: holder,
    lockFile: {file: '/d/queue-runner/lock', pid: 5},
    rest: [{url: 'http://127.0.0.1:8081', source: 'hydra-ops'}],
    systemStatus: {ageSec: 1, answered: false, pid: 1},
    busy: {count: 1, newestAgeSec: 1},
  });
  const kinds: string[] = [];
  let o: PresenceObservations = all;
  for (const drop of ['lockHolder', 'lockFile', 'rest', 'systemStatus', 'busy'] as const) {
    kinds.push(otherRunner(o)!.kind);
    o = {...o, [drop]: drop === 'rest' ? [] : drop === 'busy' ? {count: 0, newestAgeSec: null} : null};
  }
  assert.deepEqual(kinds, ['lock-holder', 'lock-file', 'rest', 'system-status', 'busy-steps']);
  assert.equal(otherRunner(o), null);
  assert.equal(otherRunner(obs({lockFile: {file: '/d/queue-runner/lock.lock', pid: null}}))?.description, 'runner pid ? (holds /d/queue-runner/lock.lock)');
});

test('read-only: the console never runs the scheduler, even on the embedded database or with --scheduler', () => {
  for (const database of ['embedded', 'server'] as const) {
    for (const scheduler of [undefined, true]) {
      const d = decideConsoleRunner({observations: nothing, database, scheduler, readonly: true});
      assert.equal(d.action, 'none');
      assert.match(d.note!, /read-only/);
    }
  }
});
