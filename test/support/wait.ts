// Polling helpers for end-to-end tests: wait for a condition with a deadline and a clear message.
import {execFileSync} from 'node:child_process';

/** Polls `fn` every `everyMs` until it returns a truthy value (returned) or `timeoutMs` passes (throws). */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  timeoutMs = 30_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Pids of processes whose command line matches `pattern` (pgrep -f). */
export function pgrep(pattern: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', pattern], {encoding: 'utf8'}).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
