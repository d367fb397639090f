// Hydra's PostgreSQL schema, version 87, as one DDL script.
//
// Used only to create a Hydra schema in an EMPTY database (`hydra-ops db init`, tests). It reproduces Hydra's
// tables, column order, types, defaults, constraints, the FailedPaths rule, indexes and NOTIFY triggers, so a
// database created here is interchangeable with one created by `hydra-init`, and Hydra's own migrations can take
// it from here. hydra-ops never runs this against a database that already has tables.
//
// Identifiers are unquoted, so PostgreSQL folds them to lower case (`drvPath` is column `drvpath`), as in Hydra.
// The script contains several statements and no bind parameters: run it with a single simple query.
//
// The tables are in hydra-tables-sql.ts; the triggers, indexes and version row here.

import {HYDRA_TABLES_SQL} from './hydra-tables-sql.js';

/** The Hydra schema version this script creates (the row it inserts into SchemaVersion). */
export const HYDRA_SCHEMA_VERSION = 87;

/** Every table of Hydra's schema 87, lower-case, in creation order. */
export const HYDRA_TABLES: readonly string[] = [
  'schemaversion',
  'users',
  'userroles',
  'projects',
  'projectmembers',
  'jobsets',
  'jobsetrenames',
  'jobsetinputs',
  'jobsetinputalts',
  'builds',
  'buildoutputs',
  'buildsteps',
  'buildstepoutputs',
  'buildinputs',
  'buildproducts',
  'buildmetrics',
  'cachedpathinputs',
  'cachedsubversioninputs',
  'cachedbazaarinputs',
  'cachedgitinputs',
  'cacheddarcsinputs',
  'cachedhginputs',
  'cachedcvsinputs',
  'evaluationerrors',
  'jobsetevals',
  'jobsetevalinputs',
  'jobsetevalmembers',
  'urirevmapper',
  'newsitems',
  'aggregateconstituents',
  'starredjobs',
  'taskretries',
  'runcommandlogs',
  'failedpaths',
  'systemstatus',
  'nrbuilds',
];

/** Trigger name -> table, for every trigger of the schema (all lower-case). */
export const HYDRA_TRIGGERS: Readonly<Record<string, string>> = {
  jobsetshareschanged: 'jobsets',
  jobsetsadded: 'jobsets',
  jobsetsdeleted: 'jobsets',
  jobsetschedulingchanged: 'jobsets',
  buildsdeleted: 'builds',
  buildrestarted: 'builds',
  buildcancelled: 'builds',
  buildbumped: 'builds',
  nrbuildsfinished: 'builds',
};

/** Channels the schema's triggers NOTIFY (no payload). */
export const HYDRA_TRIGGER_CHANNELS: readonly string[] = [
  'builds_deleted',
  'builds_restarted',
  'builds_cancelled',
  'builds_bumped',
  'jobset_shares_changed',
  'jobsets_added',
  'jobsets_deleted',
  'jobset_scheduling_changed',
];

/** Name of the optional trigram index on Builds.drvPath (created only where pg_trgm can be installed). */
export const HYDRA_TRIGRAM_INDEX = 'indextrgmbuildsondrvpath';


// One-line notify functions and their triggers. The WHEN conditions decide which channel an UPDATE wakes.
const triggers = `
create function notifyJobsetSharesChanged() returns trigger as
  'begin notify jobset_shares_changed; return null; end;' language plpgsql;
create trigger JobsetSharesChanged after update on Jobsets for each row
  when (old.schedulingShares != new.schedulingShares)
  execute procedure notifyJobsetSharesChanged();

create function notifyJobsetsAdded() returns trigger as
  'begin notify jobsets_added; return null; end;' language plpgsql;
create trigger JobsetsAdded after insert on Jobsets
  execute procedure notifyJobsetsAdded();

create function notifyJobsetsDeleted() returns trigger as
  'begin notify jobsets_deleted; return null; end;' language plpgsql;
create trigger JobsetsDeleted after delete on Jobsets
  execute procedure notifyJobsetsDeleted();

create function notifyJobsetSchedulingChanged() returns trigger as
  'begin notify jobset_scheduling_changed; return null; end;' language plpgsql;
create trigger JobsetSchedulingChanged after update on Jobsets for each row
  when (((old.triggerTime is distinct from new.triggerTime) and (new.triggerTime is not null))
        or (old.checkInterval != new.checkInterval)
        or (old.enabled != new.enabled))
  execute procedure notifyJobsetSchedulingChanged();

create function notifyBuildsDeleted() returns trigger as
  'begin notify builds_deleted; return null; end;' language plpgsql;
create trigger BuildsDeleted after delete on Builds
  execute procedure notifyBuildsDeleted();

create function notifyBuildRestarted() returns trigger as
  'begin notify builds_restarted; return null; end;' language plpgsql;
create trigger BuildRestarted after update on Builds for each row
  when (old.finished = 1 and new.finished = 0)
  execute procedure notifyBuildRestarted();

create function notifyBuildCancelled() returns trigger as
  'begin notify builds_cancelled; return null; end;' language plpgsql;
create trigger BuildCancelled after update on Builds for each row
  when (old.finished = 0 and new.finished = 1 and new.buildStatus = 4)
  execute procedure notifyBuildCancelled();

create function notifyBuildBumped() returns trigger as
  'begin notify builds_bumped; return null; end;' language plpgsql;
create trigger BuildBumped after update on Builds for each row
  when (old.globalPriority != new.globalPriority)
  execute procedure notifyBuildBumped();

create function modifyNrBuildsFinished() returns trigger as $$
  begin
    if ((tg_op = 'INSERT' and new.finished = 1) or
        (tg_op = 'UPDATE' and old.finished = 0 and new.finished = 1)) then
      update NrBuilds set count = count + 1 where what = 'finished';
    elsif ((tg_op = 'DELETE' and old.finished = 1) or
           (tg_op = 'UPDATE' and old.finished = 1 and new.finished = 0)) then
      update NrBuilds set count = count - 1 where what = 'finished';
    end if;
    return null;
  end;
$$ language plpgsql;
create trigger NrBuildsFinished after insert or update or delete on Builds
  for each row
  execute procedure modifyNrBuildsFinished();
`;

const indexes = `
create index IndexBuildInputsOnBuild on BuildInputs(build);
create index IndexBuildInputsOnDependency on BuildInputs(dependency);
create index IndexBuildMetricsOnJobTimestamp on BuildMetrics(project, jobset, job, timestamp desc);
create index IndexBuildProducstOnBuildAndType on BuildProducts(build, type);
create index IndexBuildProductsOnBuild on BuildProducts(build);
create index IndexBuildStepsOnBusy on BuildSteps(busy) where busy != 0;
create index IndexBuildStepsOnDrvPath on BuildSteps(drvpath);
create index IndexBuildStepsOnPropagatedFrom on BuildSteps(propagatedFrom) where propagatedFrom is not null;
create index IndexBuildStepsOnStopTime on BuildSteps(stopTime desc) where startTime is not null and stopTime is not null;
create index IndexBuildStepOutputsOnPath on BuildStepOutputs(path);
create index IndexBuildsOnFinished on Builds(finished) where finished = 0;
create index IndexBuildsOnIsCurrent on Builds(isCurrent) where isCurrent = 1;
create index IndexBuildsJobsetIdCurrentUnfinished on Builds(jobset_id) where isCurrent = 1 and finished = 0;
create index IndexBuildsJobsetIdCurrentFinishedStatus on Builds(jobset_id, buildstatus) where isCurrent = 1 and finished = 1;
create index IndexBuildsJobsetIdCurrent on Builds(jobset_id) where isCurrent = 1;
create index IndexBuildsOnTimestamp on Builds(timestamp);
create index IndexBuildsOnFinishedStopTime on Builds(finished, stoptime desc);
create index IndexBuildsOnJobsetIdFinishedId on Builds(jobset_id, job, finished, id desc);
create index IndexFinishedSuccessfulBuilds on Builds(jobset_id, job, finished, buildstatus, id desc)
  where buildstatus = 0 and finished = 1;
create index IndexBuildsOnDrvPath on Builds(drvPath);
create index IndexCachedHgInputsOnHash on CachedHgInputs(uri, branch, sha256hash);
create index IndexCachedGitInputsOnHash on CachedGitInputs(uri, branch, sha256hash);
create index IndexCachedSubversionInputsOnUriRevision on CachedSubversionInputs(uri, revision);
create index IndexCachedBazaarInputsOnUriRevision on CachedBazaarInputs(uri, revision);
create index IndexJobsetEvalMembersOnBuild on JobsetEvalMembers(build);
create index IndexJobsetEvalMembersOnEval on JobsetEvalMembers(eval);
create index IndexJobsetInputAltsOnInput on JobsetInputAlts(project, jobset, input);
create index IndexJobsetInputAltsOnJobset on JobsetInputAlts(project, jobset);
create index IndexProjectsOnEnabled on Projects(enabled);
create index IndexBuildOutputsPath on BuildOutputs using hash(path);
create index IndexBuildsOnKeep on Builds(keep) where keep = 1;
create index IndexJobsetEvalsOnJobsetId on JobsetEvals(jobset_id, id desc) where hasNewBuilds = 1;
create index IndexJobsetIdEvals on JobsetEvals(jobset_id) where hasNewBuilds = 1;
create index IndexBuildsOnNotificationPendingSince on Builds(notificationPendingSince)
  where notificationPendingSince is not null;
`;

// The trigram index on Builds.drvPath speeds up drv path search but needs the pg_trgm extension. It is created
// only when the server offers pg_trgm and this role may install it; otherwise the step is skipped with a NOTICE.
// The inner block is a subtransaction, so a failure here never aborts the surrounding transaction.
const trigramIndex = `
do $$
begin
  if exists (select 1 from pg_available_extensions where name = 'pg_trgm') then
    begin
      create extension if not exists pg_trgm;
      create index IndexTrgmBuildsOnDrvpath on Builds using gin (drvpath gin_trgm_ops);
    exception when others then
      raise notice 'trigram index on builds.drvpath skipped: %', sqlerrm;
    end;
  else
    raise notice 'trigram index on builds.drvpath skipped: extension pg_trgm is not available on this server';
  end if;
end
$$;
`;

const version = `
insert into SchemaVersion(version) values (${HYDRA_SCHEMA_VERSION});
`;

/** The complete DDL of Hydra schema 87, including the SchemaVersion row and the seeded NrBuilds row. */
export const HYDRA_SCHEMA_SQL: string = HYDRA_TABLES_SQL + triggers + indexes + trigramIndex + version;
