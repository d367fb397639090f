// Coalesces many small set look-ups (store validity, FailedPaths) issued by concurrent build loads
// into a few large ones: requests made in the same turn of the event loop share one call.
export type SetLookup = (keys: string[]) => Promise<Set<string>>;

export class LookupBatcher {
  private pending = new Map<string, Array<{resolve: (v: boolean) => void; reject: (e: unknown) => void}>>();
  private scheduled = false;
  /** Number of underlying calls made (diagnostics, benchmarks). */
  calls = 0;

  constructor(
    private readonly lookup: SetLookup,
    private readonly maxKeys = 5000,
  ) {}

  /** The subset of `keys` the lookup reports. */
  async filter(keys: string[]): Promise<Set<string>> {
    if (keys.length === 0) return new Set();
    const hits = await Promise.all(keys.map((k) => this.one(k)));
    return new Set(keys.filter((_, i) => hits[i]));
  }

  private one(key: string): Promise<boolean> {
    return new Promise((resolve, reject) => {
      const waiters = this.pending.get(key);
      if (waiters) waiters.push({resolve, reject});
      else this.pending.set(key, [{resolve, reject}]);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = new Map();
    const keys = [...batch.keys()];
    for (let i = 0; i < keys.length; i += this.maxKeys) {
      const chunk = keys.slice(i, i + this.maxKeys);
      this.calls++;
      try {
        const found = await this.lookup(chunk);
        for (const k of chunk) for (const w of batch.get(k)!) w.resolve(found.has(k));
      } catch (e) {
        for (const k of chunk) for (const w of batch.get(k)!) w.reject(e);
      }
    }
  }
}
