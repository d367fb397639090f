// The console's operator actions, carried out with source/actions (the same code as script mode): restart,
// cancel and bump of builds or of a filter's builds (previewed first as dry runs), an eval's restart-failed and
// cancel, drain/enable of a machine, a ping, and a reproducibility check. Outcomes are one line for the footer
// or the confirmation dialog; refusals (read-only, missing role) keep their kind.
import type pg from 'pg';
import {buildsScope} from '../../db/queries/windows.js';
import {cancelEval, restartFailed} from '../../actions/eval-actions.js';
import type {MachineSpec} from '../../fleet/machines-file.js';
import type {Actor} from '../../actions/actor.js';
import {ActionError} from '../../actions/errors.js';
import {BUILD_ACTIONS, isBuildActionKind, runBuildAction} from '../../actions/build-actions.js';
import {drainedMachines, setMachineDrained} from '../../actions/machine-drain.js';
import {runCheck} from '../../actions/check.js';
import {CheckRunner} from '../../fleet/check-runner.js';
import {pingMachines, type PingResult} from '../../actions/ping.js';
import type {ActionOutcome, ActionRequest, ChangeKind} from './types.js';

export interface ActionContext {
  pool: pg.Pool;
  actor: Actor;
  dataDir: string;
  gcRootsDir?: string;
  machineSpecs: () => Promise<MachineSpec[]>;
  /** Called after a drain/enable so an embedded scheduler sees it at once. */
  afterMachineAction?: () => void;
  /** A drain or enable changed what the runner reports. */
  machinesChanged(): void;
  /** A ping's verdict (the Machines view's last ping). */
  pinged(uri: string, ok: boolean): void;
  emit(what: ChangeKind): void;
  log?: (line: string) => void;
}

function actionVerb(kind: string, dryRun: boolean): string {
  return dryRun ? `would ${kind}` : isBuildActionKind(kind) ? BUILD_ACTIONS[kind].done : kind;
}

export class ConsoleActions {
  /** Machines drained by operators, as last read (kept when a later read fails). */
  private lastDrained: Set<string> | null = null;

  constructor(private readonly c: ActionContext) {}

  private async scopeOf(ids: number[]): Promise<string> {
    if (ids.length === 0) return '';
    const rows = await buildsScope(this.c.pool, ids);
    const queued = rows.reduce((n, r) => n + r.queued, 0);
    const running = rows.reduce((n, r) => n + r.running, 0);
    const where = rows.length === 1 ? rows[0]!.js : `${rows.length} jobsets (${rows.slice(0, 3).map((r) => r.js).join(', ')}${rows.length > 3 ? ', …' : ''})`;
    return `in ${where} (${queued} not running, ${running} running)`;
  }

  async act(req: ActionRequest): Promise<ActionOutcome> {
    const dryRun = req.dryRun === true;
    const actor = this.c.actor;
    try {
      switch (req.kind) {
        case 'restart':
        case 'cancel':
        case 'bump':
          break;
        case 'ping': {
          const specs = await this.c.machineSpecs();
          const spec = specs.find((s) => s.uri === req.machine);
          if (!spec) return {ok: false, message: `ping: ${req.machine} is not in the machines file`};
          const [r] = await pingMachines([spec], {timeoutMs: 15_000});
          this.c.pinged(spec.uri, r!.ok);
          return {ok: r!.ok, message: pingSummary(r!)};
        }
        case 'drain':
        case 'enable': {
          const specs = await this.c.machineSpecs();
          const m = await setMachineDrained(this.c.pool, actor, specs, req.machine ?? '', req.kind === 'drain', {dryRun});
          this.c.afterMachineAction?.();
          this.c.machinesChanged();
          this.c.emit('audit');
          const changed = m.wasDrained !== m.drained;
          return {ok: true, message: `${m.machine} ${req.kind === 'drain' ? 'drained' : 'enabled'}${changed ? '' : ' (it already was)'}`};
        }
        case 'check':
          return this.check(req.ids ?? []);
        case 'restart-failed':
        case 'cancel-eval':
          return await this.evalAction(req.kind, req.eval, dryRun);
      }
      const selection = req.filter !== undefined ? ({kind: 'filter', filter: req.filter} as const) : ({kind: 'ids', ids: req.ids ?? []} as const);
      const r = await runBuildAction(this.c.pool, actor, req.kind, selection, {dryRun, gcRootsDir: this.c.gcRootsDir, toFront: req.toFront === true});
      this.c.emit('audit');
      if (!dryRun) this.c.emit('queue');
      const scope = dryRun ? await this.scopeOf(r.changed) : undefined;
      const unchanged = r.unchanged.length ? `; ${r.unchanged.length} already in that state` : '';
      const ids = r.changed.length ? `: ${r.changed.slice(0, 8).join(', ')}${r.changed.length > 8 ? ' …' : ''}` : '';
      return {
        ok: true,
        message: `${actionVerb(req.kind, dryRun)} ${r.changed.length} of ${r.targets.length} build(s)${ids}${unchanged}`,
        changed: r.changed,
        targets: r.targets,
        scope,
      };
    } catch (e) {
      if (e instanceof ActionError) return {ok: false, message: e.message, refusal: e.kind};
      throw e;
    }
  }

  /** Hydra's per-eval actions (source/actions/eval-actions.ts): restart its failed builds, cancel its queued ones. */
  private async evalAction(kind: 'restart-failed' | 'cancel-eval', evalId: number | undefined, dryRun: boolean): Promise<ActionOutcome> {
    if (evalId === undefined) return {ok: false, message: `${kind}: no evaluation selected`, refusal: 'usage'};
    const r =
      kind === 'restart-failed'
        ? await restartFailed(this.c.pool, this.c.actor, evalId, {dryRun, gcRootsDir: this.c.gcRootsDir})
        : await cancelEval(this.c.pool, this.c.actor, evalId, {dryRun});
    this.c.emit('audit');
    if (!dryRun) this.c.emit('queue');
    const what = kind === 'restart-failed' ? 'failed build(s)' : 'queued build(s)';
    const verb = dryRun ? (kind === 'restart-failed' ? 'would restart' : 'would cancel') : kind === 'restart-failed' ? 'restarted' : 'cancelled';
    const unchanged = r.unchanged.length ? `; ${r.unchanged.length} already in that state` : '';
    return {
      ok: true,
      message: `eval ${evalId}: ${verb} ${r.changed.length} of ${r.targets.length} ${what}${unchanged}`,
      changed: r.changed,
      targets: r.targets,
      scope: dryRun ? await this.scopeOf(r.changed) : undefined,
    };
  }

  /**
   * `c`: a reproducibility check of one build (source/actions/check.ts). The rebuild takes as long as
   * the build did, so this resolves once the check has started; its verdict lands in the Checks view.
   */
  private async check(ids: number[]): Promise<ActionOutcome> {
    if (ids.length !== 1) return {ok: false, message: 'check one build at a time (unmark the others)', refusal: 'usage'};
    const build = ids[0]!;
    // Drained machines as last read: a database error keeps the last known state, never "none drained".
    try {
      this.lastDrained = await drainedMachines(this.c.pool);
    } catch (e) {
      if (!this.lastDrained) return {ok: false, message: `cannot read which machines are drained: ${(e as Error).message}`};
    }
    const runner = new CheckRunner();
    const deps = {
      runner,
      machines: await this.c.machineSpecs(),
      dataDir: this.c.dataDir,
      drained: this.lastDrained,
    };
    return new Promise<ActionOutcome>((resolve) => {
      let started = false;
      runCheck(this.c.pool, this.c.actor, {build, onStarted: (id, machine) => {
        started = true;
        this.c.emit('checks');
        this.c.emit('audit');
        resolve({ok: true, message: `check ${id} of build ${build} started on ${machine}; its verdict appears in the Checks view (6)`});
      }}, deps)
        .then((r) => {
          const message = r.dryRun ? `check of build ${build} planned on ${r.checkMachine}` : `check ${r.id} of build ${build}: ${r.verdict}`;
          if (!started) resolve({ok: true, message});
          this.c.log?.(message);
        })
        .catch((e) => {
          const message = e instanceof Error ? e.message : String(e);
          if (!started) resolve({ok: false, message, refusal: e instanceof ActionError ? e.kind : 'failed'});
          else this.c.log?.(`check of build ${build}: ${message}`);
        })
        .finally(() => {
          this.c.emit('checks');
          this.c.emit('audit');
          void runner.close();
        });
    });
  }
}

/** One line for the footer: the ping verdict of a machine. */
export function pingSummary(r: PingResult): string {
  const proto = r.handshake && 'version' in r.handshake ? `protocol ${r.handshake.version}` : null;
  const free = r.storeFreeBytes === null ? null : `${(r.storeFreeBytes / 2 ** 30).toFixed(1)} GiB free`;
  const facts = [r.connectMs === null ? null : `connect ${r.connectMs} ms`, proto, r.nixVersion ? `Nix ${r.nixVersion}` : null, free].filter(Boolean).join(', ');
  if (r.problems.length === 0) return `${r.uri}: ok — ${facts}`;
  const problems = r.problems.map((p) => `${p.severity === 'error' ? '✖' : '!'} ${p.kind}: ${p.message}${p.fix ? ` (fix: ${p.fix})` : ''}`).join('; ');
  return `${r.uri}: ${r.ok ? 'usable' : 'UNUSABLE'} — ${problems}${facts ? ` [${facts}]` : ''}`;
}

