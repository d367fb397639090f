// Hydra's build and step status codes (Builds.buildStatus, BuildSteps.status) and busy phases
// (BuildSteps.busy): one table of their names. Script mode and the filter grammar use `name`, the
// console its narrow `short` label, post-build command payloads `event` (see README, post-build commands).

export interface StatusName {
  /** Script output and the filter grammar (`status:failedwithoutput`). */
  name: string;
  /** The console's status column (at most 11 characters). */
  short: string;
  /** Post-build command payloads. */
  event: string;
}

export const BUILD_STATUS: Readonly<Record<number, StatusName>> = {
  0: {name: 'success', short: 'success', event: 'success'},
  1: {name: 'failed', short: 'failed', event: 'failed'},
  2: {name: 'depfailed', short: 'depfailed', event: 'dependency-failed'},
  3: {name: 'aborted', short: 'aborted', event: 'aborted'},
  4: {name: 'cancelled', short: 'cancelled', event: 'cancelled'},
  6: {name: 'failedwithoutput', short: 'failed+out', event: 'failed-with-output'},
  7: {name: 'timedout', short: 'timedout', event: 'timed-out'},
  8: {name: 'cachedfailure', short: 'cachedfail', event: 'cached-failure'},
  9: {name: 'unsupported', short: 'unsupported', event: 'unsupported'},
  10: {name: 'loglimit', short: 'loglimit', event: 'log-limit-exceeded'},
  11: {name: 'sizelimit', short: 'sizelimit', event: 'output-limit-exceeded'},
  12: {name: 'nondeterministic', short: 'nondeterm', event: 'not-deterministic'},
  13: {name: 'resolved', short: 'resolved', event: 'resolved'},
};

/** BuildSteps.busy phases: the filter grammar's and script mode's names, and the console's short ones. */
export const BUSY_PHASES: Readonly<Record<number, {name: string; short: string}>> = {
  1: {name: 'preparing', short: 'preparing'},
  10: {name: 'connecting', short: 'connecting'},
  20: {name: 'sending', short: 'sending'},
  30: {name: 'building', short: 'building'},
  35: {name: 'waiting', short: 'waiting'},
  40: {name: 'receiving', short: 'receiving'},
  50: {name: 'postprocessing', short: 'postproc'},
};
