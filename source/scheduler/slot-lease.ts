// A build slot on a machine, taken for one step (or one reproducibility check) and given back exactly once, on
// whichever path the work ends (success, failure, cancel, an exception) — the Rust runner's StepGuard idea.
import type {RunnerMachine} from './machines.js';

export class SlotLease {
  private held = true;

  /** Wraps a slot already counted in `machine.rt.currentJobs`. Use `take` to count one. */
  constructor(readonly machine: RunnerMachine) {}

  /** Counts a slot on `machine` and returns its lease. */
  static take(machine: RunnerMachine): SlotLease {
    machine.rt.currentJobs++;
    return new SlotLease(machine);
  }

  get released(): boolean {
    return !this.held;
  }

  /** Gives the slot back; true the first time, false (and nothing done) after that. */
  release(now = Date.now()): boolean {
    if (!this.held) return false;
    this.held = false;
    const rt = this.machine.rt;
    rt.currentJobs = Math.max(0, rt.currentJobs - 1);
    if (rt.currentJobs === 0) rt.idleSince = now;
    return true;
  }
}
