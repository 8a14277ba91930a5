"""`media`: the input file ingested into the managed store, with its probe metadata."""


import json

import pandas as pd
from dagster import AssetExecutionContext, Config, Failure, Output, asset
from pydantic import Field

from whisperx_assets.defs.assets.metadata import record, stage_output
from whisperx_assets.inputs.fetch import FetchPolicy
from whisperx_assets.defs.assets.versions import code_version
from whisperx_assets.defs.jobs import BATCHES
from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.inputs.sources import Source, is_url, location, source_name, within
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.resources import MediaStoreResource, WhisperXResource
from whisperx_assets.speech.errors import MediaError
from whisperx_assets.defs.stage_guard import run_stage

MEDIA_DTYPES = {"partition_key": "string", "name": "string", "source": "string", "stored_path": "string",
                "sha256": "string", "size_bytes": "int64", "format_name": "string", "duration": "float64",
                "audio_codec": "string", "channels": "int64", "sample_rate": "int64", "has_video": "bool",
                "streams": "string"}


class MediaSource(Config):
    """Where the partition's input comes from, when a one-file run is launched with it (CLI, GraphQL).
    Without it the source registered by the inbox sensor (or an earlier launch) is used."""

    source: str = Field(default="", description="local path or http(s) URL")
    name: str = Field(default="", description="file name (default: the source's)")
    sha256: str = Field(default="", description="expected SHA-256 of a local file's bytes")


def intake() -> dict[str, list[str] | str]:
    """Where this code location reads sources from, stores inputs and keeps enrolled people, resolved: the CLI
    reads it from the definition's metadata to tell whether a file it submits must be copied in, and where."""
    settings = PipelineSettings()
    return {"source_roots": [str(location(root)) for root in settings.readable_roots()],
            "storage_url": str(location(settings.storage_url)), "speakers_dir": str(location(settings.speakers_dir))}


@asset(partitions_def=media_files, code_version=code_version("media"), backfill_policy=BATCHES,
       group_name="speech", kinds={"ffmpeg", "parquet"}, metadata={"intake": intake()})
def media(context: AssetExecutionContext, config: MediaSource, whisperx: WhisperXResource,
          storage: MediaStoreResource) -> Output[dict[str, pd.DataFrame]]:
    """The media file, copied (or downloaded) into the store and checked (decodable, has audio, within the
    size and duration limits). Bad files fail here, once, with the reason."""
    keys = sorted(context.partition_keys)
    store, roots = storage.store, PipelineSettings().readable_roots()
    if config.source:
        if len(keys) != 1:
            raise Failure(f"a source in the run config names one file, but this run covers {len(keys)} partitions",
                          allow_retries=False)
        store.register(Source(keys[0], config.source, config.name or source_name(config.source), config.sha256 or None))

    def ingest(key: str, _) -> pd.DataFrame:
        try:
            source = store.source(key)
        except FileNotFoundError as exc:  # permanent for this file: nothing to retry
            raise MediaError(f"partition {key}", str(exc)) from None
        if is_url(source.source):
            stored = store.download(source, FetchPolicy())
            source = store.source(key)  # now with the SHA-256 of the downloaded bytes
        else:
            if not store.media_path(key, source.name).is_file() and not within(source.source, roots):
                raise MediaError(source.source, "outside the folders this deployment reads sources from (SOURCE_ROOTS: "
                                 f"{', '.join(roots)}); put the file in the inbox, submit it with the CLI (which "
                                 "copies it into the store), or add its folder to SOURCE_ROOTS")
            stored = store.ingest(key, location(source.source), source.name, source.sha256)
        try:
            info, _ = whisperx.load_audio(stored)
        except MediaError as exc:  # name the file the user gave, not the stored copy
            raise MediaError(source.source, exc.reason) from None
        row = {"partition_key": key, "name": source.name, "source": source.source, "stored_path": str(stored),
               "sha256": source.sha256, "size_bytes": info.size_bytes, "format_name": info.format_name,
               "duration": info.duration, "audio_codec": info.audio_codec, "channels": info.channels,
               "sample_rate": info.sample_rate, "has_video": info.has_video,
               "streams": json.dumps([dict(s) for s in info.streams])}
        return stage_output(pd.DataFrame([row]).astype(MEDIA_DTYPES), audio_seconds=info.duration,
                            audio_codec=info.audio_codec, name=source.name, sha256=source.sha256)

    results = run_stage(context, "media", dict.fromkeys(keys), ingest, store)
    return Output({key: record(context, key, out) for key, out in results.items()})
