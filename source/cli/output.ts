// Script-mode output: data on stdout (human table or one JSON document), diagnostics on stderr,
// no ANSI when stdout is not a terminal or NO_COLOR is set, quiet exit on EPIPE (`| head`).
import {escapeControl, escapeControlKeepLines} from '../config/escape.js';
import {CliError, EXIT} from './exit-codes.js';

let epipeHandled = false;
let stdoutGone: (() => void) | null = null;

/**
 * `hydra-ops builds | head` closes the pipe early (EPIPE), a dropped terminal fails writes with EIO:
 * exit quietly with status 0 — or, while the console runs, let it stop gracefully instead.
 */
export function handleEpipe(stream: NodeJS.WriteStream = process.stdout): void {
  if (epipeHandled) return;
  epipeHandled = true;
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE' || e.code === 'EIO') {
      if (stdoutGone) stdoutGone();
      else process.exit(0);
      return;
    }
    throw e;
  });
}

/** While set, a closed stdout calls `fn` instead of exiting (the console stops its scheduler first). */
export function onStdoutGone(fn: (() => void) | null): void {
  stdoutGone = fn;
}

export function useColor(stream: NodeJS.WriteStream = process.stdout): boolean {
  if (process.env.NO_COLOR) return false;
  if (process.env.FORCE_COLOR) return true;
  return stream.isTTY === true;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** One line of NDJSON (streaming commands). */
export function printNdjson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n');
}

export interface Column<T> {
  header: string;
  value: (row: T) => string | number | null | undefined;
  align?: 'left' | 'right';
}

export function renderTable<T>(rows: T[], columns: Column<T>[]): string {
  const cells = rows.map((r) => columns.map((c) => formatCell(c.value(r))));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => (columns[i]!.align === 'right' ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n') + '\n';
}

/** A cell's text: names, messages and machine names come from the database, a jobset or a builder, so control
 * characters (terminal escape sequences, newlines) are shown escaped rather than sent to the terminal. */
function formatCell(v: string | number | null | undefined): string {
  if (v === null || v === undefined) return '-';
  return escapeControl(String(v));
}

export function printTable<T>(rows: T[], columns: Column<T>[]): void {
  process.stdout.write(renderTable(rows, columns));
}

/** Reports an error the way the calling mode expects and returns the exit code. */
export function reportError(error: unknown, json: boolean): number {
  const cli = error instanceof CliError ? error : null;
  const exitCode = cli ? cli.exitCode : EXIT.failed;
  const message = error instanceof Error ? error.message : String(error);
  if (json) {
    process.stdout.write(
      JSON.stringify({error: {code: cli ? cli.code : 'failed', message, ...(cli?.details !== undefined ? {details: cli.details} : {})}}) + '\n',
    );
  } else {
    // Messages quote names, paths and errors from the database, a jobset or a builder: no raw control characters.
    process.stderr.write(`hydra-ops: ${escapeControlKeepLines(message)}\n`);
  }
  return exitCode;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '-';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}
