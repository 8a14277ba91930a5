"""Sensors: `media_inbox_sensor` turns new media files into partitions and runs; `split_failed_batch_sensor`
keeps one file's failure from holding back the other files of its batch.

`media_inbox_sensor`: new or changed media files in the inbox become partitions and runs.

Each tick walks the inbox (recursively, supported extensions only, hidden files skipped), and for each file
not seen before with the same size and modification time:
- skips it for now if it was modified in the last SENSOR_SETTLE_SECONDS (still being written);
- hashes it, derives its partition key (`inputs.sources.identify`), records its source in the store;
- adds the partition, unless the key already exists (same bytes, same name), checked again at the end of
  the tick, as a CLI submit may add it meanwhile.
The new partitions of a tick are run in batches of up to BATCH_MAX_FILES per run (one run process loads
the models once for all of them; each file keeps its own partition). Partition adds and run requests go
out in one `SensorResult`; the daemon applies the adds first, in order, so each batch is a contiguous
range of partitions. The
cursor remembers every file handled (size, mtime, key), so an unchanged file is never hashed or run again;
it forgets files gone from the inbox (one dropped again is hashed, but its partition exists: no run). Work
per tick is capped (SENSOR_MAX_FILES_PER_TICK, and a time budget) so a flood of files never times the
sensor out: the rest is picked up on the next ticks. A file that cannot be read is logged and skipped; it
never stops the others.

`split_failed_batch_sensor`: Dagster cannot mark single partitions of a multi-partition run failed, so when
a batch run fails, every file in it is shown failed and none is materialized. The sensor re-runs it split:
each file the failure names (`failed_partitions`, see `stage_guard`) in a run of its own, where it fails
again with its own error and status, and the other files as batches again; the new runs redo only the
steps that did not finish, and keep the files those steps had already done (`stage_guard`). A crashed batch
run is first retried whole by Dagster's run retries (from the failed step); once those are spent, every
file gets a run of its own. A failure that names no file (e.g. a model that cannot be loaded) is not split.
A run that had finished every step when its process died is recorded as successful, not failed.
"""


import json
import os
import time
from pathlib import Path

from dagster import (AssetKey, DagsterEvent, DagsterEventType, DefaultSensorStatus, RunFailureSensorContext,
                     SensorEvaluationContext, SensorResult, SkipReason, run_failure_sensor, sensor)
from dagster._core.execution.stats import StepEventStatus
from dagster._core.storage.tags import WILL_RETRY_TAG

from whisperx_assets.defs.jobs import (RANGE_END, RANGE_START, RESUME_FROM, batch_run_key, batches, keys_in_range,
                                   process_media_job, process_media_request, work_id)
from whisperx_assets.inputs.sources import identify
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.resources import MediaStoreResource
from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.speech.media import SUPPORTED_EXTENSIONS
from whisperx_assets.defs.stage_guard import FAILED_PARTITIONS

TICK_TIME_BUDGET_S = 30.0  # well inside the default 60 s sensor timeout


def scan_inbox(root: Path, unlisted: list[Path] | None = None):
    """Supported media files under `root` with their stat, skipping hidden files and folders. Folders (and
    entries) that cannot be read are appended to `unlisted`: their files are not known to be gone."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            if unlisted is not None:
                unlisted.append(folder)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False) and Path(entry.name).suffix.lower() in SUPPORTED_EXTENSIONS:
                    yield Path(entry.path), entry.stat()
            except OSError:
                if unlisted is not None:
                    unlisted.append(Path(entry.path))


@sensor(job=process_media_job, minimum_interval_seconds=PipelineSettings().sensor_interval,
        default_status=DefaultSensorStatus.RUNNING)
def media_inbox_sensor(context: SensorEvaluationContext, storage: MediaStoreResource):
    settings = PipelineSettings()
    inbox = settings.inbox_dir.resolve()
    if not inbox.is_dir():
        return SkipReason(f"inbox {inbox} does not exist")
    seen: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
    existing = set(context.instance.get_dynamic_partitions(media_files.name))
    store = storage.store
    started, now = time.monotonic(), time.time()
    new_keys: list[str] = []
    names: dict[str, str] = {}
    present: set[str] = set()
    unlisted: list[Path] = []
    handled = pending = 0
    for path, stat in sorted(scan_inbox(inbox, unlisted)):
        name = str(path.relative_to(inbox))
        present.add(name)
        fingerprint = [stat.st_size, stat.st_mtime_ns]
        if seen.get(name, [None, None])[:2] == fingerprint:
            continue
        if now - stat.st_mtime < settings.sensor_settle_seconds or stat.st_size == 0 and now - stat.st_mtime < 60:
            pending += 1  # still being written (an empty file gets a minute to grow before it counts as bad)
            continue
        if handled >= settings.sensor_max_files_per_tick or time.monotonic() - started > TICK_TIME_BUDGET_S:
            pending += 1
            continue
        try:
            source = identify(path)
            key = source.key
            if key not in existing and key not in names:
                store.register(source)
                new_keys.append(key)
                names[key] = name
        except FileNotFoundError:
            context.log.info(f"skipping {name}: removed from the inbox before it was hashed")
            continue
        except OSError as exc:
            context.log.warning(f"skipping {name}: {exc}")
            continue
        handled += 1
        seen[name] = [*fingerprint, key]
    if pending:
        context.log.info(f"{pending} files left for the next tick")
    # The walk is complete, so a file it did not see is gone; one under a folder it could not read may not be.
    kept = ["" if p == inbox else str(p.relative_to(inbox)) + os.sep for p in unlisted]
    seen = {n: v for n, v in seen.items() if n in present or any((n + os.sep).startswith(k) for k in kept)}
    if new_keys:
        # A CLI submit may have added the same file while this tick hashed: no second add or run for it.
        existing = set(context.instance.get_dynamic_partitions(media_files.name))
        if raced := [k for k in new_keys if k in existing]:
            context.log.info(f"already added meanwhile, not run again: {', '.join(names[k] for k in raced)}")
            new_keys = [k for k in new_keys if k not in existing]
    if not new_keys and not pending:
        return SensorResult(skip_reason=SkipReason("no new media files"), cursor=json.dumps(seen))
    runs = [process_media_request(batch, run_key=batch[0] if len(batch) == 1 else batch_run_key(batch),
                                  tags={"whisperx_assets/source": names[batch[0]] if len(batch) == 1 else
                                        f"{names[batch[0]]} and {len(batch) - 1} more"})
            for batch in batches(new_keys, settings.batch_max_files)]
    return SensorResult(run_requests=runs, dynamic_partitions_requests=[media_files.build_add_request(new_keys)]
                        if new_keys else [], cursor=json.dumps(seen))


def split_plan(keys: list[str], failed: set[str] | None) -> list[list[str]]:
    """The runs that replace a failed batch of `keys` (in partition order): each failed key alone, the
    others in contiguous batches; every key alone when the failed ones are not known (`None`)."""
    if failed is None:
        return [[key] for key in keys]
    plan: list[list[str]] = []
    segment: list[str] = []
    for key in keys:
        if key in failed:
            plan += [segment] if segment else []
            plan.append([key])
            segment = []
        else:
            segment.append(key)
    return plan + ([segment] if segment else [])


def failed_partitions(context: RunFailureSensorContext) -> set[str] | None:
    """Keys named by the run's step failures; None when it crashed without a step failure."""
    events = context.get_step_failure_events()
    if not events:
        return None
    named: set[str] = set()
    for event in events:
        user_data = event.step_failure_data.user_failure_data if event.step_failure_data else None
        entry = (user_data.metadata or {}).get(FAILED_PARTITIONS) if user_data else None
        if entry is not None:
            named.update(entry.value)
    return named


def step_progress(instance, run) -> tuple[list[str], set[str]]:
    """(the steps the run planned, those that succeeded)."""
    planned = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id).step_keys_to_execute
    succeeded = {s.step_key for s in instance.get_run_step_stats(run.run_id) if s.status == StepEventStatus.SUCCESS}
    return list(planned), succeeded


def mark_finished_run_successful(instance, run) -> None:
    """A run whose process died after its last step (it was being torn down) did all its work: Dagster
    reports it failed, and its retry would find nothing to do. Record it as the success it is."""
    instance.add_run_tags(run.run_id, {WILL_RETRY_TAG: "false"})
    message = "Every step had finished when the run process died; all assets were materialized."
    instance.report_dagster_event(DagsterEvent(DagsterEventType.RUN_SUCCESS.value, job_name=run.job_name,
                                               message=message), run_id=run.run_id)


@run_failure_sensor(request_job=process_media_job, default_status=DefaultSensorStatus.RUNNING,
                    minimum_interval_seconds=5)
def split_failed_batch_sensor(context: RunFailureSensorContext):
    run = context.dagster_run
    planned, succeeded = step_progress(context.instance, run)
    if planned and succeeded.issuperset(planned):
        mark_finished_run_successful(context.instance, run)
        return SkipReason(f"run {run.run_id} had finished every step: marked successful")
    start, end = run.tags.get(RANGE_START), run.tags.get(RANGE_END)
    if not start or not end or run.tags.get(WILL_RETRY_TAG) == "true":
        return SkipReason("not a batch run, or Dagster will retry it")
    keys = keys_in_range(context.instance.get_dynamic_partitions(media_files.name), start, end)
    if not keys:
        return SkipReason(f"partitions {start}..{end} no longer exist")
    if len(keys) < 2:
        return SkipReason("a one-file run: its failure is that file's")
    failed = failed_partitions(context)
    if failed is not None and not failed & set(keys):
        return SkipReason(f"the failure of run {run.run_id} names no file; not split")
    # Only the steps that did not finish, and with the failed run's work: files it finished are not redone.
    remaining = [AssetKey(step) for step in planned if step not in succeeded]
    plan = split_plan(keys, failed)
    context.log.info(f"splitting run {run.run_id} ({len(keys)} files) into {len(plan)} runs")
    return [process_media_request(batch, run_key=f"split-{run.run_id}-{i}", asset_selection=remaining,
                                  tags={"whisperx_assets/split_from": run.run_id, RESUME_FROM: work_id(run)})
            for i, batch in enumerate(plan)]
