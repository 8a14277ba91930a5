"""`media_inbox_sensor`: new or changed media files in the inbox become partitions and runs.

Each tick walks the inbox (recursively, supported extensions only, hidden files skipped), and for each file
not seen before with the same size and modification time:
- skips it for now if it was modified in the last SENSOR_SETTLE_SECONDS (still being written);
- hashes it, derives its partition key (see `partitions`), records its source in the store;
- adds the partition and requests a run for it, unless the key already exists (same bytes, same name).
Partition adds and run requests go out in one `SensorResult`; the daemon applies the adds first. The
cursor remembers every file handled (size, mtime, key), so an unchanged file is never hashed or run again,
and work per tick is capped (SENSOR_MAX_FILES_PER_TICK, and a time budget) so a flood of files never
times the sensor out: the rest is picked up on the next ticks. A file that cannot be read is logged and
skipped; it never stops the others.
"""


import json
import os
import time
from pathlib import Path

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from whisperx_assets.jobs import process_media_job
from whisperx_assets.partitions import content_hash, media_files, partition_key
from whisperx_assets.resources import MediaStoreResource
from whisperx_assets.settings import PipelineSettings
from whisperx_assets.speech.media import SUPPORTED_EXTENSIONS

TICK_TIME_BUDGET_S = 30.0  # well inside the default 60 s sensor timeout


def scan_inbox(root: Path):
    """Supported media files under `root` with their stat, skipping hidden files and folders."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
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
                continue


@sensor(job=process_media_job, minimum_interval_seconds=PipelineSettings.from_env().sensor_interval,
        default_status=DefaultSensorStatus.RUNNING)
def media_inbox_sensor(context: SensorEvaluationContext, storage: MediaStoreResource):
    settings = PipelineSettings.from_env()
    inbox = settings.inbox_dir.resolve()
    if not inbox.is_dir():
        return SkipReason(f"inbox {inbox} does not exist")
    seen: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
    existing = set(context.instance.get_dynamic_partitions(media_files.name))
    store = storage.store
    started, now = time.monotonic(), time.time()
    new_keys: list[str] = []
    runs: list[RunRequest] = []
    pending = 0
    for path, stat in sorted(scan_inbox(inbox)):
        name = str(path.relative_to(inbox))
        fingerprint = [stat.st_size, stat.st_mtime_ns]
        if seen.get(name, [None, None])[:2] == fingerprint:
            continue
        if now - stat.st_mtime < settings.sensor_settle_seconds or stat.st_size == 0 and now - stat.st_mtime < 60:
            pending += 1  # still being written (an empty file gets a minute to grow before it counts as bad)
            continue
        if len(runs) >= settings.sensor_max_files_per_tick or time.monotonic() - started > TICK_TIME_BUDGET_S:
            pending += 1
            continue
        try:
            sha256 = content_hash(path)
            key = partition_key(path.name, sha256)
            if key not in existing and key not in new_keys:
                store.register_source(key, str(path), path.name, sha256)
                new_keys.append(key)
                runs.append(RunRequest(partition_key=key, run_key=key, tags={"whisperx_assets/source": name}))
        except OSError as exc:
            context.log.warning(f"skipping {name}: {exc}")
            continue
        seen[name] = [*fingerprint, key]
    if pending:
        context.log.info(f"{pending} files left for the next tick")
    if not runs and not pending:
        return SensorResult(skip_reason=SkipReason("no new media files"), cursor=json.dumps(seen))
    return SensorResult(run_requests=runs, dynamic_partitions_requests=[media_files.build_add_request(new_keys)]
                        if new_keys else [], cursor=json.dumps(seen))
