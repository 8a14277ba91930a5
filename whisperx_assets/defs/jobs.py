"""The one job, and how runs of it are requested: one file, or a batch of files in one run.

A batch is a contiguous range of `media_files` partitions (Dagster's partition-range run tags): one run
process imports the libraries and loads each model once for all of its files, and every file still has its
own partition, Parquet files, metadata and lineage. A run processes stage after stage over all its files, so
its first file is done only when the run ends: the inbox sensor bounds a batch by its audio seconds too
(`batches`). Backfills batch by file count (`BATCHES`: Dagster's backfill policy knows no durations).
"""

import hashlib
import warnings
from collections.abc import Mapping, Sequence

from dagster import (AssetKey, AssetSelection, BackfillPolicy, BetaWarning, RunRequest, define_asset_job,
                     in_process_executor)

from whisperx_assets.defs.settings import PipelineSettings

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
# A run that takes over the files of a failed run (a split batch) carries the failed run's work, so it keeps
# what that run finished; Dagster's own re-executions share their root run's work.
RESUME_FROM = "whisperx_assets/resume_from"

# Every asset takes BATCHES; the beta notice would be printed once per asset by each process that loads them.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=BetaWarning)
BATCHES = BackfillPolicy.multi_run(max_partitions_per_run=PipelineSettings().batch_max_files)

process_media_job = define_asset_job(
    "process_media",
    selection=AssetSelection.groups("speech", "exports"),
    executor_def=in_process_executor,
    description="Ingest, transcribe, align, diarize, combine and export media files: one partition per file, "
                "one or several partitions per run.",
)


def process_media_request(keys: Sequence[str], run_key: str | None = None, tags: dict[str, str] | None = None,
                          asset_selection: Sequence[AssetKey] | None = None) -> RunRequest:
    """A run of `process_media` for `keys`, which must be contiguous in the partitions' order (as keys
    added together are)."""
    if not keys:
        raise ValueError("no partitions to run")
    tags = dict(tags or {})
    job_name = process_media_job.name  # named: a sensor may request other jobs too
    if len(keys) == 1:
        return RunRequest(run_key=run_key, partition_key=keys[0], tags=tags, asset_selection=asset_selection,
                          job_name=job_name)
    tags.update({RANGE_START: keys[0], RANGE_END: keys[-1], "whisperx_assets/batch_size": str(len(keys))})
    return RunRequest(run_key=run_key, tags=tags, asset_selection=asset_selection, job_name=job_name)


def work_id(run) -> str:
    """The work a run belongs to: outputs written by the same work are finished and are never redone."""
    return run.tags.get(RESUME_FROM) or run.tags.get("dagster/root_run_id") or run.run_id


def keys_in_range(order: Sequence[str], start: str | None, end: str | None,
                  position: dict[str, int] | None = None) -> list[str]:
    """The partitions a range run covers, given every partition key in order (and, for many lookups, each
    key's position in it); [] if an end is missing or gone."""
    position = {key: i for i, key in enumerate(order)} if position is None else position
    if start not in position or end not in position:
        return []
    return list(order[position[start]:position[end] + 1])


def run_keys(tags: Mapping[str, str], order: Sequence[str], position: dict[str, int] | None = None) -> list[str]:
    """The partitions a run covers: its own, or those of its range (batch runs)."""
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    return keys_in_range(order, tags.get(RANGE_START), tags.get(RANGE_END), position)


def batch_run_key(keys: Sequence[str]) -> str:
    return f"batch-{len(keys)}-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def batches(keys: Sequence[str], max_files: int, seconds: Mapping[str, float | None] | None = None,
            max_seconds: float = 0.0) -> list[list[str]]:
    """`keys` cut, in order, into runs of at most `max_files` files and, when `max_seconds` is set, at most that
    many seconds of audio by `seconds` (a longer file runs alone). A file of unknown length counts as 0 s: one
    that is not media fails at once in its run's `media` step, and is then split off (`split_failed_batch_sensor`)."""
    runs: list[list[str]] = []
    total = 0.0
    for key in keys:
        length = (seconds or {}).get(key) or 0.0
        if not runs or len(runs[-1]) == max_files or max_seconds and total + length > max_seconds:
            runs.append([])
            total = 0.0
        runs[-1].append(key)
        total += length
    return runs
