// B2's scale curve: bench/scheduler-scale.ts at several queue sizes (default 15k, 50k and 150k builds, 120
// machines), each in its own process so that peak RSS is that size's alone; prints ingestion time, first dispatch,
// the full dispatch round and RSS per size, and how each figure grows between sizes: the exponent k in
// figure ∝ size^k (k ≈ 1 linear, k ≈ 0 flat, k > 1.2 worse than linear).
//
//   node --import tsx bench/scheduler-scale-curve.ts [--sizes 15000,50000,150000] [--machines 120]
import {spawn} from 'node:child_process';

interface Summary {
  builds: number;
  steps: number;
  firstDispatchS: number | null;
  ingestS: number;
  fullRoundMs: number;
  fullRunnable: number;
  roundMs: number;
  peakRssMiB: number;
  rssIngestedMiB: number;
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const sizes = (argValue('--sizes') ?? '15000,50000,150000').split(',').map(Number);
const machines = Number(argValue('--machines') ?? 120);
for (const v of [...sizes, machines]) if (!Number.isInteger(v) || v < 1) throw new Error(`--sizes and --machines take positive integers, got '${v}'`);

function runOne(size: number): Promise<Summary> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', new URL('./scheduler-scale.ts', import.meta.url).pathname, String(size), String(machines), '--rounds', '100'], {stdio: ['ignore', 'pipe', 'inherit']});
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      process.stdout.write(c);
    });
    child.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('B2-SUMMARY '));
      if (code !== 0 || !line) reject(new Error(`scheduler-scale.ts ${size} exited ${code} without a summary`));
      else resolve(JSON.parse(line.slice('B2-SUMMARY '.length)) as Summary);
    });
  });
}

const results: Summary[] = [];
for (const size of sizes) results.push(await runOne(size));

const figures: Array<{name: string; get: (s: Summary) => number | null; unit: string; digits: number}> = [
  {name: 'steps in the graph', get: (s) => s.steps, unit: '', digits: 0},
  {name: 'first step dispatched after start', get: (s) => s.firstDispatchS, unit: 's', digits: 2},
  {name: 'ingestion, whole queue', get: (s) => s.ingestS, unit: 's', digits: 1},
  {name: 'full dispatch round p50', get: (s) => s.fullRoundMs, unit: 'ms', digits: 1},
  {name: 'runnable at the full round', get: (s) => s.fullRunnable, unit: '', digits: 0},
  {name: 'RSS after ingestion', get: (s) => s.rssIngestedMiB, unit: 'MiB', digits: 0},
  {name: 'peak RSS', get: (s) => s.peakRssMiB, unit: 'MiB', digits: 0},
];
const head = ['figure', ...results.map((r) => `${r.builds / 1000}k builds`), ...results.slice(1).map((r, i) => `k ${results[i]!.builds / 1000}k→${r.builds / 1000}k`)];
const rows = figures.map((f) => {
  const values = results.map((r) => f.get(r));
  const cells = values.map((v) => (v === null ? '—' : `${v.toFixed(f.digits)} ${f.unit}`.trim()));
  const exps = results.slice(1).map((r, i) => {
    const a = values[i];
    const b = values[i + 1];
    if (a === null || b === null || a <= 0 || b <= 0) return '—';
    return (Math.log(b / a) / Math.log(r.builds / results[i]!.builds)).toFixed(2);
  });
  return [f.name, ...cells, ...exps];
});
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join('  ');
console.log(`\nB2 scale curve (${machines} machines; k: growth exponent between sizes, 1 = linear)`);
console.log(line(head));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of rows) console.log(line(r));
