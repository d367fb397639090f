// "Running, and run again when asked meanwhile": at most one run of `work` at a time; requests during a run
// make it run once more afterwards, however many there were. The queue scan and the queue-change check use it.

export class Coalesced {
  private current: Promise<void> | null = null;
  private again = false;

  constructor(
    private readonly work: () => Promise<void>,
    /** Checked before every run: once true, nothing more runs. */
    private readonly stopped: () => boolean = () => false,
  ) {}

  /** Starts a run, or asks the current one to run once more. */
  request(): void {
    if (this.stopped()) return;
    if (this.current) {
      this.again = true;
      return;
    }
    this.current = this.loop().finally(() => (this.current = null));
  }

  /** The run in progress, if any. */
  get running(): Promise<void> | null {
    return this.current;
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      await this.work();
    } while (this.again && !this.stopped());
  }
}
