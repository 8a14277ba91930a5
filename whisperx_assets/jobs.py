"""The one job: every asset of a media file, in one process so each model loads once per run."""

from dagster import AssetSelection, define_asset_job, in_process_executor

process_media_job = define_asset_job(
    "process_media",
    selection=AssetSelection.groups("speech", "exports"),
    executor_def=in_process_executor,
    description="Ingest, transcribe, align, diarize, combine and export one media file (one partition).",
)
