"""Keeping the names current: `speakers_sensor` refreshes `voiceprints` when SPEAKERS_DIR changes and `voices`
when files have been embedded since its last refresh, then re-runs `speaker_names`, `combined` and `subtitles`
of the files whose names that changed (every named file after an enrollment change; the files whose voices now
recur after a `voices` refresh). Transcription, alignment and diarization are never re-run for it.

Each request has a run key made from what it answers (the enrollment's fingerprint, the storage id of the
materialization it follows), so a tick evaluated again after a crash requests nothing twice; the cursor keeps
those ids (a few dozen bytes)."""


import json
import time

from dagster import (AssetKey, AssetSelection, DagsterRunStatus, DefaultSensorStatus, RunRequest, RunsFilter,
                     SensorEvaluationContext, SensorResult, define_asset_job, sensor)

from whisperx_assets.defs.assets import COLLECTION_ASSETS
from whisperx_assets.defs.assets.speakers import voiceprints_version
from whisperx_assets.defs.jobs import batches, process_media_job, process_media_request
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.inputs.enrollment import fingerprint
from whisperx_assets.inputs.sources import location

refresh_speakers_job = define_asset_job(
    "refresh_speakers", selection=AssetSelection.assets(*COLLECTION_ASSETS),
    description="Rebuild the voiceprints of the enrolled people, or the voices shared across files.")

RELABELED = [AssetKey(name) for name in ("speaker_names", "combined", "subtitles")]
RELABEL_TAG = "whisperx_assets/relabel"  # on the runs that re-name files: what changed
UNFINISHED = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
              DagsterRunStatus.STARTED]


def latest(instance, asset: str):
    """The latest materialization record of `asset`, or None."""
    records = instance.fetch_materializations(AssetKey(asset), limit=1).records
    return records[0] if records else None


def contiguous_runs(keys: set[str], order: list[str]) -> list[list[str]]:
    """`keys` as runs of neighbours in the partitions' `order` (a batch run covers a contiguous range)."""
    runs: list[list[str]] = []
    previous = None
    for i, key in enumerate(order):
        if key not in keys:
            continue
        if previous is None or previous != i - 1:
            runs.append([])
        runs[-1].append(key)
        previous = i
    return runs


def relabel_requests(keys: set[str], order: list[str], why: str, settings: PipelineSettings) -> list[RunRequest]:
    requests = []
    for run in contiguous_runs(keys, order):
        for batch in batches(run, settings.batch_max_files):
            requests.append(process_media_request(batch, run_key=f"relabel-{why}-{batch[0]}-{len(batch)}",
                                                  tags={RELABEL_TAG: why}, asset_selection=RELABELED))
    return requests


@sensor(jobs=[refresh_speakers_job, process_media_job], minimum_interval_seconds=PipelineSettings().sensor_interval,
        default_status=DefaultSensorStatus.RUNNING)
def speakers_sensor(context: SensorEvaluationContext):
    """Refresh voiceprints and voices when their sources changed; re-name the files whose names changed."""
    settings, instance = PipelineSettings(), context.instance
    cursor = json.loads(context.cursor) if context.cursor else {}
    requests = []

    enrollment = fingerprint(location(settings.speakers_dir))
    if enrollment != cursor.get("enrollment"):
        requests.append(RunRequest(run_key=f"voiceprints-{enrollment}", job_name=refresh_speakers_job.name,
                                   asset_selection=[AssetKey("voiceprints")]))
        cursor["enrollment"] = enrollment
    embedded = latest(instance, "speaker_embeddings")
    # One refresh at a time, and not more often than VOICES_REFRESH_SECONDS: a burst of files is grouped by a few
    # refreshes instead of one per finished run, each a run process competing with the burst's.
    if embedded is not None and embedded.storage_id > cursor.get("embedded", 0) and \
            time.time() - cursor.get("voices_requested", 0) >= settings.voices_refresh_seconds and \
            not instance.get_runs(RunsFilter(job_name=refresh_speakers_job.name, statuses=UNFINISHED), limit=1):
        requests.append(RunRequest(run_key=f"voices-{embedded.storage_id}", job_name=refresh_speakers_job.name,
                                   asset_selection=[AssetKey("voices")]))
        cursor.update(embedded=embedded.storage_id, voices_requested=time.time())

    order = instance.get_dynamic_partitions(media_files.name)
    named = latest(instance, "voiceprints")
    if named is not None and named.storage_id > cursor.get("voiceprints", 0):
        # the names change only if the enrollment does (before the first refresh, nobody was enrolled)
        if named.asset_materialization.tags.get("dagster/data_version") != \
                cursor.get("voiceprints_version", voiceprints_version([])):
            done = instance.get_materialized_partitions(AssetKey("speaker_names"))
            requests += relabel_requests(set(done), order, f"voiceprints-{named.storage_id}", settings)
        cursor["voiceprints"] = named.storage_id
        cursor["voiceprints_version"] = named.asset_materialization.tags.get("dagster/data_version")
    grouped = latest(instance, "voices")
    if grouped is not None and grouped.storage_id > cursor.get("voices", 0):
        metadata = grouped.asset_materialization.metadata
        changed = set(metadata["relabel"].value) if "relabel" in metadata else set()
        requests += relabel_requests(changed, order, f"voices-{grouped.storage_id}", settings)
        cursor["voices"] = grouped.storage_id
    return SensorResult(run_requests=requests, cursor=json.dumps(cursor, separators=(",", ":")))
