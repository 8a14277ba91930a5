"""The data contract: pandas DataFrames with stable column names and dtypes, ready for Parquet.

- segments: segment_id, start, end, text, speaker, avg_logprob, language
- words:    segment_id, word_index, word, start, end, score, speaker
- turns:    start, end, speaker
- facts:    one row per stage run (see `StageFacts`)

Times are seconds from the start of the media (float64). Missing values are NaN (floats) or <NA>
(strings). Conversions to and from whisperX's result dicts live here so that the stages and the
writers use one definition.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

SEGMENT_DTYPES = {"segment_id": "int64", "start": "float64", "end": "float64", "text": "string",
                  "speaker": "string", "avg_logprob": "float64", "language": "string"}
WORD_DTYPES = {"segment_id": "int64", "word_index": "int64", "word": "string", "start": "float64",
               "end": "float64", "score": "float64", "speaker": "string"}
TURN_DTYPES = {"start": "float64", "end": "float64", "speaker": "string"}


def _frame(rows: list[dict], dtypes: dict[str, str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(dtypes))
    return frame.astype(dtypes).reset_index(drop=True)


def segments_frame(segments: list[dict], language: str | None) -> pd.DataFrame:
    """whisperX segments (list of dicts) -> segments DataFrame; segment_id is the list position."""
    rows = [{"segment_id": i, "start": s.get("start"), "end": s.get("end"), "text": (s.get("text") or "").strip(),
             "speaker": s.get("speaker"), "avg_logprob": s.get("avg_logprob"), "language": language}
            for i, s in enumerate(segments)]
    return _frame(rows, SEGMENT_DTYPES)


def words_frame(segments: list[dict]) -> pd.DataFrame:
    rows = []
    for i, segment in enumerate(segments):
        for j, word in enumerate(segment.get("words") or []):
            rows.append({"segment_id": i, "word_index": j, "word": word.get("word"), "start": word.get("start"),
                         "end": word.get("end"), "score": word.get("score"), "speaker": word.get("speaker")})
    return _frame(rows, WORD_DTYPES)


def turns_frame(rows: list[dict]) -> pd.DataFrame:
    frame = _frame(rows, TURN_DTYPES)
    return frame.sort_values(["start", "end"], kind="stable").reset_index(drop=True)


def _value(v):
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def to_whisperx_result(segments: pd.DataFrame, words: pd.DataFrame | None = None, language: str | None = None) -> dict:
    """DataFrames -> the dict whisperX's writers and `assign_word_speakers` take (missing values omitted)."""
    by_segment: dict[int, list[dict]] = {}
    if words is not None:
        for w in words.sort_values(["segment_id", "word_index"]).itertuples(index=False):
            word = {k: _value(getattr(w, k)) for k in ("word", "start", "end", "score", "speaker")}
            by_segment.setdefault(int(w.segment_id), []).append({k: v for k, v in word.items() if v is not None})
    result_segments = []
    for s in segments.sort_values("segment_id").itertuples(index=False):
        segment = {k: _value(getattr(s, k)) for k in ("start", "end", "text", "speaker", "avg_logprob")}
        segment = {k: v for k, v in segment.items() if v is not None}
        if words is not None:
            segment["words"] = by_segment.get(int(s.segment_id), [])
        result_segments.append(segment)
    result = {"segments": result_segments}
    if language:
        result["language"] = language
    return result


@dataclass(frozen=True)
class StageFacts:
    """What one stage did: the run facts stored beside its output and plotted over time."""

    stage: str
    model: str
    backend: str
    device: str
    audio_seconds: float
    wall_seconds: float
    compute_type: str | None = None
    language: str | None = None
    language_probability: float | None = None
    speakers: int | None = None

    @property
    def real_time_factor(self) -> float:
        """Wall time / audio time: 0.1 means ten times faster than real time."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "real_time_factor": self.real_time_factor}


FACT_DTYPES = {"stage": "string", "model": "string", "backend": "string", "device": "string",
               "audio_seconds": "float64", "wall_seconds": "float64", "compute_type": "string",
               "language": "string", "language_probability": "float64", "speakers": "Int64",
               "real_time_factor": "float64"}


def facts_frame(facts: list[StageFacts]) -> pd.DataFrame:
    return _frame([f.as_dict() for f in facts], FACT_DTYPES)


# --- one table per stage for storage: words with their segment's columns ---------------------------
# Tabular assets store one Parquet file each, so aligned and combined transcripts are stored as words joined
# with their sentence segment (`segment_*` columns). A segment without words keeps one row with no word.

SEGMENT_COLUMNS_IN_TABLE = {"start": "segment_start", "end": "segment_end", "text": "segment_text",
                            "speaker": "segment_speaker", "language": "language"}
WORD_TABLE_DTYPES = {"segment_id": "int64", "segment_start": "float64", "segment_end": "float64",
                     "segment_text": "string", "segment_speaker": "string", "language": "string",
                     "word_index": "Int64", "word": "string", "start": "float64", "end": "float64",
                     "score": "float64", "speaker": "string"}


def word_table(segments: pd.DataFrame, words: pd.DataFrame) -> pd.DataFrame:
    seg = segments[["segment_id", *SEGMENT_COLUMNS_IN_TABLE]].rename(columns=SEGMENT_COLUMNS_IN_TABLE)
    table = seg.merge(words, on="segment_id", how="left", validate="one_to_many")
    return table[list(WORD_TABLE_DTYPES)].astype(WORD_TABLE_DTYPES).sort_values(
        ["segment_id", "word_index"], kind="stable").reset_index(drop=True)


def split_word_table(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Inverse of `word_table`: (segments, words)."""
    inverse = {v: k for k, v in SEGMENT_COLUMNS_IN_TABLE.items()}
    segments = (table.drop_duplicates("segment_id")[["segment_id", *inverse]].rename(columns=inverse)
                .assign(avg_logprob=float("nan")))
    words = table[table["word_index"].notna()][list(WORD_DTYPES)]
    return (segments[list(SEGMENT_DTYPES)].astype(SEGMENT_DTYPES).reset_index(drop=True),
            words.astype(WORD_DTYPES).reset_index(drop=True))
