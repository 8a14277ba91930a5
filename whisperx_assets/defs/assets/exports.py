"""`subtitles`: srt, vtt, txt, tsv, json and aud files of the speaker-attributed transcript."""


import tempfile
from pathlib import Path

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output, asset

from whisperx_assets.defs.assets.metadata import record, stage_output
from whisperx_assets.defs.assets.versions import code_version
from whisperx_assets.defs.jobs import BATCHES
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.resources import MediaStoreResource
from whisperx_assets.speech.export import EXPORT_FORMATS, export
from whisperx_assets.speech.frames import split_word_table
from whisperx_assets.defs.stage_guard import run_stage
from whisperx_assets.inputs.sources import location


@asset(partitions_def=media_files, code_version=code_version("subtitles"), backfill_policy=BATCHES,
       group_name="exports", kinds={"whisperx", "parquet"})
def subtitles(context: AssetExecutionContext, combined: dict[str, pd.DataFrame],
              storage: MediaStoreResource) -> Output[dict[str, pd.DataFrame]]:
    """Files written by whisperX's writers under <storage>/subtitles/<partition>/; the table lists them."""

    store = storage.store

    def write(key: str, table: pd.DataFrame):
        segments, words = split_word_table(table)
        language = segments["language"].dropna().iloc[0] if segments["language"].notna().any() else None
        with tempfile.TemporaryDirectory(prefix="whisperx-subtitles-") as folder:
            written = export(segments, words, Path(folder), key, EXPORT_FORMATS, language)
            rows = [{"format": fmt, "path": str(store.publish(path, store.subtitles_dir(key) / path.name)),
                     "size_bytes": path.stat().st_size} for fmt, path in written.items()]
        frame = pd.DataFrame(rows).astype({"format": "string", "path": "string", "size_bytes": "int64"})
        return stage_output(frame)

    def metadata(key: str, frame: pd.DataFrame) -> dict:
        srt = location(frame.loc[frame["format"] == "srt", "path"].iloc[0])
        return {"folder": MetadataValue.path(str(store.subtitles_dir(key))),
                "srt_preview": MetadataValue.md(f"```\n{srt.read_text()[:1500]}\n```")}

    results = run_stage(context, "subtitles", combined, write, store)
    return Output({key: record(context, key, out, **metadata(key, out.frame)) for key, out in results.items()})
