// Post-build commands from hydra.conf, written the way Hydra's RunCommand plugin reads them:
//
//   <runcommand>
//     job = myproject:*:*          # project:jobset:job, `*` matches anything (default *:*:*)
//     command = ./notify.sh        # run with sh -c; HYDRA_JSON names a JSON file describing the build
//     timeout = 300                # hydra-ops: seconds before the command's process group is killed (default 600)
//   </runcommand>
//
// Several blocks may be given. `<hydra-ops-runcommand>` blocks take the same keys and are read by hydra-ops only:
// use them when hydra-notify also runs (it would run `<runcommand>` blocks itself, so each command would run twice).
// Hydra matches each part of `job` exactly or as a lone `*`; hydra-ops also accepts
// `*` inside a part (`nixpkgs:release-*:*`), a superset. `events` other than buildFinished are not run by hydra-ops.
import {createHash} from 'node:crypto';
import {readFileSync} from 'node:fs';
import type {HydraConf} from './hydra-conf.js';

export interface PostBuildCommand {
  /** Stable id: a hash of matcher and command (editing either makes a new command). */
  id: string;
  matcher: string;
  command: string;
  timeoutSeconds: number;
  /** `file:line` of the block. */
  source: string;
  /** SHA-256 (hex) of the command text: with the id, what a queued run records instead of the text. */
  sha256: string;
}

export const DEFAULT_POST_BUILD_TIMEOUT = 600;

/** Block names read: Hydra's own, and one hydra-notify ignores. */
export const BLOCKS = ['runcommand', 'hydra-ops-runcommand'];

export function commandSha256(command: string): string {
  return createHash('sha256').update(command, 'utf8').digest('hex');
}

/**
 * The configured command a queued run stands for: same id (matcher and text) and same text hash. A run is only
 * ever executed with the text of the current hydra.conf; undefined means the command is no longer configured.
 */
export function configuredCommand(
  commands: readonly PostBuildCommand[],
  run: {command_id: string; command_sha256: string | null},
): PostBuildCommand | undefined {
  return commands.find((c) => c.id === run.command_id && c.sha256 === run.command_sha256);
}

export function commandId(matcher: string, command: string): string {
  return createHash('sha256').update(`${matcher}\0${command}`).digest('hex').slice(0, 16);
}

/** Checks a `project:jobset:job` matcher; returns a problem or undefined. */
export function checkMatcher(matcher: string): string | undefined {
  const parts = matcher.split(':');
  if (parts.length > 3) return `job matcher "${matcher}" has more than three parts (project:jobset:job)`;
  if (parts.some((p) => p === '')) return `job matcher "${matcher}" has an empty part (use * to match anything)`;
  return undefined;
}

function globPart(pattern: string, value: string): boolean {
  if (pattern === '*') return true;
  if (!pattern.includes('*')) return pattern === value;
  const re = new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(value);
}

/** Does `project:jobset:job` (missing parts = `*`) match the build? */
export function matchesJob(matcher: string, project: string, jobset: string, job: string): boolean {
  const [p = '*', s = '*', j = '*'] = matcher.split(':');
  return globPart(p, project) && globPart(s, jobset) && globPart(j, job);
}

/** The line of the `<runcommand>` opening above `line` in `file` (block identity), or `line` itself. */
function blockStart(lines: Map<string, string[]>, file: string, line: number): number {
  let text = lines.get(file);
  if (!text) {
    try {
      text = readFileSync(file, 'utf8').split('\n');
    } catch {
      text = [];
    }
    lines.set(file, text);
  }
  for (let i = Math.min(line, text.length) - 1; i >= 0; i--) if (/^\s*<\s*(hydra-ops-)?runcommand\b/i.test(text[i]!)) return i + 1;
  return line;
}

/** The post-build commands of a parsed hydra.conf, with a warning for each block that cannot be used. */
export function postBuildCommands(conf: HydraConf | null): {commands: PostBuildCommand[]; warnings: string[]} {
  const commands: PostBuildCommand[] = [];
  const warnings: string[] = [];
  if (!conf) return {commands, warnings};
  const lines = new Map<string, string[]>();
  const blocks = new Map<string, {file: string; line: number; keys: Map<string, {value: string; line: number}>}>();
  for (const e of conf.entries) {
    if (e.blocks.length !== 1 || !BLOCKS.includes(e.blocks[0]!)) continue;
    const start = blockStart(lines, e.file, e.line);
    const key = `${e.file}:${start}`;
    let b = blocks.get(key);
    if (!b) blocks.set(key, (b = {file: e.file, line: start, keys: new Map()}));
    b.keys.set(e.key, {value: e.value, line: e.line});
  }
  for (const b of blocks.values()) {
    const at = `${b.file}:${b.line}`;
    const command = b.keys.get('command')?.value;
    const matcher = b.keys.get('job')?.value ?? '*:*:*';
    if (command === undefined || command.trim() === '') {
      warnings.push(`${at}: <runcommand> block without a command; ignored`);
      continue;
    }
    const bad = checkMatcher(matcher);
    if (bad) {
      warnings.push(`${b.file}:${b.keys.get('job')!.line}: ${bad}; block ignored`);
      continue;
    }
    const events = b.keys.get('events')?.value;
    if (events !== undefined && !events.split(/\s+/).includes('buildFinished')) {
      warnings.push(`${at}: <runcommand> for events "${events}" is not run by hydra-ops (only buildFinished)`);
      continue;
    }
    let timeoutSeconds = DEFAULT_POST_BUILD_TIMEOUT;
    const t = b.keys.get('timeout');
    if (t !== undefined) {
      if (!/^[0-9]+$/.test(t.value.trim()) || Number(t.value) <= 0) {
        warnings.push(`${b.file}:${t.line}: timeout "${t.value}" is not a positive number of seconds; using ${DEFAULT_POST_BUILD_TIMEOUT}`);
      } else timeoutSeconds = Number(t.value);
    }
    commands.push({id: commandId(matcher, command), matcher, command, timeoutSeconds, source: at, sha256: commandSha256(command)});
  }
  return {commands, warnings};
}
