"""Keeping the names current: `speakers_sensor` refreshes `voiceprints` when SPEAKERS_DIR differs from the
enrollment its latest materialization was built from, and `voices` when files were embedded after those its latest
materialization took in; then it re-runs `speaker_names`, `combined` and `subtitles` of the files whose names that
changed (every named file after an enrollment change; the files whose voices now recur after a `voices`
refresh). Transcription, alignment and diarization are never re-run for it.

One refresh at a time: none while a `refresh_speakers` run is unfinished, so a failed refresh is simply still due
(requested again once VOICES_REFRESH_SECONDS have passed since it failed). Re-naming runs have run keys made from
the materialization they follow, so a tick evaluated again after a crash requests nothing twice; the cursor keeps
those storage ids and the time of the last `voices` request (a few dozen bytes)."""


import functools
import json
import time

from dagster import (AssetKey, AssetSelection, DagsterRunStatus, DefaultSensorStatus, RunRequest, RunsFilter,
                     SensorEvaluationContext, SensorResult, define_asset_job, sensor)

from whisperx_assets.defs.assets import COLLECTION_ASSETS
from whisperx_assets.defs.assets.speakers import latest, voiceprints_version
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
REFRESH_TAG = "whisperx_assets/refresh"  # on the refresh runs: the asset they rebuild (voiceprints or voices)
UNFINISHED = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
              DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
STOPPED = [DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]


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


def metadata_value(record, key: str, default=None):
    """The value of `key` in the metadata of the materialization `record` (None: none yet), else `default`."""
    entry = record.asset_materialization.metadata.get(key) if record is not None else None
    return default if entry is None else entry.value


def failed_recently(instance, asset: str, seconds: float) -> bool:
    """Whether the latest refresh run of `asset` failed (or was cancelled) less than `seconds` ago: a refresh that
    keeps failing is retried at that pace, not every tick."""
    records = instance.get_run_records(RunsFilter(job_name=refresh_speakers_job.name, tags={REFRESH_TAG: asset}),
                                       limit=1)
    if not records or records[0].dagster_run.status not in STOPPED:
        return False
    ended = records[0].end_time or records[0].update_timestamp.timestamp()
    return time.time() - ended < seconds


def refresh_request(asset: str) -> RunRequest:
    # No run key: whether a refresh is due comes from the materializations, and none is requested while a refresh
    # run is unfinished; a tick's requests are stored with reserved run ids before they are submitted (an
    # interrupted tick is resumed from those), so none is launched twice. A run key would be spent by a run
    # that fails, and the same enrollment or embeddings can need a refresh again.
    return RunRequest(job_name=refresh_speakers_job.name, asset_selection=[AssetKey(asset)],
                      tags={REFRESH_TAG: asset})


def due_refresh(instance, named, grouped, cursor: dict, settings: PipelineSettings) -> RunRequest | None:
    """The refresh to request now, if any: `voiceprints` first. Call it only while no refresh run is unfinished,
    and with the latest `voiceprints` and `voices` read after checking that (a run ending in between would
    otherwise be requested again)."""
    wait = settings.voices_refresh_seconds
    if fingerprint(location(settings.speakers_dir)) != metadata_value(named, "enrollment") and \
            not failed_recently(instance, "voiceprints", wait):
        return refresh_request("voiceprints")
    embedded = latest(instance, "speaker_embeddings")
    # Not more often than VOICES_REFRESH_SECONDS: a burst of files is grouped by a few refreshes instead of one per
    # finished run, each a run process competing with the burst's.
    if embedded is not None and embedded.storage_id > metadata_value(grouped, "embedded_through", 0) and \
            time.time() - cursor.get("voices_requested", 0) >= wait and not failed_recently(instance, "voices", wait):
        cursor["voices_requested"] = time.time()
        return refresh_request("voices")
    return None


@sensor(jobs=[refresh_speakers_job, process_media_job], minimum_interval_seconds=PipelineSettings().sensor_interval,
        default_status=DefaultSensorStatus.RUNNING)
def speakers_sensor(context: SensorEvaluationContext):
    """Refresh voiceprints or voices when their sources changed since they were built; re-name the files whose
    names changed."""
    settings, instance = PipelineSettings(), context.instance
    cursor = json.loads(context.cursor) if context.cursor else {}
    requests = []

    refreshing = instance.get_runs(RunsFilter(job_name=refresh_speakers_job.name, statuses=UNFINISHED), limit=1)
    named, grouped = latest(instance, "voiceprints"), latest(instance, "voices")
    if not refreshing and (refresh := due_refresh(instance, named, grouped, cursor, settings)) is not None:
        requests.append(refresh)

    # every partition key, read only when files are re-named (a tick with nothing to do stays cheap at 100k files)
    order = functools.cache(lambda: instance.get_dynamic_partitions(media_files.name))
    if named is not None and named.storage_id > cursor.get("voiceprints", 0):
        # the names change only if the enrollment does (before the first refresh, nobody was enrolled)
        if named.asset_materialization.tags.get("dagster/data_version") != \
                cursor.get("voiceprints_version", voiceprints_version([])):
            done = instance.get_materialized_partitions(AssetKey("speaker_names"))
            requests += relabel_requests(set(done), order(), f"voiceprints-{named.storage_id}", settings)
        cursor["voiceprints"] = named.storage_id
        cursor["voiceprints_version"] = named.asset_materialization.tags.get("dagster/data_version")
    if grouped is not None and grouped.storage_id > cursor.get("voices", 0):
        metadata = grouped.asset_materialization.metadata
        changed = set(metadata["relabel"].value) if "relabel" in metadata else set()
        if changed:
            requests += relabel_requests(changed, order(), f"voices-{grouped.storage_id}", settings)
        cursor["voices"] = grouped.storage_id
    return SensorResult(run_requests=requests, cursor=json.dumps(cursor, separators=(",", ":")))
