"""Checks on each partition's outputs, reported with the materialization (they run per partition)."""

from __future__ import annotations

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec

TOLERANCE_S = 0.5  # times may run a little past the decoded end (VAD and frame rounding)


def _result(name: str, asset: str, problems: list[str], **metadata) -> AssetCheckResult:
    return AssetCheckResult(check_name=name, asset_key=asset, passed=not problems,
                            severity=AssetCheckSeverity.ERROR,
                            metadata={"problems": "; ".join(problems) or "none", **metadata})


def times_inside_audio(frame: pd.DataFrame, duration: float, start: str = "start", end: str = "end") -> list[str]:
    timed = frame.dropna(subset=[start, end])
    problems = []
    if (timed[start] > timed[end]).any():
        problems.append(f"{int((timed[start] > timed[end]).sum())} rows end before they start")
    if (timed[start] < 0).any() or (timed[end] > duration + TOLERANCE_S).any():
        problems.append(f"times outside the audio (0..{duration:.2f} s)")
    return problems


def check_word_times(asset: str, table: pd.DataFrame, duration: float) -> AssetCheckResult:
    words = table[table["word_index"].notna()]
    problems = times_inside_audio(words, duration)
    unordered = words.dropna(subset=["start"]).groupby("segment_id")["start"].apply(
        lambda s: not s.is_monotonic_increasing).sum()
    if unordered:
        problems.append(f"{int(unordered)} segments with words out of order")
    return _result("word_times_valid", asset, problems, words=len(words))


def check_turns(turns: pd.DataFrame, duration: float) -> AssetCheckResult:
    return _result("turns_valid", "diarization", times_inside_audio(turns, duration),
                   speakers=int(turns["speaker"].nunique()))


def check_speakers_assigned(table: pd.DataFrame, turns: pd.DataFrame) -> AssetCheckResult:
    words = table[table["word_index"].notna()]
    missing = int(words["speaker"].isna().sum()) if len(turns) else 0
    problems = [f"{missing} of {len(words)} words have no speaker"] if missing else []
    return _result("every_word_has_speaker", "combined", problems)


CHECK_SPECS = {
    "alignment": [AssetCheckSpec("word_times_valid", asset="alignment",
                                 description="word times ordered within each sentence and inside the audio")],
    "diarization": [AssetCheckSpec("turns_valid", asset="diarization", description="turns inside the audio")],
    "combined": [AssetCheckSpec("word_times_valid", asset="combined",
                                description="word times ordered within each sentence and inside the audio"),
                 AssetCheckSpec("every_word_has_speaker", asset="combined",
                                description="every word has a speaker when diarization found speech")],
}
