"""The speech stages as assets: thin wrappers over `whisperx_assets.speech.SpeechEngine`.

`transcript`, `alignment` and `diarization` use the accelerator, so they are in the `gpu` pool;
`diarization` depends on `media` only, so it does not wait for the transcript.
"""


from pathlib import Path

import pandas as pd
from dagster import AssetExecutionContext, Output, asset

from whisperx_assets.assets.metadata import frame_metadata
from whisperx_assets.checks import CHECK_SPECS, check_speakers_assigned, check_turns, check_word_times
from whisperx_assets.partitions import media_files
from whisperx_assets.resources import WhisperXResource
from whisperx_assets.settings import PipelineSettings
from whisperx_assets.speech.combine import assign_speakers
from whisperx_assets.speech.frames import split_word_table, word_table, words_frame
from whisperx_assets.stage_guard import stage_guard

GPU_POOL = "gpu"


def _audio(whisperx: WhisperXResource, media: pd.DataFrame):
    return whisperx.load_audio(Path(media["stored_path"].iloc[0]))[1]


@asset(partitions_def=media_files, pool=GPU_POOL, group_name="speech", kinds={"whisperx", "parquet"})
def transcript(context: AssetExecutionContext, media: pd.DataFrame, whisperx: WhisperXResource) -> Output[pd.DataFrame]:
    """Segments transcribed by whisperX's batched pipeline (language detected unless configured)."""
    with stage_guard(context, "transcript", PipelineSettings.from_env(), whisperx.free_memory):
        result = whisperx.engine.transcribe(_audio(whisperx, media))
    return Output(result.segments, metadata=frame_metadata(result.segments, result.facts))


@asset(partitions_def=media_files, pool=GPU_POOL, group_name="speech", kinds={"whisperx", "parquet"},
       check_specs=CHECK_SPECS["alignment"])
def alignment(context: AssetExecutionContext, media: pd.DataFrame, transcript: pd.DataFrame,
              whisperx: WhisperXResource):
    """Words with start, end and score, joined with their sentence segments."""
    if transcript.empty:  # silence: nothing to align
        table = word_table(transcript, words_frame([]))
        yield Output(table, metadata=frame_metadata(table, backend="none (empty transcript)"))
    else:
        with stage_guard(context, "alignment", PipelineSettings.from_env(), whisperx.free_memory):
            result = whisperx.engine.align(transcript, _audio(whisperx, media), transcript["language"].iloc[0])
        table = word_table(result.segments, result.words)
        yield Output(table, metadata=frame_metadata(table, result.facts))
    yield check_word_times("alignment", table, float(media["duration"].iloc[0]))


@asset(partitions_def=media_files, pool=GPU_POOL, group_name="speech", kinds={"pyannote", "parquet"},
       check_specs=CHECK_SPECS["diarization"])
def diarization(context: AssetExecutionContext, media: pd.DataFrame, whisperx: WhisperXResource):
    """Speaker turns (start, end, speaker)."""
    with stage_guard(context, "diarization", PipelineSettings.from_env(), whisperx.free_memory):
        result = whisperx.engine.diarize(_audio(whisperx, media))
    yield Output(result.turns, metadata=frame_metadata(result.turns, result.facts))
    yield check_turns(result.turns, float(media["duration"].iloc[0]))


@asset(partitions_def=media_files, group_name="speech", kinds={"whisperx", "parquet"},
       check_specs=CHECK_SPECS["combined"])
def combined(context: AssetExecutionContext, media: pd.DataFrame, alignment: pd.DataFrame, diarization: pd.DataFrame):
    """The speaker-attributed transcript: every word and sentence with its speaker."""
    segments, words = split_word_table(alignment)
    with stage_guard(context, "combined", PipelineSettings.from_env()):
        result = assign_speakers(segments, words, diarization, float(media["duration"].iloc[0]))
    table = word_table(result.segments, result.words)
    yield Output(table, metadata=frame_metadata(table, result.facts))
    yield check_word_times("combined", table, float(media["duration"].iloc[0]))
    yield check_speakers_assigned(table, diarization)

