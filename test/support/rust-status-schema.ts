// JSON schemas of the Rust queue runner's REST documents, derived field by field from the serde
// types of NixOS/hydra at commit 14332fbf55470184984bf76488960741510971d0:
//   subprojects/hydra-queue-runner/src/io/response_types.rs  (MachinesResponse, DumpResponse, JobsetsResponse,
//                                                             BuildsResponse, StepsResponse, QueueResponse, StepInfoResponse)
//   subprojects/hydra-queue-runner/src/io/queue_runner.rs    (QueueRunnerStats)
//   subprojects/hydra-queue-runner/src/io/machine.rs         (Machine, MachineStats, PressureState, Pressure)
//   subprojects/hydra-queue-runner/src/io/stats.rs           (BuildQueueStats, Process, CgroupStats, S3Stats, StoreStats)
//   subprojects/hydra-queue-runner/src/io/build.rs           (Build, BuildActiveResponse)
//   subprojects/hydra-queue-runner/src/io/jobset.rs, step.rs, step_info.rs, uploads.rs, mod.rs (Error)
//   subprojects/hydra-queue-runner/src/server/http.rs        (routes)
// Every struct is `#[serde(rename_all = "camelCase")]` and none uses `skip_serializing_if`, so every
// field is always present: an `Option<T>` is T or null, anything else is never null. Unsigned
// integers (u32, u64, usize, u128) are non-negative integers, i32/i64 integers, f32/f64 numbers,
// `jiff::Timestamp` an RFC 3339 string, `StorePath` a string. HashMap keys: machines by hostname,
// jobsets by `project:jobset`, queue statistics and queues by system (platform).
// Extra properties are allowed: hydra-ops adds fields (README, "Status endpoint").
type Schema = Record<string, unknown>;

const u: Schema = {type: 'integer', minimum: 0};
const i: Schema = {type: 'integer'};
const f: Schema = {type: 'number'};
const bool: Schema = {type: 'boolean'};
const str: Schema = {type: 'string'};
const timestamp: Schema = {type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$'};
const storePath: Schema = {type: 'string', pattern: '^(/nix/store/)?[0-9a-df-np-sv-z]{32}-[^/]+$'};
const option = (s: Schema): Schema => ({anyOf: [s, {type: 'null'}]});
const vec = (s: Schema): Schema => ({type: 'array', items: s});
const map = (s: Schema): Schema => ({type: 'object', additionalProperties: s});
/** A Rust struct: every field required, never null unless its schema says so. */
const struct = (fields: Record<string, Schema>): Schema => ({type: 'object', required: Object.keys(fields), properties: fields});

const pressure = struct({avg10: f, avg60: f, avg300: f, total: u});
const pressureState = struct({cpuSome: option(pressure), memSome: option(pressure), memFull: option(pressure), ioSome: option(pressure), ioFull: option(pressure), irqFull: option(pressure)});

export const machineStats = struct({
  currentJobs: u,
  nrStepsDone: u,
  avgStepTimeMs: u,
  avgStepImportTimeMs: u,
  avgStepBuildTimeMs: u,
  avgStepUploadTimeMs: u,
  totalStepTimeMs: u,
  totalStepImportTimeMs: u,
  totalStepBuildTimeMs: u,
  totalStepUploadTimeMs: u,
  idleSince: i,
  lastFailure: i,
  disabledUntil: i,
  consecutiveFailures: u,
  lastPing: i,
  sinceLastPing: i,
  load1: f,
  load5: f,
  load15: f,
  memUsage: u,
  pressure: option(pressureState),
  buildDirFreePercent: f,
  storeFreePercent: f,
  currentUploadingPathCount: u,
  currentDownloadingPathCount: u,
  jobsInLast30sStart: i,
  jobsInLast30sCount: u,
  failedBuilds: u,
  succeededBuilds: u,
});

export const machine = struct({
  systems: vec(str),
  hostname: str,
  uptime: f,
  cpuCount: u,
  bogomips: f,
  speedFactor: f,
  maxJobs: u,
  buildDirAvailThreshold: f,
  storeAvailThreshold: f,
  load1Threshold: f,
  cpuPsiThreshold: f,
  memPsiThreshold: f,
  ioPsiThreshold: option(f),
  score: f,
  totalMem: u,
  supportedFeatures: vec(str),
  mandatoryFeatures: vec(str),
  cgroups: bool,
  substituters: vec(str),
  useSubstitutes: bool,
  nixVersion: str,
  stats: machineStats,
  jobs: vec(storePath),
  hasCapacity: bool,
  hasDynamicCapacity: bool,
  hasStaticCapacity: bool,
});

const buildQueueStats = struct({activeRunnable: u, totalRunnable: u, nrRunnableWaiting: u, nrRunnableDisabled: u, avgRunnableTime: u, waitTimeMs: u});
const cgroupStats = struct({
  memory: struct({currentBytes: u, peakBytes: u, swapCurrentBytes: u, zswapCurrentBytes: u}),
  io: struct({totalReadBytes: u, totalWriteBytes: u}),
  cpu: struct({usageUsec: u, userUsec: u, systemUsec: u}),
});
const processStats = struct({pid: i, vsizeBytes: u, rssBytes: u, sharedBytes: u, cgroup: option(cgroupStats)});

export const queueRunnerStats = struct({
  status: {const: 'up'},
  time: timestamp,
  uptime: f,
  proc: option(processStats),
  supportedFeatures: vec(str),
  buildCount: u,
  jobsetCount: u,
  stepCount: u,
  runnableCount: u,
  queueStats: map(buildQueueStats),
  ...Object.fromEntries(
    ['queueChecksStarted', 'queueBuildLoads', 'queueStepsCreated', 'queueChecksEarlyExits', 'queueChecksFinished', 'dispatcherTimeSpentRunning', 'dispatcherTimeSpentWaiting', 'queueMonitorTimeSpentRunning', 'queueMonitorTimeSpentWaiting', 'nrBuildsRead', 'buildReadTimeMs'].map((k) => [k, u]),
  ),
  nrBuildsUnfinished: i,
  nrBuildsDone: u,
  nrBuildsSucceeded: u,
  nrBuildsFailed: u,
  nrStepsStarted: u,
  nrStepsDone: u,
  nrStepsBuilding: i,
  nrStepsWaiting: i,
  nrStepsRunnable: i,
  nrStepsUnfinished: i,
  nrUnsupportedSteps: i,
  nrUnsupportedStepsAborted: u,
  nrSubstitutesStarted: u,
  nrSubstitutesFailed: u,
  nrSubstitutesSucceeded: u,
  nrRetries: u,
  maxNrRetries: i,
  avgStepTimeMs: i,
  avgStepImportTimeMs: i,
  avgStepBuildTimeMs: i,
  avgStepUploadTimeMs: i,
  totalStepTimeMs: u,
  totalStepImportTimeMs: u,
  totalStepBuildTimeMs: u,
  totalStepUploadTimeMs: u,
  nrQueueWakeups: u,
  nrDispatcherWakeups: u,
  dispatchTimeMs: u,
  machinesTotal: i,
  machinesInUse: i,
  s3UploadsPending: i,
});

export const jobset = struct({id: i, projectName: str, name: str, seconds: i, shares: u});

const storeStats = struct({
  ...Object.fromEntries(
    ['narInfoRead', 'narInfoReadAverted', 'narInfoMissing', 'narInfoWrite', 'pathInfoCacheSize', 'narRead', 'narReadBytes', 'narReadCompressedBytes', 'narWrite', 'narWriteAverted', 'narWriteBytes', 'narWriteCompressedBytes', 'narWriteCompressionTimeMs'].map((k) => [k, u]),
  ),
  narCompressionSavings: f,
  narCompressionSpeed: f,
});
const s3Stats = struct({put: u, putBytes: u, putTimeMs: u, putSpeed: f, get: u, getBytes: u, getTimeMs: u, getSpeed: f, head: u, costDollarApprox: f});

export const build = struct({
  id: i,
  drvPath: storePath,
  jobsetId: i,
  name: str,
  timestamp,
  maxSilentTime: option(i),
  timeout: option(i),
  localPriority: i,
  globalPriority: i,
  finishedInDb: bool,
});

export const step = struct({
  drvPath: storePath,
  runnable: bool,
  finished: bool,
  previousFailure: bool,
  created: bool,
  tries: u,
  highestGlobalPriority: i,
  highestLocalPriority: i,
  lowestBuildId: i,
  depsCount: u,
});

export const stepInfo = struct({
  drvPath: storePath,
  alreadyScheduled: bool,
  runnable: bool,
  finished: bool,
  cancelled: bool,
  runnableSince: timestamp,
  tries: u,
  lowestShareUsed: f,
  highestGlobalPriority: i,
  highestLocalPriority: i,
  lowestBuildId: i,
});

/** Route → schema of its 200 answer (server/http.rs). */
export const rustRoutes: Record<string, Schema> = {
  '/status': struct({queueRunner: queueRunnerStats, machines: map(machine), jobsets: map(jobset), store: option(storeStats), s3: map(s3Stats)}),
  '/status/machines': struct({machines: map(machine), machinesCount: u}),
  '/status/jobsets': struct({jobsets: map(jobset), jobsetCount: u}),
  '/status/builds': struct({builds: vec(build), buildCount: u}),
  '/status/steps': struct({steps: vec(step), stepCount: u}),
  '/status/runnable': struct({steps: vec(step), stepCount: u}),
  '/status/queues': struct({queues: map(vec(stepInfo))}),
  '/status/queues/jobs': struct({steps: vec(stepInfo), stepCount: u}),
  '/status/queues/scheduled': struct({steps: vec(stepInfo), stepCount: u}),
  '/status/uploads': struct({paths: vec(storePath), pathCount: u}),
};

export const buildActiveResponse = struct({active: bool});
export const errorResponse = struct({error: str});
