// One dispatch round (docs/hydra-compat.md, "Dispatch order"): order the runnable steps, then hand each to the best
// available machine that supports it. Pure: no database, no I/O.
import {intern, type Step} from './model.js';
import {compareMachines, isAvailable, supportsStep, type RunnerMachine} from './machines.js';
import {SlotLease} from './slot-lease.js';

export type StepOrder = 'rdeps' | 'critical-path';

export interface Assignment {
  step: Step;
  machine: RunnerMachine;
  /** The slot taken on `machine` for the step; whoever runs the step releases it. */
  lease: SlotLease;
}

/** Lowest share used among the step's jobsets (under-served jobsets go first). */
export function lowestShareUsed(step: Step): number {
  let best = Number.POSITIVE_INFINITY;
  for (const j of step.jobsets) best = Math.min(best, j.shareUsed);
  return Number.isFinite(best) ? best : 0;
}

/** Length of the longest chain of unfinished steps that wait on `step` (itself included). */
export function criticalPathLengths(steps: Iterable<Step>): Map<Step, number> {
  const memo = new Map<Step, number>();
  const visit = (root: Step): number => {
    // Iterative post-order over rdeps (graphs can be deep).
    const stack: Array<{s: Step; expanded: boolean}> = [{s: root, expanded: false}];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (memo.has(top.s)) {
        stack.pop();
        continue;
      }
      if (!top.expanded) {
        top.expanded = true;
        for (const r of top.s.rdeps) if (!memo.has(r)) stack.push({s: r, expanded: false});
        continue;
      }
      let longest = 0;
      for (const r of top.s.rdeps) longest = Math.max(longest, memo.get(r) ?? 0);
      memo.set(top.s, longest + 1);
      stack.pop();
    }
    return memo.get(root)!;
  };
  for (const s of steps) visit(s);
  return memo;
}

/**
 * Dispatch order: global priority ↓, jobset share used ↑, reverse dependencies (or critical path) ↓,
 * local priority ↓, lowest build id ↑; ties keep the order of `steps`.
 *
 * Lazy: the keys are computed once into typed arrays and the steps put in a binary heap (O(n)); each step taken
 * costs O(log n). A round that stops once the machines are full (assignSteps) thus pays O(n + taken · log n)
 * instead of sorting every runnable step.
 */
export function* orderRunnable(steps: readonly Step[], order: StepOrder = 'rdeps'): Generator<Step, void, undefined> {
  const n = steps.length;
  if (n === 0) return;
  const gp = new Float64Array(n);
  const share = new Float64Array(n);
  const weight = new Float64Array(n);
  const lp = new Float64Array(n);
  const bid = new Float64Array(n);
  const paths = order === 'critical-path' ? criticalPathLengths(steps) : null;
  for (let i = 0; i < n; i++) {
    const s = steps[i]!;
    gp[i] = s.highestGlobalPriority;
    share[i] = lowestShareUsed(s);
    weight[i] = paths ? paths.get(s)! : s.rdeps.size;
    lp[i] = s.highestLocalPriority;
    bid[i] = s.lowestBuildId;
  }
  /** Whether step a goes before step b. */
  const before = (a: number, b: number): boolean =>
    gp[a] !== gp[b]
      ? gp[a]! > gp[b]!
      : share[a] !== share[b]
        ? share[a]! < share[b]!
        : weight[a] !== weight[b]
          ? weight[a]! > weight[b]!
          : lp[a] !== lp[b]
            ? lp[a]! > lp[b]!
            : bid[a] !== bid[b]
              ? bid[a]! < bid[b]!
              : a < b;
  const heap = new Int32Array(n);
  for (let i = 0; i < n; i++) heap[i] = i;
  let size = n;
  const siftDown = (at: number): void => {
    const x = heap[at]!;
    for (;;) {
      let c = 2 * at + 1;
      if (c >= size) break;
      if (c + 1 < size && before(heap[c + 1]!, heap[c]!)) c++;
      if (!before(heap[c]!, x)) break;
      heap[at] = heap[c]!;
      at = c;
    }
    heap[at] = x;
  };
  for (let i = (size >> 1) - 1; i >= 0; i--) siftDown(i);
  while (size > 0) {
    const top = heap[0]!;
    heap[0] = heap[--size]!;
    if (size > 0) siftDown(0);
    yield steps[top]!;
  }
}

/** `steps` in dispatch order (orderRunnable), sorted in place. */
export function sortRunnable(steps: Step[], order: StepOrder = 'rdeps'): Step[] {
  const sorted = [...orderRunnable(steps, order)];
  for (let i = 0; i < sorted.length; i++) steps[i] = sorted[i]!;
  return steps;
}

/** Key of the machines a step can use: steps with the same key compete for the same machines. */
export function capabilityKey(step: Step): string {
  return (step.capabilityKey ??= intern(`${step.platform}|${step.requiredFeatures.join(',')}|${step.preferLocal ? 1 : 0}`));
}

/**
 * Assigns runnable steps to machines, taking a slot for each (a SlotLease). Steps are taken in
 * `sorted` order; once no available machine can take steps of some capability, the rest of those
 * are skipped without further checks, so a round is O(steps + assignments × machines).
 */
export function assignSteps(sorted: Iterable<Step>, machines: readonly RunnerMachine[], localSystem: string, now: number): Assignment[] {
  const assignments: Assignment[] = [];
  const exhausted = new Set<string>();
  let available = machines.filter((m) => isAvailable(m, now));
  for (const step of sorted) {
    if (available.length === 0) break;
    if (step.running || !step.runnable || step.after > now) continue;
    const key = capabilityKey(step);
    if (exhausted.has(key)) continue;
    let best: RunnerMachine | null = null;
    for (const m of available) {
      if (!supportsStep(m.spec, step, localSystem)) continue;
      if (!best || compareMachines(m, best) < 0) best = m;
    }
    if (!best) {
      exhausted.add(key);
      continue;
    }
    const lease = SlotLease.take(best);
    step.running = true;
    assignments.push({step, machine: best, lease});
    if (!isAvailable(best, now)) available = available.filter((m) => m !== best);
  }
  return assignments;
}
