"""`subtitles`: srt, vtt, txt, tsv, json and aud files of the speaker-attributed transcript."""


import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output, asset

from whisperx_assets.assets.metadata import frame_metadata
from whisperx_assets.partitions import media_files
from whisperx_assets.resources import MediaStoreResource
from whisperx_assets.speech.export import EXPORT_FORMATS, export
from whisperx_assets.speech.frames import split_word_table


@asset(partitions_def=media_files, group_name="exports", kinds={"whisperx", "parquet"})
def subtitles(context: AssetExecutionContext, combined: pd.DataFrame, storage: MediaStoreResource) -> Output[pd.DataFrame]:
    """Files written by whisperX's writers under <storage>/subtitles/<partition>/; the table lists them."""
    key = context.partition_key
    segments, words = split_word_table(combined)
    language = segments["language"].dropna().iloc[0] if segments["language"].notna().any() else None
    written = export(segments, words, storage.store.subtitles_dir(key), key, EXPORT_FORMATS, language)
    frame = pd.DataFrame([{"format": fmt, "path": str(path), "size_bytes": path.stat().st_size}
                          for fmt, path in written.items()]).astype({"format": "string", "path": "string",
                                                                      "size_bytes": "int64"})
    srt = written["srt"].read_text()
    return Output(frame, metadata=frame_metadata(frame, folder=MetadataValue.path(str(written["srt"].parent)),
                                                 srt_preview=MetadataValue.md(f"```\n{srt[:1500]}\n```")))
