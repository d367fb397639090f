// The queue runner's counters: what the status documents and metrics report (source/daemon/status.ts,
// source/daemon/metrics.ts), named after the C++ runner's `dumpStatus` fields where one exists.

export interface SchedulerStats {
  startedAt: number;
  nrBuildsRead: number;
  buildReadTimeMs: number;
  nrBuildsDone: number;
  nrBuildsSucceeded: number;
  nrBuildsFailed: number;
  nrStepsStarted: number;
  nrStepsDone: number;
  nrRetries: number;
  maxNrRetries: number;
  nrQueueWakeups: number;
  nrDispatcherWakeups: number;
  dispatchTimeMs: number;
  lastDispatchMs: number;
  nrUnsupportedSteps: number;
  nrUnsupportedStepsAborted: number;
  /**
   * use-substitutes, counted per output path as the Rust runner counts them (substitute_missing_outputs): started
   * for every missing path asked of the substituters, succeeded for every one valid afterwards, failed for the rest.
   */
  nrSubstitutesStarted: number;
  nrSubstitutesSucceeded: number;
  nrSubstitutesFailed: number;
  totalStepTimeMs: number;
  totalStepBuildTimeMs: number;
  bytesSent: number;
  bytesReceived: number;
  queueChecksStarted: number;
  queueChecksFinished: number;
  queueChecksEarlyExits: number;
  queueStepsCreated: number;
  queueBuildLoads: number;
  dispatcherTimeSpentRunningUs: number;
  dispatcherTimeSpentWaitingUs: number;
  monitorTimeSpentRunningUs: number;
  monitorTimeSpentWaitingUs: number;
  /** Last time a step started or finished (progress indicator, ms). */
  lastProgressAt: number;
  /** Builds known to be queued in the database / loaded so far in the current scan. */
  ingestTotal: number;
  ingestDone: number;
}

export function newSchedulerStats(now = Date.now()): SchedulerStats {
  return {
    startedAt: now,
    nrBuildsRead: 0,
    buildReadTimeMs: 0,
    nrBuildsDone: 0,
    nrBuildsSucceeded: 0,
    nrBuildsFailed: 0,
    nrStepsStarted: 0,
    nrStepsDone: 0,
    nrRetries: 0,
    maxNrRetries: 0,
    nrQueueWakeups: 0,
    nrDispatcherWakeups: 0,
    dispatchTimeMs: 0,
    lastDispatchMs: 0,
    nrUnsupportedSteps: 0,
    nrUnsupportedStepsAborted: 0,
    nrSubstitutesStarted: 0,
    nrSubstitutesSucceeded: 0,
    nrSubstitutesFailed: 0,
    totalStepTimeMs: 0,
    totalStepBuildTimeMs: 0,
    bytesSent: 0,
    bytesReceived: 0,
    queueChecksStarted: 0,
    queueChecksFinished: 0,
    queueChecksEarlyExits: 0,
    queueStepsCreated: 0,
    queueBuildLoads: 0,
    dispatcherTimeSpentRunningUs: 0,
    dispatcherTimeSpentWaitingUs: 0,
    monitorTimeSpentRunningUs: 0,
    monitorTimeSpentWaitingUs: 0,
    lastProgressAt: now,
    ingestTotal: 0,
    ingestDone: 0,
  };
}
