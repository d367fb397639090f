// Renders the console with ink-testing-library at a chosen terminal size against a ConsoleData,
// with helpers that follow the reliable test shape: a macrotask before the first key, one key per
// write, and waiting for the frame instead of sleeping.
import React from 'react';
import {render} from 'ink-testing-library';
import {App} from '../../source/ui/app.js';
import {ConsoleController, type ControllerOptions} from '../../source/ui/state/controller.js';
import type {ConsoleData} from '../../source/ui/state/types.js';
import type {Theme} from '../../source/ui/theme.js';
import {NOW} from './ui-fake.js';

export const KEYS = {
  up: '\u001B[A',
  down: '\u001B[B',
  pgup: '\u001B[5~',
  pgdn: '\u001B[6~',
  esc: '\u001B',
  enter: '\r',
  ctrlD: '\u0004',
  ctrlC: '\u0003',
  backspace: '\u007F',
  tab: '\t',
};

const macrotask = () => new Promise((r) => setTimeout(r, 0));

// eslint-disable-next-line no-control-regex
export const strip = (s: string | undefined) => (s ?? '').replace(/\u001B\[[0-9;]*m/g, '');

export interface Rendered {
  controller: ConsoleController;
  frame(): string;
  /** Writes one key and waits a macrotask. */
  press(...keys: string[]): Promise<void>;
  /** Types text one character per write. */
  type(text: string): Promise<void>;
  waitFor(pred: (frame: string) => boolean, what: string, timeoutMs?: number): Promise<string>;
  stdinWrite(chunk: string): void;
  unmount(): Promise<void>;
  quitCalls: number;
}

export async function renderConsole(
  data: ConsoleData,
  opts: {columns?: number; rows?: number; theme?: Theme; controller?: Partial<ControllerOptions>; now?: number} = {},
): Promise<Rendered> {
  const size = {columns: opts.columns ?? 80, rows: opts.rows ?? 24};
  let quitCalls = 0;
  const controller = new ConsoleController(data, {size, tickMs: 20, headerMs: 60_000, logPollMs: 20, onQuit: () => quitCalls++, ...opts.controller});
  const theme = opts.theme ?? {color: false, unicode: true};
  const now = opts.now ?? NOW;
  const r = render(<App controller={controller} theme={theme} size={size} now={() => now} clockMs={0} />);
  controller.start();
  await macrotask();
  const self: Rendered = {
    controller,
    frame: () => strip(r.lastFrame()),
    async press(...keys) {
      for (const k of keys) {
        r.stdin.write(k);
        await macrotask();
      }
    },
    async type(text) {
      for (const ch of text) {
        r.stdin.write(ch);
        await macrotask();
      }
    },
    async waitFor(pred, what, timeoutMs = 2000) {
      const deadline = Date.now() + timeoutMs;
      while (true) {
        const f = strip(r.lastFrame());
        if (pred(f)) return f;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last frame:\n${f}`);
        await new Promise((res) => setTimeout(res, 5));
      }
    },
    stdinWrite: (chunk) => r.stdin.write(chunk),
    async unmount() {
      r.unmount();
      await controller.stop();
    },
    get quitCalls() {
      return quitCalls;
    },
  };
  return self;
}
