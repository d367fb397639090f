// The comparison table every bench script prints: figure, hydra-ops, peer, ratio (hydra-ops / peer).
export interface Row {
  figure: string;
  ours: number | null;
  peer: number | null;
  unit: string;
  /** Digits after the decimal point (default 1). */
  digits?: number;
}

function fmt(v: number | null, unit: string, digits: number): string {
  if (v === null || !Number.isFinite(v)) return '—';
  return `${v.toFixed(digits)} ${unit}`.trim();
}

export function printTable(title: string, peerName: string, rows: Row[]): void {
  const cells = rows.map((r) => {
    const d = r.digits ?? 1;
    const ratio = r.ours !== null && r.peer !== null && r.peer !== 0 ? `${(r.ours / r.peer).toFixed(2)}x` : '—';
    return [r.figure, fmt(r.ours, r.unit, d), fmt(r.peer, r.unit, d), ratio];
  });
  const head = ['figure', 'hydra-ops', peerName, 'ratio'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join('  ');
  console.log(`\n${title}`);
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const c of cells) console.log(line(c));
}

/** Peak resident set size of this process in MiB (VmHWM). */
export function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** A positive whole-number command-line option `name N` (default `dflt`); a bad value is an error naming it. */
export function intArg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer, got '${process.argv[i + 1]}'`);
  return v;
}
