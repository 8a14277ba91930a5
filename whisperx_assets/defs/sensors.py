"""Sensors: `media_inbox_sensor` turns new media files into partitions and runs; `split_failed_batch_sensor`
keeps one file's failure from holding back the other files of its batch.

`media_inbox_sensor`: new or changed media files in the inbox become partitions and runs.

Each tick walks the inbox (recursively, supported extensions only, hidden files skipped), and for each file
not handled before with the same size and modification time:
- skips it for now if it was modified in the last SENSOR_SETTLE_SECONDS (still being written);
- hashes it, derives its partition key (`inputs.sources.identify`), records its source in the store, and
  reads the duration it declares (ffprobe) when runs are bounded by audio seconds;
- adds the partition, unless the key already exists (same bytes, same name), checked again at the end of
  the tick, as a CLI submit may add it meanwhile.
The new partitions of a tick are run in batches of up to BATCH_MAX_FILES files and BATCH_MAX_AUDIO_SECONDS
of audio per run (one run process loads the models once for all of them; each file keeps its own partition;
a drop of long recordings is split so that the first ones finish early). Partition adds and run requests go
out in one `SensorResult`; the daemon applies the adds first, in order, so each batch is a contiguous range
of partitions.

Which files were handled (size and modification time by name) is kept in the media store, in a state file
named by its content (`MediaStore.write_inbox_state`); the cursor holds only that name. The cursor stays a
few dozen bytes however many files the inbox holds, a tick that finds nothing new writes nothing, and the
daemon's commit of the cursor remains what commits a tick: a tick whose cursor is not committed is evaluated
again from the state before it. Files gone from the inbox are forgotten (one dropped again is hashed, but its
partition exists: no run). Work per tick is capped (SENSOR_MAX_FILES_PER_TICK, and a time budget) so a
flood of files never times the sensor out: the rest is picked up on the next ticks. A file that cannot be
read is logged and skipped; it never stops the others.

The daemon applies a tick's partition adds before it records the tick's runs: if it dies in between, the
partitions exist with no run. A file whose partition exists, whose source this sensor registered, and which
no run has ever planned is such a file: it gets its run when the tick is evaluated again.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from dagster import (AssetKey, DagsterEvent, DagsterEventType, DefaultSensorStatus, RunFailureSensorContext,
                     SensorEvaluationContext, SensorResult, SkipReason, run_failure_sensor, sensor)
from upath import UPath
from dagster._core.execution.stats import StepEventStatus
from dagster._core.storage.tags import WILL_RETRY_TAG

from whisperx_assets.defs.assets import ASSET_NAMES
from whisperx_assets.defs.jobs import (RANGE_END, RANGE_START, RESUME_FROM, batch_run_key, batches, keys_in_range,
                                   process_media_job, process_media_request, work_id)
from whisperx_assets.inputs.sources import Source, identify, location
from whisperx_assets.inputs.store import MediaStore, is_local, local_file
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.resources import MediaStoreResource
from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.errors import MediaError
from whisperx_assets.speech.media import SUPPORTED_EXTENSIONS, probe
from whisperx_assets.defs.stage_guard import FAILED_PARTITIONS

TICK_TIME_BUDGET_S = 30.0  # well inside the default 60 s sensor timeout
EXAMINE_THREADS = 4  # hashing and probing wait on the disk and on ffprobe: a few files at a time
# A state the committed cursor does not name is deleted once older than this: a younger one may belong to a
# tick still in flight (a sensor evaluation times out after 60 s).
STALE_STATE_S = 120.0


def scan_folder(root: str, unlisted: list[str] | None = None):
    """(name relative to `root`, [size, mtime_ns]) of each supported media file under the local folder `root`,
    hidden files and folders skipped. Folders (and entries) that cannot be read are appended to `unlisted` by
    name ("" for `root`): their files are not known to be gone. Plain strings and no more calls than needed per
    entry: the walk goes over every file of the inbox each tick."""
    extensions = tuple(SUPPORTED_EXTENSIONS)
    stack = [""]
    while stack:
        folder = stack.pop()
        prefix = folder + os.sep if folder else ""
        try:
            entries = list(os.scandir(os.path.join(root, folder) if folder else root))
        except OSError:
            if unlisted is not None:
                unlisted.append(folder)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            name = prefix + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(name)
                elif entry.name.lower().endswith(extensions) and entry.is_file(follow_symlinks=False):
                    stat = entry.stat()
                    yield name, [stat.st_size, stat.st_mtime_ns]
            except OSError:
                if unlisted is not None:
                    unlisted.append(name)


def scan_objects(inbox: UPath):
    """(name relative to the prefix `inbox`, [size, last-modified ns, ETag]) of each supported media object
    under it, hidden names skipped: an object appears whole, and a new upload under the same name changes its
    ETag and time."""
    extensions = tuple(SUPPORTED_EXTENSIONS)
    root = inbox.path.rstrip("/")
    for path, info in inbox.fs.find(root, detail=True).items():
        name = path[len(root):].lstrip("/")
        if info.get("type") != "file" or not name.lower().endswith(extensions) or \
                any(part.startswith(".") for part in name.split("/")):
            continue
        modified = info.get("LastModified") or info.get("last_modified") or info.get("updated") or info.get("mtime")
        if isinstance(modified, str):
            modified = datetime.fromisoformat(modified.replace("Z", "+00:00"))
        seconds = modified.timestamp() if isinstance(modified, datetime) else float(modified or 0)
        tag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or ""
        yield name, [int(info.get("size") or 0), int(seconds * 1e9), str(tag).strip('"')]


def inbox_changes(inbox: UPath, handled: dict[str, list], settle_seconds: float):
    """What the inbox holds that `handled` does not say: ({name: fingerprint} of the files new or changed
    since, and settled; how many files are still being written; the handled files gone from the inbox)."""
    now = time.time()
    present: set[str] = set()
    unlisted: list[str] = []
    changed: dict[str, list] = {}
    unsettled = 0
    listing = scan_folder(str(inbox), unlisted) if is_local(inbox) else scan_objects(inbox)
    separator = os.sep if is_local(inbox) else "/"
    for name, fingerprint in listing:
        present.add(name)
        if handled.get(name) == fingerprint:
            continue
        size, age = fingerprint[0], now - fingerprint[1] / 1e9
        if age < settle_seconds or size == 0 and age < 60:
            unsettled += 1  # still being written (an empty file gets a minute to grow before it counts as bad)
            continue
        changed[name] = fingerprint
    # The walk is complete, so a file it did not see is gone; one under a folder it could not read may not be.
    kept = [folder + separator if folder else "" for folder in unlisted]
    gone = [n for n in handled if n not in present and not any((n + separator).startswith(k) for k in kept)]
    return changed, unsettled, gone


# The state this process last read or wrote, by (name, size) of its file: an idle tick does not parse
# it again (a deleted file is noticed).
_state_cache: dict[tuple, dict[str, list]] = {}


def read_state(store: MediaStore, name: str) -> dict[str, list]:
    """The files state `name` holds, not to be changed (it may be the cached copy)."""
    stat = store.inbox_state(name).stat()
    key = (name, stat.st_size)  # a state's content never changes
    if key not in _state_cache:
        _state_cache.clear()
        _state_cache[key] = store.read_inbox_state(name)
    return _state_cache[key]


def write_state(store: MediaStore, files: dict[str, list]) -> str:
    name = store.write_inbox_state(files)
    stat = store.inbox_state(name).stat()
    _state_cache.clear()
    _state_cache[(name, stat.st_size)] = files
    return name


def handled_files(store: MediaStore, cursor: str | None, log) -> tuple[str | None, dict[str, list]]:
    """(the state the cursor names, the files it holds, not to be changed): what the committed ticks handled. A
    cursor of an earlier version held the files itself (no state yet)."""
    recorded = json.loads(cursor) if cursor else {}
    if "state" not in recorded:
        return None, {name: entry[:2] for name, entry in recorded.items()}
    try:
        return recorded["state"], read_state(store, recorded["state"])
    except (FileNotFoundError, ValueError):  # deleted, or cut short by a power loss
        log.warning(f"inbox state {recorded['state']} is missing from the store or unreadable: every file is "
                    "hashed again (existing partitions are not run again)")
        return None, {}


def audio_seconds(path: Path, config: SpeechConfig) -> float | None:
    """The duration `path` declares, or None when it declares none or cannot be probed: the `media` step
    checks the file for real."""
    try:
        return probe(path, config).duration
    except (MediaError, OSError, TimeoutError, RuntimeError):
        return None


def examine(inbox: UPath, names: list[str], probe_config: SpeechConfig | None, deadline: float, log):
    """Hash (and with `probe_config`, probe) the files `names`, a few at a time, until `deadline`:
    ({name: (source, audio seconds)}, how many files were left for the next tick). A file that vanished or
    cannot be read is logged and left out."""
    def one(name: str) -> tuple[Source, float | None]:
        path = inbox / name
        with local_file(path) as local:  # an object is read once, for its hash and its probe
            source = identify(local)
            seconds = audio_seconds(local, probe_config) if probe_config else None
        return (source if is_local(path) else replace(source, source=str(path))), seconds

    found: dict[str, tuple[Source, float | None]] = {}
    with ThreadPoolExecutor(EXAMINE_THREADS) as pool:
        futures = [pool.submit(one, name) for name in names]
        for i, (name, future) in enumerate(zip(names, futures)):
            try:
                found[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                for rest in futures[i:]:
                    rest.cancel()
                return found, len(names) - i
            except FileNotFoundError:
                log.info(f"skipping {name}: removed from the inbox before it was hashed")
            except OSError as exc:
                log.warning(f"skipping {name}: {exc}")
    return found, 0


def never_run(instance, store: MediaStore, keys) -> list[str]:
    """Of existing partitions `keys`, those whose source this sensor registered but that no run has planned:
    their tick's partition adds were applied, its runs were not."""
    first = AssetKey(ASSET_NAMES[0])
    return [key for key in keys if store.source_record(key).is_file()
            and instance.get_latest_planned_materialization_info(first, partition=key) is None]


def partitions_for(context, store: MediaStore, found: dict[str, tuple[Source, float | None]]):
    """({key: the first file, by name, that has it}, the new keys: sources registered, partitions to add; the
    keys that exist but never ran: `never_run`) for the files `found` this tick."""
    first_name: dict[str, str] = {}
    for name, (source, _) in found.items():
        first_name.setdefault(source.key, name)
    existing = (context.instance.get_existing_dynamic_partitions(media_files.name, list(first_name)) if first_name
                else set())
    new_keys = [key for key in first_name if key not in existing]
    for key in new_keys:
        store.register(found[first_name[key]][0])
    if new_keys:
        # A CLI submit may have added the same file while this tick hashed: no second add or run for it.
        if raced := context.instance.get_existing_dynamic_partitions(media_files.name, new_keys):
            context.log.info(f"already added meanwhile, not run again: {', '.join(first_name[k] for k in raced)}")
            new_keys = [k for k in new_keys if k not in raced]
    if lost := never_run(context.instance, store, sorted(existing)):
        context.log.warning(f"partitions added without their run (the daemon stopped mid-tick), run now: "
                            f"{', '.join(lost)}")
    return first_name, new_keys, lost


@sensor(job=process_media_job, minimum_interval_seconds=PipelineSettings().sensor_interval,
        default_status=DefaultSensorStatus.RUNNING)
def media_inbox_sensor(context: SensorEvaluationContext, storage: MediaStoreResource):
    settings = PipelineSettings()
    inbox = location(settings.inbox_url)
    if not inbox.is_dir():
        return SkipReason(f"inbox {inbox} does not exist (or, as a bucket prefix, holds nothing yet)")
    store = storage.store
    committed, handled = handled_files(store, context.cursor, context.log)
    deadline = time.monotonic() + TICK_TIME_BUDGET_S
    changed, unsettled, gone = inbox_changes(inbox, handled, settings.sensor_settle_seconds)
    names = sorted(changed)[:settings.sensor_max_files_per_tick]
    probe_config = SpeechConfig() if settings.batch_max_audio_seconds else None
    found, left = examine(inbox, names, probe_config, deadline, context.log)
    if pending := unsettled + len(changed) - len(names) + left:
        context.log.info(f"{pending} files left for the next tick")
    state, files = committed, len(handled)
    if found or gone or committed is None:
        forgotten = set(gone)
        handled = {**{n: v for n, v in handled.items() if n not in forgotten}, **{n: changed[n] for n in found}}
        state, files = write_state(store, handled), len(handled)
        store.prune_inbox_states({state, committed}, STALE_STATE_S)
    cursor = json.dumps({"state": state, "files": files})
    first_name, new_keys, lost = partitions_for(context, store, found)
    if not new_keys and not lost and not pending:
        return SensorResult(skip_reason=SkipReason("no new media files"), cursor=cursor)
    seconds = {source.key: duration for source, duration in found.values()}
    runs = [process_media_request(batch, run_key=batch[0] if len(batch) == 1 else batch_run_key(batch),
                                  tags={"whisperx_assets/source": first_name[batch[0]] if len(batch) == 1 else
                                        f"{first_name[batch[0]]} and {len(batch) - 1} more"})
            for batch in batches(new_keys, settings.batch_max_files, seconds, settings.batch_max_audio_seconds)]
    runs += [process_media_request([key], run_key=key, tags={"whisperx_assets/source": first_name[key]})
             for key in lost]
    return SensorResult(run_requests=runs, dynamic_partitions_requests=[media_files.build_add_request(new_keys)]
                        if new_keys else [], cursor=cursor)


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
