// Keeps the machine list in sync with the machines files.
//
// Each canonical URI maps to ONE Machine object for the life of the monitor, so runtime state others
// attach to it (running steps, failure counters) survives reloads. A reload that produces any error
// leaves the last good configuration in force.
import {EventEmitter} from 'node:events';
import {watch, type FSWatcher} from 'node:fs';
import {stat} from 'node:fs/promises';
import {basename, dirname, resolve} from 'node:path';
import {
  implicitLocalhost,
  loadMachinesFiles,
  type MachineFileError,
  type MachineSource,
  type MachineSpec,
} from './machines-file.js';

/** A machine with a stable identity. Spec fields are refreshed in place on reload. */
export type Machine = MachineSpec & {
  /** false once the machine disappeared from the machines files (kept so its statistics survive). */
  listed: boolean;
  /** Free-form runtime state owned by other layers; never touched by the monitor. */
  state: Record<string, unknown>;
};

export interface MachinesChange {
  added: Machine[];
  removed: Machine[];
  changed: Machine[];
  /** The machines now in force (listed ones), in file order. */
  machines: Machine[];
}

export interface MachinesError {
  errors: MachineFileError[];
  messages: string[];
}

export interface MachinesMonitorOptions {
  /** Machines files in order. An empty list means "no machines file": the implicit localhost machine. */
  files: string[];
  /** Poll interval for stat-based change detection (Hydra: 30 s). */
  pollIntervalMs?: number;
  /** Use fs.watch on the files' directories for prompt reloads (poll stays as the fallback). */
  watch?: boolean;
  /** Delay between a file-system event and the reload, to let editors finish writing. */
  debounceMs?: number;
  /** Supplies the implicit localhost machine (defaults to asking the local Nix). */
  implicitMachine?: () => Promise<MachineSpec>;
}

const SPEC_KEYS: (keyof MachineSpec)[] = [
  'kind',
  'host',
  'port',
  'user',
  'systems',
  'sshKey',
  'maxJobs',
  'speedFactor',
  'supportedFeatures',
  'mandatoryFeatures',
  'publicHostKey',
  'remoteStore',
];

function sameSpec(a: MachineSpec, b: MachineSpec): boolean {
  return SPEC_KEYS.every((k) => JSON.stringify(a[k]) === JSON.stringify(b[k]));
}

export interface MachinesMonitorEvents {
  change: [MachinesChange];
  error: [MachinesError];
}

export class MachinesMonitor extends EventEmitter<MachinesMonitorEvents> {
  private readonly files: string[];
  private readonly pollIntervalMs: number;
  private readonly useWatch: boolean;
  private readonly debounceMs: number;
  private readonly implicitMachine: () => Promise<MachineSpec>;
  private readonly byUri = new Map<string, Machine>();
  private current: Machine[] = [];
  private sources: MachineSource[] = [];
  private pollTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private watchers: FSWatcher[] = [];
  private reloading: Promise<boolean> | undefined;
  private stopped = false;
  private loadedOnce = false;
  /** Errors of the most recent failed reload (empty after a successful one). */
  lastErrors: MachineFileError[] = [];

  constructor(options: MachinesMonitorOptions) {
    super();
    this.files = options.files.map((f) => resolve(f));
    this.pollIntervalMs = options.pollIntervalMs ?? 30_000;
    this.useWatch = options.watch ?? true;
    this.debounceMs = options.debounceMs ?? 50;
    this.implicitMachine = options.implicitMachine ?? (() => implicitLocalhost());
  }

  /** Loads the configuration once and starts watching. Resolves true when a good configuration is in force. */
  async start(): Promise<boolean> {
    const ok = await this.reload();
    if (this.files.length === 0 || this.stopped) return ok;
    this.pollTimer = setInterval(() => void this.checkForChanges(), this.pollIntervalMs);
    this.pollTimer.unref();
    if (this.useWatch) this.startWatching();
    return ok;
  }

  stop(): void {
    this.stopped = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }

  /** True once a configuration was loaded successfully. */
  get ready(): boolean {
    return this.loadedOnce;
  }

  /** Machines currently in force, in file order. */
  machines(): Machine[] {
    return [...this.current];
  }

  /** Every machine ever seen, including removed ones (listed = false). */
  all(): Machine[] {
    return [...this.byUri.values()];
  }

  get(uri: string): Machine | undefined {
    return this.byUri.get(uri);
  }

  /** Re-reads the files now (e.g. on SIGHUP). Resolves true when the new configuration was applied. */
  reload(): Promise<boolean> {
    if (this.reloading) return this.reloading.then(() => this.reload());
    this.reloading = this.doReload().finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  private async doReload(): Promise<boolean> {
    let specs: MachineSpec[];
    let errors: MachineFileError[];
    if (this.files.length === 0) {
      try {
        specs = [await this.implicitMachine()];
        errors = [];
      } catch (e) {
        specs = [];
        errors = [
          {file: '(implicit)', line: 0, field: 'uri', column: 1, problem: (e as Error).message, message: (e as Error).message},
        ];
      }
    } else {
      const loaded = await loadMachinesFiles(this.files);
      specs = loaded.machines;
      errors = loaded.errors;
      this.sources = loaded.sources;
    }
    if (this.stopped) return false;
    if (errors.length > 0) {
      this.lastErrors = errors;
      const payload: MachinesError = {errors, messages: errors.map((e) => e.message)};
      // An 'error' event without a listener would throw; the errors stay available in lastErrors.
      if (this.listenerCount('error') > 0) this.emit('error', payload);
      return false;
    }
    this.lastErrors = [];
    this.apply(specs);
    return true;
  }

  private apply(specs: MachineSpec[]): void {
    const added: Machine[] = [];
    const changed: Machine[] = [];
    const removed: Machine[] = [];
    const next: Machine[] = [];
    const seen = new Set<string>();
    for (const spec of specs) {
      seen.add(spec.uri);
      const existing = this.byUri.get(spec.uri);
      if (!existing) {
        const machine: Machine = {...spec, listed: true, state: {}};
        this.byUri.set(spec.uri, machine);
        added.push(machine);
        next.push(machine);
        continue;
      }
      const wasListed = existing.listed;
      const differs = !sameSpec(existing, spec);
      for (const key of SPEC_KEYS) delete (existing as Partial<MachineSpec>)[key];
      Object.assign(existing, spec, {listed: true});
      if (!wasListed) added.push(existing);
      else if (differs) changed.push(existing);
      next.push(existing);
    }
    for (const machine of this.current) {
      if (!seen.has(machine.uri)) {
        machine.listed = false;
        removed.push(machine);
      }
    }
    this.current = next;
    const first = !this.loadedOnce;
    this.loadedOnce = true;
    if (first || added.length > 0 || removed.length > 0 || changed.length > 0) {
      this.emit('change', {added, removed, changed, machines: this.machines()});
    }
  }

  private async checkForChanges(): Promise<void> {
    if (this.reloading) await this.reloading;
    if (this.stopped) return;
    const fresh: MachineSource[] = [];
    const known = this.sources.length > 0 ? this.sources.map((s) => s.file) : this.files;
    const toCheck = [...new Set([...this.files, ...known])];
    for (const file of toCheck) {
      try {
        const st = await stat(file);
        fresh.push({file, exists: true, ino: st.ino, mtimeMs: st.mtimeMs, size: st.size});
      } catch {
        fresh.push({file, exists: false, ino: 0, mtimeMs: 0, size: 0});
      }
    }
    const previous = new Map(this.sources.map((s) => [s.file, s]));
    const changedOnDisk = fresh.some((s) => {
      const p = previous.get(s.file);
      return !p || p.exists !== s.exists || p.ino !== s.ino || p.mtimeMs !== s.mtimeMs || p.size !== s.size;
    });
    if (changedOnDisk && !this.stopped) await this.reload();
  }

  private startWatching(): void {
    const dirs = new Map<string, Set<string>>();
    for (const file of this.files) {
      const dir = dirname(file);
      if (!dirs.has(dir)) dirs.set(dir, new Set());
      dirs.get(dir)!.add(basename(file));
    }
    for (const s of this.sources) {
      const dir = dirname(s.file);
      if (!dirs.has(dir)) dirs.set(dir, new Set());
      dirs.get(dir)!.add(basename(s.file));
    }
    for (const [dir, names] of dirs) {
      try {
        const w = watch(dir, {persistent: false}, (_event, name) => {
          if (name === null || names.has(String(name))) this.scheduleCheck();
        });
        w.on('error', () => w.close());
        this.watchers.push(w);
      } catch {
        // The directory may not exist (yet); the poll covers it.
      }
    }
  }

  private scheduleCheck(): void {
    if (this.stopped) return;
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      void this.checkForChanges();
    }, this.debounceMs);
    this.debounceTimer.unref();
  }
}
