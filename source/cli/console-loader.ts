// Loading the console (Ink and React) on demand, so script-mode commands never pay for it.
//
// Ink decides once, when it is first imported, whether it runs in CI (CI or CONTINUOUS_INTEGRATION
// set): there it renders only the final frame. The console only ever runs on a terminal, where
// that would leave the screen blank, so those variables are cleared first when stdout is one.
import type * as ConsoleModule from '../ui/console.js';

export type {ConsoleModule};

export async function loadConsole(): Promise<typeof ConsoleModule> {
  if (process.stdout.isTTY) {
    delete process.env.CI;
    delete process.env.CONTINUOUS_INTEGRATION;
  }
  return import('../ui/console.js');
}
