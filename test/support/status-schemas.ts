// JSON schemas of the status documents (docs/hydra-compat.md, "Status documents and metrics") and a validator that
// reports every problem with its JSON path.
import {Ajv, type ValidateFunction} from 'ajv';

type Schema = Record<string, unknown>;

const int: Schema = {type: 'integer', minimum: 0};
const num: Schema = {type: 'number'};
const str: Schema = {type: 'string'};
const bool: Schema = {type: 'boolean'};
const nullableNum: Schema = {type: ['number', 'null']};
const nullableStr: Schema = {type: ['string', 'null']};
const nullableInt: Schema = {type: ['integer', 'null']};
const strings: Schema = {type: 'array', items: str};
const rfc3339: Schema = {type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$'};
const nullableRfc3339: Schema = {anyOf: [rfc3339, {type: 'null'}]};

/** An object whose listed properties are all required. */
function obj(properties: Record<string, Schema>, optional: Record<string, Schema> = {}): Schema {
  return {type: 'object', required: Object.keys(properties), properties: {...properties, ...optional}};
}
const mapOf = (value: Schema): Schema => ({type: 'object', additionalProperties: value});

// ---------------------------------------------------------------- C++ document

const cppMachine = obj(
  {
    enabled: bool,
    systemTypes: strings,
    supportedFeatures: strings,
    mandatoryFeatures: strings,
    nrStepsDone: int,
    currentJobs: int,
    disabledUntil: int,
    lastFailure: int,
    consecutiveFailures: {type: 'integer', minimum: 0, maximum: 4},
    drained: bool,
    lastError: nullableStr,
    lastErrorAt: nullableInt,
    sinceLastUsed: nullableInt,
  },
  {idleSince: int, totalStepTime: int, totalStepBuildTime: int, avgStepTime: num, avgStepBuildTime: num},
);

export const cppStatusSchema = obj({
  status: {const: 'up'},
  time: int,
  uptime: int,
  pid: int,
  nrQueuedBuilds: int,
  nrActiveSteps: int,
  nrStepsBuilding: int,
  nrStepsCopyingTo: int,
  nrStepsWaitingForDownloadSlot: int,
  nrStepsCopyingFrom: int,
  nrStepsWaiting: int,
  nrUnsupportedSteps: int,
  bytesSent: int,
  bytesReceived: int,
  nrBuildsRead: int,
  buildReadTimeMs: int,
  buildReadTimeAvgMs: num,
  nrBuildsDone: int,
  nrStepsStarted: int,
  nrStepsDone: int,
  nrRetries: int,
  maxNrRetries: int,
  nrQueueWakeups: int,
  nrDispatcherWakeups: int,
  dispatchTimeMs: int,
  dispatchTimeAvgMs: num,
  nrDbConnections: int,
  nrActiveDbUpdates: int,
  nrUnfinishedSteps: int,
  nrRunnableSteps: int,
  machines: mapOf(cppMachine),
  jobsets: mapOf(obj({shareUsed: num, seconds: num})),
  machineTypes: mapOf(obj({runnable: int, running: int}, {waitTime: int})),
  store: obj(Object.fromEntries(
    ['narInfoRead', 'narInfoReadAverted', 'narInfoMissing', 'narInfoWrite', 'narInfoCacheSize', 'narRead', 'narReadBytes', 'narReadCompressedBytes', 'narWrite', 'narWriteAverted', 'narWriteBytes', 'narWriteCompressedBytes', 'narWriteCompressionTimeMs', 'narCompressionSavings', 'narCompressionSpeed'].map((k) => [k, num]),
  )),
}, {totalStepTime: int, totalStepBuildTime: int, avgStepTime: num, avgStepBuildTime: num});

// ---------------------------------------------------------------- REST documents

const machineStats = obj({
  currentJobs: int,
  nrStepsDone: int,
  avgStepTimeMs: num,
  avgStepImportTimeMs: nullableNum,
  avgStepBuildTimeMs: num,
  avgStepUploadTimeMs: nullableNum,
  totalStepTimeMs: num,
  totalStepImportTimeMs: nullableNum,
  totalStepBuildTimeMs: num,
  totalStepUploadTimeMs: nullableNum,
  idleSince: int,
  lastFailure: int,
  disabledUntil: int,
  consecutiveFailures: int,
  lastPing: nullableInt,
  sinceLastPing: nullableInt,
  load1: nullableNum,
  load5: nullableNum,
  load15: nullableNum,
  memUsage: nullableNum,
  pressure: {type: ['object', 'null']},
  buildDirFreePercent: nullableNum,
  storeFreePercent: nullableNum,
  currentUploadingPathCount: int,
  currentDownloadingPathCount: int,
});

export const restMachineSchema = obj({
  systems: {type: 'array', items: str, minItems: 1},
  hostname: str,
  speedFactor: num,
  maxJobs: int,
  supportedFeatures: strings,
  mandatoryFeatures: strings,
  score: num,
  totalMem: nullableNum,
  stats: machineStats,
  jobs: strings,
  hasCapacity: bool,
  hasDynamicCapacity: bool,
  hasStaticCapacity: bool,
  // hydra-ops additions
  uri: str,
  drained: bool,
  listed: bool,
  backingOff: bool,
  lastError: nullableStr,
  lastErrorAt: nullableInt,
  sinceLastUsed: nullableInt,
});

export const restMachinesSchema = obj({machines: mapOf(restMachineSchema), machinesCount: int});

const restJobset = obj({id: int, projectName: str, name: str, seconds: num, shares: num, shareUsed: num});
export const restJobsetsSchema = obj({jobsets: mapOf(restJobset), jobsetCount: int});

export const stepInfoSchema = obj({
  drvPath: {type: 'string', pattern: '^/nix/store/.+\\.drv$'},
  runnable: bool,
  finished: bool,
  previousFailure: bool,
  created: bool,
  tries: int,
  highestGlobalPriority: {type: 'integer'},
  highestLocalPriority: {type: 'integer'},
  lowestBuildId: nullableInt,
  depsCount: int,
  alreadyScheduled: bool,
  cancelled: bool,
  runnableSince: nullableRfc3339,
  lowestShareUsed: num,
  name: str,
  system: str,
  systemType: str,
  requiredFeatures: strings,
  rdepsCount: int,
  retryAt: nullableRfc3339,
  lastError: nullableStr,
  waitingReason: nullableStr,
  machine: nullableStr,
  build: nullableInt,
  stepnr: nullableInt,
});

export const stepListSchema = obj({steps: {type: 'array', items: stepInfoSchema}, stepCount: int, limit: int});
export const runnableListSchema = obj({
  steps: {type: 'array', items: {allOf: [stepInfoSchema, obj({position: nullableInt})]}},
  stepCount: int,
  limit: int,
});
export const queuesSchema = obj({queues: mapOf({type: 'array', items: stepInfoSchema}), queueSizes: mapOf(int)});
export const buildActiveSchema = obj({active: bool, queued: bool, steps: strings});
export const buildsSchema = obj({
  builds: {
    type: 'array',
    items: obj({id: int, drvPath: str, jobsetId: int, name: str, timestamp: nullableRfc3339, maxSilentTime: int, timeout: int, localPriority: {type: 'integer'}, globalPriority: {type: 'integer'}, finishedInDb: bool}),
  },
  buildCount: int,
  limit: int,
});

export const progressSchema = obj({
  runnable: int,
  running: int,
  idleCapacity: int,
  capacityForRunnable: bool,
  lastProgressAt: nullableRfc3339,
  stalledSeconds: int,
  stallThresholdSeconds: int,
  stalled: bool,
});

const queueStat = obj({activeRunnable: int, totalRunnable: int, nrRunnableWaiting: int, nrRunnableDisabled: int, avgRunnableTime: num, waitTimeMs: int});

export const queueRunnerSchema = obj({
  status: {const: 'up'},
  time: rfc3339,
  uptime: num,
  proc: obj({pid: int, vsizeBytes: nullableInt, rssBytes: int, sharedBytes: nullableInt}),
  supportedFeatures: strings,
  buildCount: int,
  jobsetCount: int,
  stepCount: int,
  runnableCount: int,
  queueStats: mapOf(queueStat),
  queueChecksStarted: int,
  queueBuildLoads: int,
  queueStepsCreated: int,
  queueChecksEarlyExits: int,
  queueChecksFinished: int,
  dispatcherTimeSpentRunning: int,
  dispatcherTimeSpentWaiting: int,
  queueMonitorTimeSpentRunning: int,
  queueMonitorTimeSpentWaiting: int,
  nrBuildsRead: int,
  buildReadTimeMs: int,
  nrBuildsUnfinished: int,
  nrBuildsDone: int,
  nrBuildsSucceeded: int,
  nrBuildsFailed: int,
  nrStepsStarted: int,
  nrStepsDone: int,
  nrStepsBuilding: int,
  nrStepsWaiting: int,
  nrStepsRunnable: int,
  nrStepsUnfinished: int,
  nrUnsupportedSteps: int,
  nrUnsupportedStepsAborted: int,
  nrSubstitutesStarted: int,
  nrSubstitutesFailed: int,
  nrSubstitutesSucceeded: int,
  nrRetries: int,
  maxNrRetries: int,
  avgStepTimeMs: num,
  avgStepImportTimeMs: nullableNum,
  avgStepBuildTimeMs: num,
  avgStepUploadTimeMs: nullableNum,
  totalStepTimeMs: num,
  totalStepImportTimeMs: nullableNum,
  totalStepBuildTimeMs: num,
  totalStepUploadTimeMs: nullableNum,
  nrQueueWakeups: int,
  nrDispatcherWakeups: int,
  dispatchTimeMs: int,
  machinesTotal: int,
  machinesInUse: int,
  s3UploadsPending: int,
  progress: progressSchema,
});

export const restStatusSchema = obj({
  queueRunner: queueRunnerSchema,
  machines: mapOf(restMachineSchema),
  jobsets: mapOf(restJobset),
  store: {type: 'null'},
  s3: {type: 'object'},
});

export const errorSchema = obj({error: str});

const ajv = new Ajv({allErrors: true, strict: true, allowUnionTypes: true});
const compiled = new Map<Schema, ValidateFunction>();

/** Throws an assertion-style error listing every schema violation. */
export function assertValid(schema: Schema, doc: unknown, what: string): void {
  let validate = compiled.get(schema);
  if (!validate) compiled.set(schema, (validate = ajv.compile(schema)));
  if (!validate(doc)) {
    const problems = (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}${e.params ? ' ' + JSON.stringify(e.params) : ''}`);
    throw new Error(`${what} does not match its schema:\n  ${problems.join('\n  ')}`);
  }
}
