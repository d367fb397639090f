// Daemon log lines on stderr, one per event: plain text (journald adds timestamps) or JSON.
// Identical error/warning messages repeated within a minute are folded into one line with a count.
export type Level = 'error' | 'warn' | 'info' | 'debug';
const ORDER: Record<Level, number> = {error: 0, warn: 1, info: 2, debug: 3};

export interface Logger {
  (level: Level, message: string, fields?: Record<string, unknown>): void;
  flush(): void;
}

export function createLogger(opts: {format: 'text' | 'json'; level?: Level; write?: (line: string) => void; now?: () => number}): Logger {
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const threshold = ORDER[opts.level ?? 'info'];
  const now = opts.now ?? Date.now;
  const recent = new Map<string, {first: number; suppressed: number}>();

  const emit = (level: Level, message: string, fields?: Record<string, unknown>) => {
    if (opts.format === 'json') {
      write(JSON.stringify({time: new Date(now()).toISOString(), level, message, ...fields}));
    } else {
      const extra = fields && Object.keys(fields).length > 0 ? ' ' + Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ') : '';
      write(`${level}: ${message.replace(/\n/g, ' ⏎ ')}${extra}`);
    }
  };

  const flushKey = (key: string, entry: {suppressed: number}, level: Level) => {
    if (entry.suppressed > 0) emit(level, `(the previous message repeated ${entry.suppressed} more time${entry.suppressed === 1 ? '' : 's'})`, {repeated: key});
  };

  const log = ((level: Level, message: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] > threshold) return;
    if (level === 'error' || level === 'warn') {
      const key = `${level}\0${message}`;
      const entry = recent.get(key);
      const t = now();
      if (entry && t - entry.first < 60_000) {
        entry.suppressed++;
        return;
      }
      if (entry) flushKey(message, entry, level);
      recent.set(key, {first: t, suppressed: 0});
      if (recent.size > 1000) recent.clear();
    }
    emit(level, message, fields);
  }) as Logger;
  log.flush = () => {
    for (const [key, entry] of recent) flushKey(key.split('\0')[1]!, entry, key.split('\0')[0] as Level);
    recent.clear();
  };
  return log;
}
