// Props every view receives.
import type {State} from '../state/model.js';
import type {Theme} from '../theme.js';

export interface ViewProps {
  state: State;
  theme: Theme;
  width: number;
  /** Lines available to the view. */
  height: number;
  /** ms since epoch (injectable for tests). */
  now: number;
}

export function ageSec(now: number, unixSeconds: number | null | undefined): number | null {
  return unixSeconds ? Math.max(0, now / 1000 - unixSeconds) : null;
}
