// `status` (is a queue runner up, and its status document) and `machines` (build machines with their
// drain state and running steps).
//
// status sources, first that answers wins:
//   1. the hydra-ops daemon's REST endpoint      GET http://<statusAddress>/status
//   2. a Rust runner (hydra.conf queue_runner_endpoint) GET <endpoint>/status
//   3. the C++ runner's SystemStatus('queue-runner') row, refreshed like `hydra-queue-runner --status`:
//      NOTIFY dump_status, wait up to --timeout seconds for status_dumped, re-read.
// Outcomes: a fresh document → exit 0; a row that was not refreshed in time → printed with
// fresh: false, "queue runner did not respond; status information may be wrong" on stderr, exit 1;
// nothing anywhere → {"status": "down"} and exit 0 (as `hydra-queue-runner --status` prints it);
// a configured endpoint that does not answer and no row → {"status": "unreachable"}, exit 1.
import type {Command} from 'commander';
import {newClient, type ConnectionSettings} from '../../db/scram-client.js';
import type {AppContext} from '../context.js';
import {EXIT, usageError} from '../exit-codes.js';
import {formatDuration, printJson, printTable} from '../output.js';
import {loadMachinesFiles, type MachineSpec} from '../../fleet/machines-file.js';
import {runningStepsByMachine, type RunningStepRow} from '../../db/queries/steps.js';
import {machineStates} from '../../actions/machine-drain.js';
import {phaseName} from './read.js';

export type StatusSource = 'hydra-ops' | 'queue-runner-endpoint' | 'system-status';

export interface StatusReport {
  status: string;
  source: StatusSource | null;
  /** URL asked, for the REST sources. */
  url: string | null;
  /** false when the SystemStatus row was not refreshed in time. */
  fresh: boolean;
  document: unknown;
  /** Sources tried that did not answer, with why. */
  tried: {source: StatusSource; url: string | null; error: string}[];
}

async function getJson(url: string, timeoutMs: number): Promise<unknown> {
  const res = await fetch(url, {signal: AbortSignal.timeout(timeoutMs)});
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.json();
}

function errorText(e: unknown): string {
  const err = e as {cause?: {code?: string; message?: string}; message?: string; name?: string};
  if (err.name === 'TimeoutError') return 'timed out';
  return err.cause?.code ?? err.cause?.message ?? err.message ?? String(e);
}

function docStatus(doc: unknown): string {
  const d = doc as {status?: unknown; queueRunner?: {status?: unknown}} | null;
  const s = d?.queueRunner?.status ?? d?.status;
  return typeof s === 'string' ? s : 'up';
}

/** Reads SystemStatus('queue-runner'), asking the runner to refresh it first. */
async function systemStatus(connection: ConnectionSettings, timeoutMs: number): Promise<{document: unknown; fresh: boolean} | null> {
  const client = newClient(connection);
  await client.connect();
  try {
    const read = async () => (await client.query<{status: unknown}>("SELECT status FROM SystemStatus WHERE what = 'queue-runner'")).rows[0];
    const first = await read();
    if (!first) return null;
    await client.query('LISTEN status_dumped');
    const dumped = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      client.on('notification', (n) => {
        if (n.channel === 'status_dumped') {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });
    await client.query('NOTIFY dump_status');
    const fresh = await dumped;
    const row = fresh ? await read() : first;
    return {document: (row ?? first).status, fresh};
  } finally {
    await client.end().catch(() => {});
  }
}

export function registerStatusCommands(program: Command, ctx: AppContext): void {
  program
    .command('status')
    .description("is a queue runner up, and its status document (hydra-ops daemon, Rust runner endpoint, or the C++ runner's SystemStatus row)")
    .option('--timeout <seconds>', 'how long the C++ runner may take to refresh its status row (default 5)')
    .addHelpText(
      'after',
      '\nExamples:\n  hydra-ops status\n  hydra-ops status --json | jq .status\n\n' +
        'Exit codes: 0 a current document, or "down" when no runner publishes one; 1 the document is stale or the\n' +
        'configured endpoint is unreachable; 69 the database is unreachable.\n',
    )
    .action(async (opts: {timeout?: string}) => {
      const timeout = opts.timeout === undefined ? 5 : Number(opts.timeout);
      if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 600) throw usageError(`--timeout: expected seconds (0 < t <= 600), got "${opts.timeout}"`);
      const config = ctx.config();
      const tried: StatusReport['tried'] = [];
      const report = (r: Omit<StatusReport, 'tried'>): StatusReport => ({...r, tried});
      let result: StatusReport | null = null;

      const daemonUrl = `http://${config.statusAddress.value}/status`;
      try {
        const document = await getJson(daemonUrl, 1000);
        result = report({status: docStatus(document), source: 'hydra-ops', url: daemonUrl, fresh: true, document});
      } catch (e) {
        tried.push({source: 'hydra-ops', url: daemonUrl, error: errorText(e)});
      }
      const endpoint = config.runner.queueRunnerEndpoint;
      if (!result && endpoint) {
        const url = `${endpoint.replace(/\/+$/, '')}/status`;
        try {
          const document = await getJson(url, 3000);
          result = report({status: docStatus(document), source: 'queue-runner-endpoint', url, fresh: true, document});
        } catch (e) {
          tried.push({source: 'queue-runner-endpoint', url, error: errorText(e)});
        }
      }
      if (!result) {
        const db = await ctx.database();
        const row = await systemStatus(db.connection, timeout * 1000);
        if (row) result = report({status: docStatus(row.document), source: 'system-status', url: null, fresh: row.fresh, document: row.document});
      }
      if (!result) {
        const unreachable = tried.some((t) => t.source === 'queue-runner-endpoint');
        result = report({status: unreachable ? 'unreachable' : 'down', source: null, url: null, fresh: true, document: null});
        if (unreachable) ctx.exitCode = EXIT.failed;
      }
      if (!result.fresh) {
        ctx.exitCode = EXIT.failed;
        process.stderr.write('hydra-ops: queue runner did not respond; status information may be wrong\n');
      }
      if (ctx.json) {
        printJson(result);
        return;
      }
      process.stdout.write(`queue runner: ${result.status}${result.source ? ` (from ${result.source}${result.url ? ` ${result.url}` : ''})` : ''}\n`);
      for (const t of tried) process.stderr.write(`  ${t.source}${t.url ? ` ${t.url}` : ''}: ${t.error}\n`);
      if (result.document !== null) process.stdout.write(JSON.stringify(result.document, null, 2) + '\n');
    });

  program
    .command('machines')
    .description('build machines: machines-file entries with drain state and running steps (the daemon\'s view when it answers)')
    .addHelpText('after', '\nExamples:\n  hydra-ops machines\n  hydra-ops machines --json | jq \'.machines[] | select(.drained)\'\n')
    .action(async () => {
      const config = ctx.config();
      const loaded = await loadMachinesFiles(config.machinesFiles.value);
      const {pool} = await ctx.database();
      const [states, steps] = await Promise.all([machineStates(pool), runningStepsByMachine(pool)]);
      let daemon: Record<string, unknown> | null = null;
      try {
        const doc = (await getJson(`http://${config.statusAddress.value}/status/machines`, 1000)) as {machines?: Record<string, unknown>};
        if (doc && typeof doc.machines === 'object' && doc.machines !== null) daemon = doc.machines;
      } catch {
        // the daemon is not running: the machines files and the database are the whole story
      }
      const machines = mergeMachines(loaded.machines, states, steps, daemon);
      if (ctx.json) {
        printJson({source: daemon ? 'daemon' : 'machines-file', files: config.machinesFiles.value, machines, errors: loaded.errors.map((e) => e.message)});
        return;
      }
      for (const e of loaded.errors) process.stderr.write(`hydra-ops: warning: ${e.message}\n`);
      const now = Math.floor(Date.now() / 1000);
      printTable(machines, [
        {header: 'MACHINE', value: (m) => m.name},
        {header: 'SYSTEMS', value: (m) => m.systems.join(',') || null},
        {header: 'JOBS', value: (m) => `${m.currentJobs}/${m.maxJobs ?? '?'}`, align: 'right'},
        {header: 'STATE', value: (m) => (m.drained ? 'drained' : !m.inMachinesFile ? 'removed' : m.currentJobs > 0 ? 'busy' : 'idle')},
        {
          header: 'STEPS',
          value: (m) => m.steps.map((s) => `${s.build}/${s.stepnr} ${phaseName(s.busy)} ${s.starttime ? formatDuration(now - s.starttime) : ''}`.trim()).join('; ') || null,
        },
      ]);
    });
}

export interface MachineView {
  /** The machines file URI (`ssh://hydra@builder1`, `localhost`), else the name the steps or daemon use. */
  name: string;
  host: string | null;
  systems: string[];
  maxJobs: number | null;
  speedFactor: number | null;
  supportedFeatures: string[];
  mandatoryFeatures: string[];
  inMachinesFile: boolean;
  drained: boolean;
  drainedBy: string | null;
  drainedAt: string | null;
  note: string | null;
  currentJobs: number;
  steps: RunningStepRow[];
  /** The daemon's /status/machines entry for this machine, when the daemon answered. */
  daemon: unknown;
}

function hostOf(name: string): string {
  return /^(?:[a-z][a-z0-9+.-]*:\/\/)?(?:[^@/]*@)?([^:/?]*)/.exec(name)?.[1] ?? name;
}

export function mergeMachines(
  specs: readonly MachineSpec[],
  states: Map<string, {drained: boolean; drained_by: string | null; drained_at: string | null; note: string | null}>,
  steps: readonly RunningStepRow[],
  daemon: Record<string, unknown> | null,
): MachineView[] {
  const blank = (name: string, host: string | null, inMachinesFile: boolean): MachineView => ({
    name,
    host,
    systems: [],
    maxJobs: null,
    speedFactor: null,
    supportedFeatures: [],
    mandatoryFeatures: [],
    inMachinesFile,
    drained: false,
    drainedBy: null,
    drainedAt: null,
    note: null,
    currentJobs: 0,
    steps: [],
    daemon: null,
  });
  const views: MachineView[] = specs.map((m) => ({
    ...blank(m.uri, m.host, true),
    systems: m.systems,
    maxJobs: m.maxJobs,
    speedFactor: m.speedFactor,
    supportedFeatures: m.supportedFeatures,
    mandatoryFeatures: m.mandatoryFeatures,
  }));
  const find = (name: string): MachineView => {
    const exact = views.find((v) => v.name === name);
    if (exact) return exact;
    const host = hostOf(name);
    const byHost = views.find((v) => v.host === host || v.host === name);
    if (byHost) return byHost;
    const view = blank(name, host || null, false);
    views.push(view);
    return view;
  };
  for (const s of steps) {
    const v = find(s.machine || 'localhost');
    v.steps.push(s);
    v.currentJobs++;
  }
  for (const [name, st] of states) {
    if (!st.drained && !views.some((v) => v.name === name)) continue;
    const v = find(name);
    v.drained = st.drained;
    v.drainedBy = st.drained_by;
    v.drainedAt = st.drained_at;
    v.note = st.note;
  }
  if (daemon) for (const [name, doc] of Object.entries(daemon)) find(name).daemon = doc;
  return views;
}
