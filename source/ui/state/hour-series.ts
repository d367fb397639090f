// The last hour of a number, per key, by wall-clock minute: what the console's pictures of the last hour are drawn
// from (each machine's jobs/maxJobs, each system's queue length). Bounded: MINUTES numbers a key (a ring indexed by
// the minute, each slot stamped with the minute it holds), at most `maxKeys` keys; a key without a sample for an
// hour is dropped. Several samples in one minute are averaged.

export const MINUTES = 60;

interface Ring {
  /** The minute (ms / 60 000) each slot holds; a slot with another stamp is empty. */
  stamp: Float64Array;
  sum: Float64Array;
  n: Uint32Array;
  /** Minute of the latest sample. */
  last: number;
}

const minuteOf = (ms: number) => Math.floor(ms / 60_000);

export class HourSeries {
  private readonly rings = new Map<string, Ring>();

  constructor(private readonly maxKeys = 1000) {}

  /** Records `value` for `key` at `now` (ms since epoch). */
  add(key: string, value: number, now: number): void {
    if (!Number.isFinite(value)) return;
    const minute = minuteOf(now);
    let r = this.rings.get(key);
    if (!r) {
      if (this.rings.size >= this.maxKeys) this.makeRoom(minute);
      r = {stamp: new Float64Array(MINUTES).fill(-1), sum: new Float64Array(MINUTES), n: new Uint32Array(MINUTES), last: minute};
      this.rings.set(key, r);
    }
    const slot = minute % MINUTES;
    if (r.stamp[slot] !== minute) {
      r.stamp[slot] = minute;
      r.sum[slot] = 0;
      r.n[slot] = 0;
    }
    r.sum[slot]! += value;
    r.n[slot]! += 1;
    r.last = Math.max(r.last, minute);
  }

  /** The last hour of `key`, oldest minute first (MINUTES values, the current minute last); null: no sample then. */
  get(key: string, now: number): (number | null)[] {
    const r = this.rings.get(key);
    const minute = minuteOf(now);
    const out: (number | null)[] = [];
    for (let m = minute - MINUTES + 1; m <= minute; m++) {
      const slot = ((m % MINUTES) + MINUTES) % MINUTES;
      out.push(r && r.stamp[slot] === m && r.n[slot]! > 0 ? r.sum[slot]! / r.n[slot]! : null);
    }
    return out;
  }

  has(key: string): boolean {
    return this.rings.has(key);
  }

  keys(): string[] {
    return [...this.rings.keys()];
  }

  get size(): number {
    return this.rings.size;
  }

  /** Drops the keys without a sample in the last hour. */
  prune(now: number): void {
    const minute = minuteOf(now);
    for (const [k, r] of this.rings) if (r.last <= minute - MINUTES) this.rings.delete(k);
  }

  private makeRoom(minute: number): void {
    this.prune(minute * 60_000);
    if (this.rings.size < this.maxKeys) return;
    let oldest: string | null = null;
    let at = Infinity;
    for (const [k, r] of this.rings) {
      if (r.last < at) {
        at = r.last;
        oldest = k;
      }
    }
    if (oldest !== null) this.rings.delete(oldest);
  }
}
