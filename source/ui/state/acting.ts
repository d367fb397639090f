// What the console's action keys ask for: the request for the selected (or marked) builds or the
// selected machine, a dry-run preview first where the operator must confirm the exact scope, and the
// confirmation dialog built from that preview. The controller runs the requests (effects).
import {needsTypedConfirm} from '../../actions/confirm.js';
import {refuse, type Result, type State} from './model.js';
import type {ActionOutcome, ActionRequest} from './types.js';
import {isFilterView, selectedEval, VIEWS} from './views.js';
import {currentBuildId} from './selection.js';

/** The builds an action acts on: the marked ones, else the selected one. */
export function targets(state: State): number[] {
  if (VIEWS[state.view].marks && state.marks.length > 0) return [...state.marks].sort((a, b) => a - b);
  const id = currentBuildId(state);
  return id === null ? [] : [id];
}

/**
 * What a mark-all (`a`) acts on, in the filter grammar: the Builds view's filter plus its sort's
 * scope (queue order lists unfinished builds only, latest-finished finished ones only).
 */
export function markAllSelection(state: State): string {
  const scope = state.order === 'queue' ? 'status:queued' : state.order === 'stoptime' ? 'status:finished' : '';
  return [state.filters.builds?.trim() ?? '', scope].filter((t) => t !== '').join(' ');
}

export function buildAction(state: State, kind: 'restart' | 'cancel' | 'bump' | 'check', toFront = false): Result {
  const all = VIEWS[state.view].marks ? state.markAll : null;
  if (all) {
    // The selection is the filter: previewed in SQL, then confirmed with the exact count.
    if (kind === 'check') return refuse(state, kind, 'check one build at a time (esc clears the marks)');
    const req: ActionRequest = {kind, filter: all.selection, dryRun: true, ...(toFront ? {toFront: true} : {})};
    return {state: {...state, busyAction: true, message: {text: `${kind}: counting every build matching ${all.selection || 'no filter (all builds)'}…`, error: false}}, effects: [{type: 'preview', req}]};
  }
  const ids = targets(state);
  if (ids.length === 0) return refuse(state, kind, 'no build selected here');
  const req: ActionRequest = {kind, ids, ...(toFront ? {toFront: true} : {})};
  // Cancel is always confirmed; other build actions are confirmed when they touch more than one build.
  if (kind === 'cancel' || ids.length > 1) return {state: {...state, busyAction: true, message: {text: `${kind}: checking the exact scope…`, error: false}}, effects: [{type: 'preview', req: {...req, dryRun: true}}]};
  return {state: {...state, busyAction: true, message: {text: `${toFront ? 'bump to the front' : kind} build ${ids[0]}…`, error: false}}, effects: [{type: 'act', req}]};
}

/** `r` / `ctrl-d` on the Evals view: Hydra's per-eval restart-failed / cancel-eval, previewed with the exact scope first. */
export function evalAction(state: State, kind: 'restart-failed' | 'cancel-eval'): Result {
  const e = selectedEval(state);
  if (!e) return refuse(state, kind, 'no evaluation selected');
  return {
    state: {...state, busyAction: true, message: {text: `${kind} eval ${e.id}: checking the exact scope…`, error: false}},
    effects: [{type: 'preview', req: {kind, eval: e.id, dryRun: true}}],
  };
}

/** `i` on the Machines view: ping the selected machine (read-only, so allowed in read-only mode). */
export function pingAction(state: State): Result {
  const m = state.machines.rows[state.machines.selected];
  if (!m) return refuse(state, 'ping', 'no machine selected');
  return {state: {...state, busyAction: true, message: {text: `pinging ${m.name}…`, error: false}}, effects: [{type: 'act', req: {kind: 'ping', machine: m.uri}}]};
}

export function machineAction(state: State, kind: 'drain' | 'enable'): Result {
  const m = state.machines.rows[state.machines.selected];
  if (!m) return refuse(state, kind, 'no machine selected');
  const req: ActionRequest = {kind, machine: m.uri};
  if (kind === 'drain') {
    return {
      state: {
        ...state,
        mode: 'dialog',
        dialog: {
          title: `Drain ${m.name}?`,
          lines: [`No new steps will be sent to ${m.uri}; its ${m.currentJobs ?? 0} running step(s) finish.`, 'e enables it again.'],
          req,
          typed: null,
          input: '',
          error: null,
        },
      },
      effects: [],
    };
  }
  return {state: {...state, busyAction: true, message: {text: `enabling ${m.name}…`, error: false}}, effects: [{type: 'act', req}]};
}

/** A dry run came back: the confirmation dialog with the exact scope, or why there is nothing to do. */
export function previewed(state: State, req: ActionRequest, o: ActionOutcome): State {
  const base: State = {...state, busyAction: false};
  if (!o.ok) return {...base, message: {text: `${req.kind}: ${o.message}`, error: true}};
  const n = o.changed?.length ?? 0;
  const of = o.targets?.length ?? n;
  const isEval = req.eval !== undefined;
  if (n === 0) {
    if (isEval) return {...base, message: {text: `${req.kind} eval ${req.eval}: nothing to do — no ${req.kind === 'restart-failed' ? 'failed' : 'queued'} builds`, error: false}};
    return {...base, message: {text: `${req.kind}: nothing to do — ${of} selected build(s) already in that state`, error: false}};
  }
  const plural = n === 1 ? '' : 's';
  const title = isEval
    ? `${req.kind === 'restart-failed' ? `Restart ${n} failed build${plural}` : `Cancel ${n} queued build${plural}`} of eval ${req.eval}${o.scope ? ` ${o.scope}` : ''}?`
    : `${req.kind[0]!.toUpperCase() + req.kind.slice(1)} ${n} build${plural}${o.scope ? ` ${o.scope}` : ''}?`;
  const lines: string[] = [];
  const ids = o.changed ?? [];
  lines.push(`builds: ${ids.slice(0, 12).join(', ')}${ids.length > 12 ? ` … and ${ids.length - 12} more` : ''}`);
  if (of > n) lines.push(`${of - n} of the ${of} selected are already in that state and stay as they are.`);
  const v = state.view;
  if (req.filter === undefined && VIEWS[v].marks && isFilterView(v) && state.filters[v]) lines.push(`filter: ${state.filters[v]}`);
  const typed = needsTypedConfirm(n) ? n : null;
  // An eval action runs eval-wide again when confirmed (Hydra's semantics); a build action on the ids shown.
  // A mark-all's filter was resolved by the preview: the confirmed action runs on exactly the ids counted.
  if (req.filter !== undefined) lines.push(`all builds matching: ${req.filter || '(no filter: every build)'}`);
  const {filter: _resolved, ...asIds} = req;
  const confirmed: ActionRequest = isEval ? {...req, dryRun: false} : {...asIds, ids: o.changed, dryRun: false};
  return {...base, mode: 'dialog', message: null, dialog: {title, lines, req: confirmed, typed, input: '', error: null}};
}
