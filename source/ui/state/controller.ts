// Runs the console: holds the state, feeds keys and data arrivals through the reducer, executes the
// effects against a ConsoleData, and coalesces live updates (LISTEN + polling) into at most a few
// refreshes per second. React reads the state through subscribe()/getState().
import {spawn} from 'node:child_process';
import {FilterError, formatFilterError} from '../../db/filter.js';
import {reduce, initialState} from './reducer.js';
import type {Action, Effect, State} from './model.js';
import {toKeys, type InkKey} from './keymap.js';
import type {Size} from './layout.js';
import type {ChangeKind, ConsoleData, FilterView, LogHandle, ViewName, WindowName} from './types.js';
import {isFilterView, listSource, VIEWS, windowSource} from './views.js';
import {loadView} from './selection.js';

export interface ControllerOptions {
  size: Size;
  view?: ViewName;
  filters?: Partial<Record<FilterView, string | null>>;
  /** Coalescing tick for live updates (default 250 ms: at most 4 refreshes per second). */
  tickMs?: number;
  /** Header refresh period (default 2000 ms). */
  headerMs?: number;
  /** Log growth poll while following (default 250 ms). */
  logPollMs?: number;
  /** A count is re-run at most this often per list (default 3000 ms). */
  countMs?: number;
  /** Writes an escape sequence to the terminal (OSC 52 for `y`); absent: copying only shows the text. */
  terminal?: (sequence: string) => void;
  /** Base URL of Hydra's web UI (the hydraUrl setting), for `o`. */
  hydraUrl?: string | null;
  /** Opens a URL in a browser; resolves false when there is none (default: xdg-open, when a display is set). */
  openUrl?: (url: string) => Promise<boolean>;
  /** Called once when the operator quits. */
  onQuit?: () => void;
  /** Diagnostics (never the terminal while Ink runs). */
  log?: (line: string) => void;
}

function errorText(e: unknown, filter?: string | null): string {
  if (e instanceof FilterError && filter) return formatFilterError(filter, e);
  return e instanceof Error ? e.message : String(e);
}

/** The filter a view's rows were read with (for error reports), if it has one. */
function filterOf(state: State, view: ViewName): string | null {
  return isFilterView(view) ? state.filters[view] : null;
}

/** Opens a URL with xdg-open when a graphical session is there; false when it is not (no DISPLAY, no xdg-open). */
export function openWithXdg(url: string, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  if (!env.DISPLAY && !env.WAYLAND_DISPLAY) return Promise.resolve(false);
  return new Promise((resolve) => {
    const child = spawn('xdg-open', [url], {stdio: 'ignore', detached: true, env});
    child.once('error', () => resolve(false));
    child.once('spawn', () => {
      child.unref();
      resolve(true);
    });
  });
}

export class ConsoleController {
  private state: State;
  private readonly listeners = new Set<() => void>();
  private logHandle: LogHandle | null = null;
  private logOpenSeq = 0;
  private logReadSeq = 0;
  private timers: NodeJS.Timeout[] = [];
  private notifyTimer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  private dirty = new Set<ChangeKind>();
  private counted = new Map<WindowName, {gen: number; at: number; key: string}>();
  private stopped = false;
  private headerRunning = false;
  private logPolling = false;
  private quitCalled = false;
  /** Frames requested by data (not keys), for the coalescing test hooks. */
  renders = 0;

  constructor(
    readonly data: ConsoleData,
    private readonly opts: ControllerOptions,
  ) {
    this.state = initialState({size: opts.size, view: opts.view, filters: opts.filters});
  }

  getState = (): State => this.state;

  subscribe = (fn: () => void): (() => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };

  /** Loads capabilities, the header and the first view; starts live updates. Never blocks on a query. */
  start(): void {
    void this.data.capabilities().then(
      (caps) => this.dispatch({type: 'caps', caps}),
      (e) => this.opts.log?.(`capabilities: ${errorText(e)}`),
    );
    void this.refreshHeader();
    const first = loadView(this.state, true);
    this.state = first.state;
    this.run(first.effects, first.state);
    this.unsubscribe = this.data.subscribe((what) => this.dirty.add(what));
    this.timers.push(setInterval(() => this.tick(), this.opts.tickMs ?? 250));
    this.timers.push(setInterval(() => void this.refreshHeader(), this.opts.headerMs ?? 2000));
    this.timers.push(setInterval(() => void this.pollLog(), this.opts.logPollMs ?? 250));
    for (const t of this.timers) t.unref?.();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    if (this.notifyTimer) clearTimeout(this.notifyTimer);
    this.unsubscribe?.();
    await this.logHandle?.close().catch(() => {});
    this.logHandle = null;
  }

  /** Keyboard input from Ink's useInput (a chunk may hold several keys). */
  input(input: string, key: InkKey): void {
    for (const k of toKeys(input, key)) this.dispatch({type: 'key', key: k}, true);
  }

  key(name: string): void {
    this.dispatch({type: 'key', key: name}, true);
  }

  resize(size: Size): void {
    if (size.columns === this.state.size.columns && size.rows === this.state.size.rows) return;
    this.dispatch({type: 'resize', size}, true);
  }

  dispatch(action: Action, immediate = false): void {
    if (this.stopped) return;
    const before = this.state;
    const r = reduce(before, action);
    this.state = r.state;
    if (r.state !== before) this.notify(immediate);
    this.run(r.effects, r.state);
  }

  private notify(immediate: boolean): void {
    if (immediate) {
      if (this.notifyTimer) clearTimeout(this.notifyTimer);
      this.notifyTimer = null;
      for (const fn of this.listeners) fn();
      return;
    }
    if (this.notifyTimer) return;
    // Data arrivals within one frame become one render.
    this.notifyTimer = setTimeout(() => {
      this.notifyTimer = null;
      this.renders++;
      for (const fn of this.listeners) fn();
    }, 30);
  }

  private tick(): void {
    if (this.state.paused || this.dirty.size === 0) return;
    const dirty = this.dirty;
    this.dirty = new Set();
    const relevant = dirty.has('all') || VIEWS[this.state.view].refreshOn.some((what) => dirty.has(what));
    if (relevant) this.dispatch({type: 'refresh', what: 'visible'});
  }

  private async refreshHeader(): Promise<void> {
    if (this.headerRunning || this.state.paused || this.stopped) return;
    this.headerRunning = true;
    try {
      const header = await this.data.header();
      this.dispatch({type: 'header', header});
    } catch (e) {
      this.opts.log?.(`header: ${errorText(e)}`);
    } finally {
      this.headerRunning = false;
    }
  }

  private async pollLog(): Promise<void> {
    const s = this.state;
    if (this.logPolling || !this.logHandle || s.view !== 'log' || s.paused || !s.log) return;
    this.logPolling = true;
    try {
      const handle = this.logHandle;
      if (await handle.refresh()) {
        if (handle === this.logHandle) this.dispatch({type: 'logGrew', total: handle.lineCount()});
      }
    } catch (e) {
      this.opts.log?.(`log: ${errorText(e)}`);
    } finally {
      this.logPolling = false;
    }
  }

  private run(effects: Effect[], state: State): void {
    for (const e of effects) void this.exec(e, state);
  }

  private async exec(e: Effect, state: State): Promise<void> {
    const d = this.data;
    try {
      switch (e.type) {
        case 'fetch': {
          const source = windowSource(e.list);
          const filter = filterOf(state, e.list);
          try {
            const rows = await d.query(source.page, {filter, order: state.order, reverse: state.reverse, anchor: e.anchor, limit: e.limit});
            this.dispatch({type: 'page', list: e.list, gen: e.gen, merge: e.merge, anchor: e.anchor, limit: e.limit, rows, jump: e.jump}, e.jump === true || e.merge !== 'replace');
          } catch (err) {
            this.dispatch({type: 'pageError', list: e.list, gen: e.gen, error: errorText(err, filter)});
          }
          return;
        }
        case 'count': {
          const source = windowSource(e.list);
          const key = source.countKey(state);
          const last = this.counted.get(e.list);
          const now = Date.now();
          const known = this.state[e.list].total;
          if (last && last.key === key && now - last.at < (this.opts.countMs ?? 3000) && known !== null) {
            // Recent enough: keep the total we have (re-sent under the new generation).
            this.dispatch({type: 'count', list: e.list, gen: e.gen, total: known});
            return;
          }
          this.counted.set(e.list, {gen: e.gen, at: now, key});
          this.dispatch({type: 'count', list: e.list, gen: e.gen, total: await d.query(source.count, {filter: filterOf(state, e.list), order: state.order})});
          return;
        }
        case 'load': {
          try {
            if (e.what === 'overview') this.dispatch({type: 'overview', data: await d.overview()});
            else if (e.what === 'runner') this.dispatch({type: 'runnerStats', data: await d.runnerStats()});
            else this.dispatch({type: 'list', list: e.what, rows: await listSource(e.what).fetch(d, state)});
          } catch (err) {
            this.dispatch({type: 'listError', list: e.what, error: errorText(err, e.what === 'overview' || e.what === 'runner' ? null : filterOf(state, e.what))});
          }
          return;
        }
        case 'detail': {
          try {
            this.dispatch({type: 'detail', id: e.id, data: await d.buildDetail(e.id)});
          } catch (err) {
            this.dispatch({type: 'detail', id: e.id, data: null, error: errorText(err)});
          }
          return;
        }
        case 'detailLog': {
          // The Log tab: the last lines of a step's log, read once per load (the log view follows it live).
          let handle: LogHandle | null = null;
          try {
            handle = e.stepnr !== undefined ? await d.openLog(e.build, e.stepnr) : await d.openLog(e.build);
            const total = handle.lineCount();
            const from = Math.max(0, total - e.count);
            const lines = await handle.lines(from, e.count);
            this.dispatch({type: 'detailLog', build: e.build, stepnr: handle.stepnr, path: handle.path, lines, total, error: null});
          } catch (err) {
            this.dispatch({type: 'detailLog', build: e.build, stepnr: e.stepnr ?? null, path: null, lines: [], total: 0, error: errorText(err)});
          } finally {
            await handle?.close().catch(() => {});
          }
          return;
        }
        case 'openLog': {
          const seq = ++this.logOpenSeq;
          const old = this.logHandle;
          this.logHandle = null;
          await old?.close().catch(() => {});
          try {
            const handle = e.file !== undefined ? await d.openFile(e.file) : await d.openLog(e.build, e.stepnr);
            if (seq !== this.logOpenSeq || this.state.view !== 'log') {
              await handle.close();
              return;
            }
            this.logHandle = handle;
            this.dispatch({type: 'logOpened', build: e.build, stepnr: handle.stepnr, path: handle.path, total: handle.lineCount(), openedAt: handle.openedAt});
          } catch (err) {
            this.dispatch({type: 'logError', build: e.build, error: errorText(err)});
          }
          return;
        }
        case 'closeLog': {
          this.logOpenSeq++;
          const old = this.logHandle;
          this.logHandle = null;
          await old?.close().catch(() => {});
          return;
        }
        case 'readLog': {
          const handle = this.logHandle;
          if (!handle) return;
          const seq = ++this.logReadSeq;
          const lines = await handle.lines(e.top, e.count);
          if (seq !== this.logReadSeq || handle !== this.logHandle) return;
          this.dispatch({type: 'logLines', top: e.top, total: handle.lineCount(), lines, times: handle.times(e.top, lines.length)}, true);
          return;
        }
        case 'searchLog': {
          const handle = this.logHandle;
          if (!handle) return;
          const line = await handle.search(e.needle, e.from, e.backwards);
          if (handle === this.logHandle) this.dispatch({type: 'searchResult', needle: e.needle, line}, true);
          return;
        }
        case 'preview':
          this.dispatch({type: 'previewed', req: e.req, outcome: await d.act(e.req)}, true);
          return;
        case 'act':
          this.dispatch({type: 'acted', req: e.req, outcome: await d.act(e.req)}, true);
          return;
        case 'lastCheck':
          this.dispatch({type: 'lastCheck', build: e.build, check: await d.lastCheck(e.build)}, true);
          return;
        case 'countMarked':
          this.dispatch({type: 'markCount', selection: e.selection, count: await d.query(windowSource('builds').count, {filter: e.selection, order: 'id-desc'})});
          return;
        case 'pause':
          if (!e.paused) {
            this.dirty.add('all');
            void this.refreshHeader();
          }
          return;
        case 'copy': {
          // OSC 52: the terminal (and tmux with set-clipboard on) puts the text on the clipboard.
          const osc = `\u001B]52;c;${Buffer.from(e.text, 'utf8').toString('base64')}\u0007`;
          if (this.opts.terminal) this.opts.terminal(osc);
          // The text comes first, so it stays visible (to copy by hand) however narrow the footer.
          const how = this.opts.terminal ? 'copied via OSC 52 (if the terminal ignores it, copy it from here)' : 'copy it from here';
          this.dispatch({type: 'message', text: `${e.text} — ${e.what} ${how}`}, true);
          return;
        }
        case 'open': {
          const base = this.opts.hydraUrl;
          if (!base) {
            this.dispatch({type: 'message', text: 'open: set the web UI address first: hydra-ops config set hydraUrl https://hydra.example.org', error: true}, true);
            return;
          }
          const url = base.replace(/\/+$/, '') + e.path;
          const opened = await (this.opts.openUrl ?? openWithXdg)(url).catch(() => false);
          this.dispatch({type: 'message', text: opened ? `opened ${url}` : `${url} — no browser here (xdg-open or DISPLAY missing)`}, true);
          return;
        }
        case 'quit':
          if (!this.quitCalled) {
            this.quitCalled = true;
            this.opts.onQuit?.();
          }
          return;
      }
    } catch (err) {
      this.opts.log?.(`${e.type}: ${errorText(err)}`);
      this.dispatch({type: 'message', text: `${e.type}: ${errorText(err)}`, error: true});
    }
  }
}
