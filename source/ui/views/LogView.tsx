// Log (`l`, `:log 12/3`): a window of the log file (the file is indexed by line, never loaded
// whole), follow mode, wrap, search with n/N, and with `t` the time each line arrived (`--:--:--` for
// lines that were in the file when it was opened: Nix logs carry no times of their own).
import React from 'react';
import {Box} from 'ink';
import {Text} from '../components/Text.js';
import {clockTime, sanitize, truncate} from '../format.js';
import {glyphs, paint} from '../theme.js';
import type {ViewProps} from './common.js';

export function LogView(p: ViewProps): React.ReactElement {
  const log = p.state.log;
  if (!log) return <Text dimColor>no log</Text>;
  const g = glyphs(p.theme);
  const title = `log of build ${log.build}${log.stepnr !== null ? ` step ${log.stepnr}` : ''}${log.path ? ` · ${log.path}` : ''}`;
  const times = log.timestamps ? ` · times${log.openedAt !== null ? ` (--:--:-- before ${clockTime(log.openedAt)})` : ''}` : '';
  const status = `${log.total} lines${log.follow ? ` · ${g.follow} following` : ''}${log.wrap ? ' · wrap' : ''}${log.search ? ` · /${log.search}` : ''}${times}`;
  if (log.loading) return <Text dimColor>opening the log of build {log.build}…</Text>;
  if (log.error) {
    return (
      <Box flexDirection="column" height={p.height}>
        <Text wrap="truncate">{title}</Text>
        <Text color={paint(p.theme, 'red')} wrap="wrap">
          {log.error}
        </Text>
      </Box>
    );
  }
  const numW = Math.max(3, String(log.total).length);
  const timeW = log.timestamps ? 9 : 0;
  const textW = Math.max(10, p.width - numW - 1 - timeW);
  const avail = Math.max(1, p.height - 1);
  const out: {no: string; time: string; text: string; line: number}[] = [];
  for (let i = 0; i < log.lines.length && out.length < avail; i++) {
    const lineNo = log.top + i;
    const clean = sanitize(log.lines[i]!);
    const at = log.times[i];
    const time = !log.timestamps ? '' : at === null || at === undefined ? '--:--:-- ' : `${clockTime(at)} `;
    if (log.wrap && clean.length > textW) {
      for (let k = 0; k < clean.length && out.length < avail; k += textW) out.push({no: k === 0 ? String(lineNo + 1) : '', time: k === 0 ? time : ' '.repeat(timeW), text: clean.slice(k, k + textW), line: lineNo});
    } else {
      out.push({no: String(lineNo + 1), time, text: truncate(clean, textW, g.ellipsis), line: lineNo});
    }
  }
  const needle = log.search?.toLowerCase() ?? null;
  return (
    <Box flexDirection="column" height={p.height}>
      <Text wrap="truncate" bold>
        {truncate(title, Math.max(10, p.width - status.length - 3), g.ellipsis)}
        <Text dimColor>{'  ' + status}</Text>
      </Text>
      {out.length === 0 ? <Text dimColor>(the log is empty so far{log.follow ? '; following' : ''})</Text> : null}
      {out.map((l, i) => {
        const hit = needle !== null && l.text.toLowerCase().includes(needle);
        return (
          <Text key={i} wrap="truncate" inverse={l.line === log.match && l.no !== ''} color={paint(p.theme, hit ? 'yellow' : undefined)}>
            <Text dimColor>{l.no.padStart(numW)} </Text>
            {l.time ? <Text color={paint(p.theme, 'cyan')}>{l.time}</Text> : null}
            {l.text}
          </Text>
        );
      })}
    </Box>
  );
}
