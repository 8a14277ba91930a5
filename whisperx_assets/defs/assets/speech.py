"""The speech stages as assets: thin wrappers over `whisperx_assets.speech.SpeechEngine`.

Each step covers the run's partitions (one file, or a batch) and works file by file (`run_stage`).
`transcript`, `alignment` and `diarization` use the accelerator, so they are in the `gpu` pool;
`diarization` depends on `media` only, so it does not wait for the transcript.
"""


import pandas as pd
from dagster import AssetCheckSeverity, AssetExecutionContext, Output, asset

from whisperx_assets.defs.assets.metadata import record, stage_output
from whisperx_assets.defs.checks import (CHECK_SPECS, check_result, spans_text, speaker_problems, speech_problems,
                                         times_inside_audio, word_time_problems)
from whisperx_assets.defs.assets.versions import code_version
from whisperx_assets.defs.jobs import BATCHES
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.resources import MediaStoreResource, WhisperXResource
from whisperx_assets.speech.combine import assign_speakers
from whisperx_assets.speech.frames import split_word_table, word_table, words_frame
from whisperx_assets.defs.stage_guard import run_stage
from whisperx_assets.inputs.sources import location

GPU_POOL = "gpu"
Frames = dict[str, pd.DataFrame]


def _audio(whisperx: WhisperXResource, media: pd.DataFrame):
    return whisperx.load_audio(location(media["stored_path"].iloc[0]))[1]


def _duration(media: pd.DataFrame) -> float:
    return float(media["duration"].iloc[0])


@asset(partitions_def=media_files, code_version=code_version("transcript"), backfill_policy=BATCHES,
       pool=GPU_POOL, group_name="speech", kinds={"whisperx", "parquet"}, check_specs=CHECK_SPECS["transcript"])
def transcript(context: AssetExecutionContext, media: Frames, whisperx: WhisperXResource,
               storage: MediaStoreResource):
    """Sentence segments decoded in batches by Whisper (language detected unless configured)."""

    def transcribe(key: str, m: pd.DataFrame):
        result = whisperx.engine.transcribe(_audio(whisperx, m))
        coverage = result.coverage
        return stage_output(result.segments, result.facts, speech_regions=coverage.regions,
                            speech_recovered=spans_text(coverage.recovered), speech_missing=spans_text(coverage.missing))

    results = run_stage(context, "transcript", media, transcribe, storage.store, whisperx.free_memory)
    yield Output({key: record(context, key, out) for key, out in results.items()})
    yield check_result("speech_transcribed", "transcript", {key: speech_problems(out.facts) for key, out in results.items()},
                       severity=AssetCheckSeverity.WARN)


@asset(partitions_def=media_files, code_version=code_version("alignment"), backfill_policy=BATCHES,
       pool=GPU_POOL, group_name="speech", kinds={"whisperx", "parquet"}, check_specs=CHECK_SPECS["alignment"])
def alignment(context: AssetExecutionContext, media: Frames, transcript: Frames, whisperx: WhisperXResource,
              storage: MediaStoreResource):
    """Words with start, end and score, joined with their sentence segments."""

    def align(key: str, segments: pd.DataFrame):
        if segments.empty:  # silence: nothing to align
            return stage_output(word_table(segments, words_frame([])), backend="none (empty transcript)")
        result = whisperx.engine.align(segments, _audio(whisperx, media[key]), segments["language"].iloc[0])
        return stage_output(word_table(result.segments, result.words), result.facts)

    results = run_stage(context, "alignment", transcript, align, storage.store, whisperx.free_memory)
    tables = {key: record(context, key, out) for key, out in results.items()}
    yield Output(tables)
    yield check_result("word_times_valid", "alignment",
                       {key: word_time_problems(table, _duration(media[key])) for key, table in tables.items()})


@asset(partitions_def=media_files, code_version=code_version("diarization"), backfill_policy=BATCHES,
       pool=GPU_POOL, group_name="speech", kinds={"pyannote", "parquet"}, check_specs=CHECK_SPECS["diarization"])
def diarization(context: AssetExecutionContext, media: Frames, whisperx: WhisperXResource,
                storage: MediaStoreResource):
    """Speaker turns (start, end, speaker)."""

    def diarize(key: str, m: pd.DataFrame):
        result = whisperx.engine.diarize(_audio(whisperx, m))
        return stage_output(result.turns, result.facts)

    results = run_stage(context, "diarization", media, diarize, storage.store, whisperx.free_memory)
    turns = {key: record(context, key, out) for key, out in results.items()}
    yield Output(turns)
    yield check_result("turns_valid", "diarization",
                       {key: times_inside_audio(t, _duration(media[key])) for key, t in turns.items()})


@asset(partitions_def=media_files, code_version=code_version("combined"), backfill_policy=BATCHES,
       group_name="speech", kinds={"whisperx", "parquet"}, check_specs=CHECK_SPECS["combined"])
def combined(context: AssetExecutionContext, media: Frames, alignment: Frames, diarization: Frames,
             storage: MediaStoreResource):
    """The speaker-attributed transcript: every word and sentence with its speaker."""

    def combine(key: str, table: pd.DataFrame):
        segments, words = split_word_table(table)
        result = assign_speakers(segments, words, diarization[key], _duration(media[key]))
        return stage_output(word_table(result.segments, result.words), result.facts)

    results = run_stage(context, "combined", alignment, combine, storage.store)
    tables = {key: record(context, key, out) for key, out in results.items()}
    yield Output(tables)
    yield check_result("word_times_valid", "combined",
                       {key: word_time_problems(table, _duration(media[key])) for key, table in tables.items()})
    yield check_result("every_word_has_speaker", "combined",
                       {key: speaker_problems(table, diarization[key]) for key, table in tables.items()})
