// Local work slots: output copies and imports into the coordinator's store take one of `max_local_worker_threads`
// slots (Hydra's C++ runner bounds its local work the same way), so many steps finishing at once do not run as many
// imports at once. A step that finds none free waits in busy phase 35.

export class LocalWorkSlots {
  private inUse = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(readonly size: number) {}

  get busy(): number {
    return this.inUse;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * Takes a slot, waiting for one (after calling `onWait`) when none is free; resolves with its release (idempotent).
   * An abort while waiting rejects and takes nothing.
   */
  async acquire(signal: AbortSignal, onWait: () => void | Promise<void>): Promise<() => void> {
    if (signal.aborted) throw new Error('aborted while waiting for a local worker slot');
    if (this.inUse >= Math.max(1, this.size)) {
      await onWait();
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = () => {
          const i = this.waiters.indexOf(wake);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new Error('aborted while waiting for a local worker slot'));
        };
        signal.addEventListener('abort', onAbort, {once: true});
        this.waiters.push(wake);
      });
    } else {
      this.inUse++;
    }
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const next = this.waiters.shift();
      if (next) next(); // the slot passes straight to the next waiter
      else this.inUse--;
    };
  }
}
