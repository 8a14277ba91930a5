"""Checks on each step's outputs, reported with the materialization.

A step covers one partition or a batch; a check result covers the step, and its `problems` metadata names
the partitions that failed it."""

from __future__ import annotations

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec

TOLERANCE_S = 0.5  # times may run a little past the decoded end (VAD and frame rounding)


def check_result(name: str, asset: str, problems: dict[str, list[str]],
                 severity: AssetCheckSeverity = AssetCheckSeverity.ERROR, **metadata) -> AssetCheckResult:
    """`problems`: {partition key: problems found}; passed when there are none."""
    found = {key: p for key, p in problems.items() if p}
    if len(problems) == 1:
        text = "; ".join(next(iter(problems.values()))) or "none"
    else:
        text = " | ".join(f"{key}: {'; '.join(p)}" for key, p in found.items()) or "none"
    return AssetCheckResult(check_name=name, asset_key=asset, passed=not found, severity=severity,
                            metadata={"problems": text, "partitions_checked": len(problems),
                                      "partitions_failing": len(found), **metadata})


def spans_text(spans: list[tuple[float, float]]) -> str:
    return ", ".join(f"{start:.2f}-{end:.2f} s" for start, end in spans) or "none"


def speech_problems(facts: dict) -> list[str]:
    missing = facts.get("speech_missing", "none")
    return [] if missing == "none" else [f"no words for the speech at {missing}"]


def times_inside_audio(frame: pd.DataFrame, duration: float, start: str = "start", end: str = "end") -> list[str]:
    timed = frame.dropna(subset=[start, end])
    problems = []
    if (timed[start] > timed[end]).any():
        problems.append(f"{int((timed[start] > timed[end]).sum())} rows end before they start")
    if (timed[start] < 0).any() or (timed[end] > duration + TOLERANCE_S).any():
        problems.append(f"times outside the audio (0..{duration:.2f} s)")
    return problems


def word_time_problems(table: pd.DataFrame, duration: float) -> list[str]:
    words = table[table["word_index"].notna()]
    problems = times_inside_audio(words, duration)
    unordered = words.dropna(subset=["start"]).groupby("segment_id")["start"].apply(
        lambda s: not s.is_monotonic_increasing).sum()
    if unordered:
        problems.append(f"{int(unordered)} segments with words out of order")
    return problems


def speaker_problems(table: pd.DataFrame, turns: pd.DataFrame) -> list[str]:
    words = table[table["word_index"].notna()]
    missing = int(words["speaker"].isna().sum()) if len(turns) else 0
    return [f"{missing} of {len(words)} words have no speaker"] if missing else []


CHECK_SPECS = {
    "transcript": [AssetCheckSpec("speech_transcribed", asset="transcript",
                                  description="every voice-active region has words (regions the batched decoding "
                                              "missed are decoded again on their own; a warning names any left)")],
    "alignment": [AssetCheckSpec("word_times_valid", asset="alignment",
                                 description="word times ordered within each sentence and inside the audio")],
    "diarization": [AssetCheckSpec("turns_valid", asset="diarization", description="turns inside the audio")],
    "combined": [AssetCheckSpec("word_times_valid", asset="combined",
                                description="word times ordered within each sentence and inside the audio"),
                 AssetCheckSpec("every_word_has_speaker", asset="combined",
                                description="every word has a speaker when diarization found speech")],
}
