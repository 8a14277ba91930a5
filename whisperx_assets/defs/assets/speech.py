"""The speech stages as assets: thin wrappers over `whisperx_assets.speech.SpeechEngine`.

Each step covers the run's partitions (one file, or a batch) and works file by file (`run_stage`).
`transcript`, `alignment` and `diarization` use the accelerator, so they are in the `gpu` pool;
`diarization` depends on `media` only, so it does not wait for the transcript.
"""


import pandas as pd
from dagster import AssetCheckSeverity, AssetExecutionContext, Config, Failure, Output, asset
from pydantic import Field

from whisperx_assets.defs.assets.metadata import record, stage_output
from whisperx_assets.defs.checks import (CHECK_SPECS, check_result, spans_text, speaker_problems, speech_problems,
                                         times_inside_audio, word_time_problems)
from whisperx_assets.defs.assets.versions import code_version
from whisperx_assets.defs.jobs import BATCHES
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.resources import MediaStoreResource, WhisperXResource
from whisperx_assets.speech.combine import assign_speakers
from whisperx_assets.speech.errors import MediaError
from whisperx_assets.speech.frames import split_word_table, word_table, words_frame
from whisperx_assets.speech.supplied import read_rttm, read_transcript
from whisperx_assets.defs.stage_guard import run_stage
from whisperx_assets.inputs.sources import location

GPU_POOL = "gpu"
Frames = dict[str, pd.DataFrame]


def media_audio(whisperx: WhisperXResource, media: pd.DataFrame):
    """The decoded audio of a partition's stored input copy (its `media` row)."""
    return whisperx.load_audio(location(media["stored_path"].iloc[0]))[1]


def _duration(media: pd.DataFrame) -> float:
    return float(media["duration"].iloc[0])


class Supplied(Config):
    """A result the user supplies for a one-file run's partition instead of computing it: kept in the store, so
    the partition's later runs use it too."""

    text: str = Field(default="", description="the file's content")
    name: str = Field(default="", description="its file name (its extension names its format)")


class SuppliedTranscript(Supplied):
    """A transcript to force-align instead of Whisper's: whisperX JSON, SRT, WebVTT or plain text."""


class SuppliedDiarization(Supplied):
    """Speaker turns (RTTM) to combine with the transcript instead of computing them."""


def supplied(context: AssetExecutionContext, config: Supplied, storage: MediaStoreResource, read) -> set[str]:
    """Keep the run config's supplied result for the run's file once `read(text, name)` accepts it; the
    partitions whose result is supplied."""
    asset = context.asset_key.to_user_string()
    keys = sorted(context.partition_keys)
    if config.text:
        if len(keys) != 1:
            raise Failure(f"a supplied {asset} in the run config is for one file, but this run covers {len(keys)}",
                          allow_retries=False)
        name = config.name or f"{asset}.txt"
        try:
            read(config.text, name)
        except MediaError as exc:
            raise Failure(f"Supplied {asset} refused, not retried: {exc}", allow_retries=False) from None
        storage.store.supply(keys[0], asset, name, config.text)
    return {key for key in keys if storage.store.supplied_path(key, asset).is_file()}


def origin(name: str | None) -> str:
    """Where a result came from, in its metadata (lineage shows computed and supplied results alike)."""
    return f"supplied: {name}" if name else "computed"


@asset(partitions_def=media_files, code_version=code_version("transcript"), backfill_policy=BATCHES,
       pool=GPU_POOL, group_name="speech", kinds={"whisperx", "parquet"}, check_specs=CHECK_SPECS["transcript"])
def transcript(context: AssetExecutionContext, config: SuppliedTranscript, media: Frames, whisperx: WhisperXResource,
               storage: MediaStoreResource):
    """Sentence segments decoded in batches by Whisper (language detected unless configured), or the transcript
    the user supplied for the file."""
    given = supplied(context, config, storage, read_transcript)

    def transcribe(key: str, m: pd.DataFrame):
        if key in given:
            name, text = storage.store.supplied(key, "transcript")
            result = whisperx.engine.supplied_transcript(name, text, media_audio(whisperx, m))
            return stage_output(result.segments, result.facts, origin=origin(name))
        result = whisperx.engine.transcribe(media_audio(whisperx, m))
        coverage = result.coverage
        return stage_output(result.segments, result.facts, origin=origin(None), speech_regions=coverage.regions,
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
        result = whisperx.engine.align(segments, media_audio(whisperx, media[key]), segments["language"].iloc[0])
        return stage_output(word_table(result.segments, result.words), result.facts)

    results = run_stage(context, "alignment", transcript, align, storage.store, whisperx.free_memory)
    tables = {key: record(context, key, out) for key, out in results.items()}
    yield Output(tables)
    yield check_result("word_times_valid", "alignment",
                       {key: word_time_problems(table, _duration(media[key])) for key, table in tables.items()})


@asset(partitions_def=media_files, code_version=code_version("diarization"), backfill_policy=BATCHES,
       pool=GPU_POOL, group_name="speech", kinds={"pyannote", "parquet"}, check_specs=CHECK_SPECS["diarization"])
def diarization(context: AssetExecutionContext, config: SuppliedDiarization, media: Frames,
                whisperx: WhisperXResource, storage: MediaStoreResource):
    """Speaker turns (start, end, speaker), or those the user supplied for the file."""
    given = supplied(context, config, storage, read_rttm)

    def diarize(key: str, m: pd.DataFrame):
        if key in given:
            name, text = storage.store.supplied(key, "diarization")
            result = whisperx.engine.supplied_diarization(name, text, media_audio(whisperx, m))
            return stage_output(result.turns, result.facts, origin=origin(name))
        result = whisperx.engine.diarize(media_audio(whisperx, m))
        return stage_output(result.turns, result.facts, origin=origin(None))

    results = run_stage(context, "diarization", media, diarize, storage.store, whisperx.free_memory)
    turns = {key: record(context, key, out) for key, out in results.items()}
    yield Output(turns)
    yield check_result("turns_valid", "diarization",
                       {key: times_inside_audio(t, _duration(media[key])) for key, t in turns.items()})


@asset(partitions_def=media_files, code_version=code_version("combined"), backfill_policy=BATCHES,
       group_name="speech", kinds={"whisperx", "parquet"}, check_specs=CHECK_SPECS["combined"])
def combined(context: AssetExecutionContext, media: Frames, alignment: Frames, diarization: Frames,
             speaker_names: Frames, storage: MediaStoreResource):
    """The speaker-attributed transcript: every word and sentence with its speaker, as `speaker_names` calls it."""

    def combine(key: str, table: pd.DataFrame):
        segments, words = split_word_table(table)
        result = assign_speakers(segments, words, diarization[key], _duration(media[key]))
        labels = dict(zip(speaker_names[key]["speaker"], speaker_names[key]["label"]))
        segments, words = (frame.assign(speaker=frame["speaker"].map(lambda s: labels.get(s, s)))
                           for frame in (result.segments, result.words))
        return stage_output(word_table(segments, words), result.facts)

    results = run_stage(context, "combined", alignment, combine, storage.store)
    tables = {key: record(context, key, out) for key, out in results.items()}
    yield Output(tables)
    yield check_result("word_times_valid", "combined",
                       {key: word_time_problems(table, _duration(media[key])) for key, table in tables.items()})
    yield check_result("every_word_has_speaker", "combined",
                       {key: speaker_problems(table, diarization[key]) for key, table in tables.items()})
