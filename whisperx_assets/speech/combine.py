"""Speaker per word and per segment with whisperX's `assign_word_speakers`."""

from __future__ import annotations

import dataclasses
import time

import pandas as pd

from whisperx_assets.speech.frames import StageFacts, segments_frame, to_whisperx_result, words_frame


@dataclasses.dataclass
class CombinedResult:
    segments: pd.DataFrame
    words: pd.DataFrame
    facts: StageFacts


def assign_speakers(segments: pd.DataFrame, words: pd.DataFrame, turns: pd.DataFrame, audio_seconds: float,
                    fill_nearest: bool = True) -> CombinedResult:
    """`fill_nearest`: a word that overlaps no turn (a pause between turns, a VAD edge) takes the nearest
    speaker instead of none, so every word of a diarized recording has a speaker."""
    import whisperx

    started = time.perf_counter()
    result = to_whisperx_result(segments, words)
    combined = whisperx.assign_word_speakers(turns[["start", "end", "speaker"]], result, fill_nearest=fill_nearest)
    language = segments["language"].iloc[0] if len(segments) else None
    out_segments = segments_frame(combined["segments"], None if pd.isna(language) else language)
    facts = StageFacts(stage="combined", model="-", backend="whisperx.assign_word_speakers", device="cpu",
                       audio_seconds=audio_seconds, wall_seconds=time.perf_counter() - started,
                       speakers=int(out_segments["speaker"].nunique()))
    return CombinedResult(out_segments, words_frame(combined["segments"]), facts)
