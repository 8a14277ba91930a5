"""Transcripts and diarizations that a user supplies for a media file, read into the project's frames.

A supplied transcript (whisperX JSON, SRT, WebVTT or plain text) is force-aligned to the audio instead of being
transcribed; a supplied diarization (RTTM) is combined with the transcript instead of diarizing. Plain text has
no times: `place_text` borrows them from a machine transcript of the same audio. Unreadable input raises
`SuppliedInputError`, which names the file and says what is wrong with it.
"""

from __future__ import annotations

import bisect
import difflib
import html
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath

import pandas as pd

from whisperx_assets.speech.align import LANGUAGES_WITHOUT_SPACES, _split_words
from whisperx_assets.speech.errors import MediaError
from whisperx_assets.speech.frames import segments_frame, turns_frame

TRANSCRIPT_FORMATS = ("json", "srt", "vtt", "txt")
MAX_SUPPLIED_BYTES = 5 * 1024 * 1024


class SuppliedInputError(MediaError):
    """A supplied transcript or diarization cannot be read. A `MediaError` (so a `ValueError`): bad input that
    callers never retry."""


@dataclass(frozen=True)
class SuppliedTranscript:
    segments: pd.DataFrame  # segments_frame columns; start/end NaN when not `timed`, speaker <NA>
    language: str | None
    timed: bool
    format: str


def check_size(data: bytes | str, name: str) -> None:
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    if size > MAX_SUPPLIED_BYTES:
        raise SuppliedInputError(name, f"too large ({size / 2**20:.1f} MB); supplied transcripts and diarizations "
                                       f"are limited to {MAX_SUPPLIED_BYTES // 2**20} MB")


def check_times(frame: pd.DataFrame, duration: float, name: str) -> None:
    """SuppliedInputError when a segment or turn of `frame` (start/end columns; NaN starts are skipped) starts
    at or after the end of the audio (`duration`, s): there is nothing to align it to or give a speaker from, so
    the file is for other audio, or its times are in other units. Ends past the audio are allowed: subtitles
    often keep the last cue on screen after the sound ends."""
    starts = frame["start"].dropna()
    late = starts[starts >= duration]
    if len(late):
        what = "segments" if "text" in frame else "turns"
        raise SuppliedInputError(name, f"{len(late)} of its {len(starts)} {what} start after the audio ends "
                                       f"({duration:.1f} s), the first at {late.min():.1f} s: is it for another file?")


def _checked_text(text: str, name: str) -> str:
    """`text` without a byte-order mark and with \\n line ends; SuppliedInputError if too large or empty."""
    check_size(text, name)
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise SuppliedInputError(name, "empty file")
    return text


TIMING_LINE = re.compile(r"^[ \t]*[-\d:.,]+[ \t]*-->", re.MULTILINE)


def transcript_format(name: str, text: str) -> str:
    """The format by `name`'s extension (.json .srt .vtt .txt, any case), else sniffed from `text`: a WEBVTT
    header is vtt, a JSON object json, a `start --> end` line srt, anything else txt."""
    extension = PurePosixPath(name).suffix.lower().lstrip(".")
    if extension in TRANSCRIPT_FORMATS:
        return extension
    head = text.lstrip("\ufeff \t\r\n")
    if head.startswith("WEBVTT"):
        return "vtt"
    if head.startswith("{"):
        return "json"
    if TIMING_LINE.search(text):
        return "srt"
    return "txt"


def read_transcript(text: str, name: str, fmt: str | None = None, language: str | None = None) -> SuppliedTranscript:
    """Read a supplied transcript (`name` is its file name, for messages; `fmt` as `transcript_format` if None).

    - json: whisperX's result (`{"segments": [{"start", "end", "text", ...}], "language": ...}`), one segment
      per segment (words and speakers are not read: the aligner and the diarization give them anew). Its
      language, when it has one, wins over `language`.
    - srt, vtt: one segment per cue. Cue identifiers, cue settings and WebVTT header, NOTE, STYLE and REGION
      blocks are skipped; markup (`<v Alice>`, `<i>`, `<c.x>`, `{\\an8}`) is removed, entities decoded, a cue's
      lines joined with spaces. Text after a blank line inside a cue is kept as part of the cue.
    - txt: no times; one segment per sentence (ended by . ! ? … or 。！？) of each non-empty line.
    In srt, vtt and txt a leading speaker label as whisperX's writers put it (`[SPEAKER_00]: `), or a bare
    pyannote label (`SPEAKER_00: `), is removed. Empty segments are dropped; timed ones are sorted by start.
    """
    text = _checked_text(text, name)
    fmt = fmt or transcript_format(name, text)
    if fmt == "json":
        segments, json_language = _json_segments(text, name)
        language = json_language or language
    elif fmt in ("srt", "vtt"):
        segments = _cue_segments(text, name, fmt)
    elif fmt == "txt":
        segments = [{"text": sentence} for line in text.split("\n")
                    for sentence in _sentences(SPEAKER_LABEL.sub("", line.strip(), count=1))]
    else:
        raise ValueError(f"unknown transcript format {fmt!r}; choose from {TRANSCRIPT_FORMATS}")
    segments = [s for s in segments if s["text"].strip()]
    if not segments:
        raise SuppliedInputError(name, "no text")
    timed = fmt != "txt"
    if timed:
        segments.sort(key=lambda s: s["start"])
    return SuppliedTranscript(segments_frame(segments, language), language, timed, fmt)


# --- whisperX JSON ----------------------------------------------------------------------------------


def _json_segments(text: str, name: str) -> tuple[list[dict], str | None]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SuppliedInputError(name, f"not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("segments"), list):
        raise SuppliedInputError(name, "not whisperX JSON: no segments list")
    language = data.get("language")
    if language is not None and not isinstance(language, str):
        raise SuppliedInputError(name, f"language is not a string ({language!r})")
    segments = []
    for number, segment in enumerate(data["segments"], start=1):
        where = f"segment {number}"
        if not isinstance(segment, dict):
            raise SuppliedInputError(name, f"{where} is not an object")
        if not isinstance(segment.get("text"), str):
            raise SuppliedInputError(name, f"{where} has no text")
        start, end = (_json_time(segment.get(key), name, where, key) for key in ("start", "end"))
        if end < start:
            raise SuppliedInputError(name, f"{where} ends before it starts ({start} > {end})")
        segments.append({"start": start, "end": end, "text": segment["text"]})
    return segments, language or None


def _json_time(value, name: str, where: str, key: str) -> float:
    if value is None:
        raise SuppliedInputError(name, f"{where} has no {key} time")
    # bool is an int to Python, not a time to anyone
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SuppliedInputError(name, f"{where}: {key} is not a number ({value!r})")
    if value < 0:
        raise SuppliedInputError(name, f"{where}: negative {key} time ({value})")
    return float(value)


# --- SRT and WebVTT ---------------------------------------------------------------------------------

CUE_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>|<\d[\d:.]*>|\{\\[^{}]*\}")  # tags, karaoke times, {\an8}
SPEAKER_LABEL = re.compile(r"^(?:\[[^\[\]\n]+\]|SPEAKER_\d+):\s*")
VTT_METADATA_BLOCKS = ("WEBVTT", "NOTE", "STYLE", "REGION")
CUE_TIME = re.compile(r"(-)?(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[.,](\d+))?")


def _cue_segments(text: str, name: str, fmt: str) -> list[dict]:
    if "-->" not in text:
        raise SuppliedInputError(name, "no cues (no 'start --> end' lines)")
    cues: list[dict] = []  # start, end and the cue's text lines
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.split("\n")
        timing = [i for i, line in enumerate(lines) if "-->" in line]
        if not timing:
            if fmt == "vtt" and lines[0].split(maxsplit=1)[0] in VTT_METADATA_BLOCKS:
                continue
            if not cues:
                raise SuppliedInputError(name, f"text before the first cue ({lines[0][:40]!r})")
            cues[-1]["lines"].extend(lines)
            continue
        number = len(cues) + 1
        # A cue is an optional identifier line, its timing line and its text: anything else means that a blank
        # line between two cues is missing, and where the first cue's text ends would be a guess.
        if len(timing) > 1 or timing[0] > 1:
            raise SuppliedInputError(name, f"cue {number}: expected an optional cue identifier, a 'start --> end' "
                                           "line and text (is a blank line between cues missing?)")
        start_text, rest = lines[timing[0]].split("-->", 1)
        end_text = rest.split(maxsplit=1)[0] if rest.strip() else ""  # cue settings follow the end time
        start, end = (_cue_time(t.strip(), name, number) for t in (start_text, end_text))
        if end < start:
            raise SuppliedInputError(name, f"cue {number} ends before it starts ({start_text.strip()} --> {end_text})")
        cues.append({"start": start, "end": end, "lines": lines[timing[0] + 1:]})
    return [{"start": cue["start"], "end": cue["end"], "text": _cue_text(cue["lines"])} for cue in cues]


def _cue_time(text: str, name: str, number: int) -> float:
    """[hh:]mm:ss[.,]fff (SRT uses a comma, WebVTT a point and may leave out the hours) -> seconds."""
    match = CUE_TIME.fullmatch(text)
    if not match or int(match[3]) >= 60 or int(match[4]) >= 60:
        raise SuppliedInputError(name, f"cue {number}: unparsable time {text!r}")
    if match[1]:
        raise SuppliedInputError(name, f"cue {number}: negative time {text!r}")
    hours, minutes, seconds = int(match[2] or 0), int(match[3]), int(match[4])
    return hours * 3600 + minutes * 60 + seconds + (float(f"0.{match[5]}") if match[5] else 0.0)


def _cue_text(lines: list[str]) -> str:
    text = html.unescape(" ".join(CUE_MARKUP.sub("", line) for line in lines))
    return SPEAKER_LABEL.sub("", " ".join(text.split()), count=1)


# --- plain text -------------------------------------------------------------------------------------

SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)|[。！？]+[」』”’）]*")


def _sentences(line: str) -> list[str]:
    """`line` cut after sentence punctuation; a point only before a space, so "3.5" stays whole. Abbreviations
    ("Mr. Smith") are cut too: the aligner splits sentences properly later."""
    cuts = [0, *(m.end() for m in SENTENCE_END.finditer(line)), len(line)]
    return [line[a:b].strip() for a, b in zip(cuts, cuts[1:]) if line[a:b].strip()]


def _match_key(word: str) -> str:
    return "".join(c for c in word.casefold() if c.isalnum())


def place_text(supplied: pd.DataFrame, timed: pd.DataFrame, language: str) -> pd.DataFrame:
    """Segments of the untimed transcript `supplied`, timed by `timed` (a machine transcript of the same audio,
    a segments frame with start/end/text), so that a forced aligner gets segments of sensible length.

    The words of both (per character for ja/zh, as the aligner splits) are matched lowercased and without
    punctuation (difflib). Each supplied word goes to the timed segment of the word it matched; an unmatched
    word goes with the word before it (leading ones with the first matched word). Result: one segment per
    timed segment that received words, with that segment's start and end and the supplied words as written.
    When no word matches, or `timed` has no text, the result is one segment with all the words, from the first
    timed start to the last timed end (NaN when `timed` has no text): the aligner then has the whole span.
    """
    words = [w for text in supplied["text"].dropna() for w, _, _ in _split_words(str(text), language)]
    spans: list[tuple[float, float]] = []
    timed_keys: list[tuple[int, str]] = []  # (index in spans, match key) per timed word
    for row in timed.sort_values("start", kind="stable").itertuples(index=False):
        if pd.isna(row.start) or pd.isna(row.end) or pd.isna(row.text):
            continue
        timed_words = _split_words(str(row.text), language)
        if timed_words:
            timed_keys.extend((len(spans), key) for key in map(_match_key, (w for w, _, _ in timed_words)) if key)
            spans.append((float(row.start), float(row.end)))
    supplied_keys = [(i, key) for i, key in enumerate(map(_match_key, words)) if key]
    span_of_word: list[int | None] = [None] * len(words)
    for a, b in _matched_pairs([k for _, k in timed_keys], [k for _, k in supplied_keys]):
        span_of_word[supplied_keys[b][0]] = timed_keys[a][0]
    separator = "" if language in LANGUAGES_WITHOUT_SPACES else " "
    current = next((span for span in span_of_word if span is not None), None)
    if current is None:
        if not words:
            return segments_frame([], language)
        start, end = (spans[0][0], max(e for _, e in spans)) if spans else (math.nan, math.nan)
        return segments_frame([{"start": start, "end": end, "text": separator.join(words)}], language)
    # The matching runs forward in both sequences, so the spans come in order.
    placed: dict[int, list[str]] = {}
    for word, span in zip(words, span_of_word):
        current = span if span is not None else current
        placed.setdefault(current, []).append(word)
    return segments_frame([{"start": spans[k][0], "end": spans[k][1], "text": separator.join(ws)}
                           for k, ws in placed.items()], language)


DIRECT_MATCH_LIMIT = 4_000_000  # len(a) * len(b): about 2000 words each, half a second of difflib


def _matched_pairs(a: list[str], b: list[str]) -> list[tuple[int, int]]:
    """Index pairs (i, j), a[i] == b[j], matched in order in both, in no particular order.

    difflib.SequenceMatcher(autojunk=False) does the matching, but its work grows with len(a) * len(b) (an hour
    of speech takes it a minute; per character, far longer). Larger inputs are first cut at anchors, as patience
    diff does, and each piece between them matched on its own."""
    pairs: list[tuple[int, int]] = []
    parts = [(0, len(a), 0, len(b))]
    while parts:
        alo, ahi, blo, bhi = parts.pop()
        large = (ahi - alo) * (bhi - blo) > DIRECT_MATCH_LIMIT
        anchors, size = _anchors(a, b, alo, ahi, blo, bhi) if large else ([], 0)
        if not anchors:
            matcher = difflib.SequenceMatcher(None, a[alo:ahi], b[blo:bhi], autojunk=False)
            pairs.extend((alo + m.a + k, blo + m.b + k) for m in matcher.get_matching_blocks() for k in range(m.size))
            continue
        pairs.extend((i + k, j + k) for i, j in anchors for k in range(size))
        gap_starts = [(alo, blo), *((i + size, j + size) for i, j in anchors)]
        parts.extend((i0, i1, j0, j1) for (i0, j0), (i1, j1) in zip(gap_starts, [*anchors, (ahi, bhi)]))
    return pairs


def _anchors(a: list[str], b: list[str], alo: int, ahi: int, blo: int, bhi: int) -> tuple[list[tuple[int, int]], int]:
    """Starts (i, j) of runs of `size` words that occur once in a[alo:ahi] and once in b[blo:bhi], the longest
    chain of them in order in both and not overlapping. Single words first; longer runs where no word is unique
    (text matched per character)."""
    for size in (1, 2, 4, 8, 16):
        runs_a = [tuple(a[i:i + size]) for i in range(alo, ahi - size + 1)]
        runs_b = [tuple(b[j:j + size]) for j in range(blo, bhi - size + 1)]
        count_a, count_b = Counter(runs_a), Counter(runs_b)
        once_in_b = {run: blo + j for j, run in enumerate(runs_b) if count_b[run] == 1}
        candidates = [(alo + i, once_in_b[run]) for i, run in enumerate(runs_a)
                      if count_a[run] == 1 and run in once_in_b]
        # Longest increasing subsequence of j (candidates run in order of i).
        tails: list[int] = []  # smallest j that ends a chain of each length
        tail_at: list[int] = []  # the candidate with that j
        previous: list[int] = []
        for k, (_, j) in enumerate(candidates):
            length = bisect.bisect_left(tails, j)
            tails[length:length + 1], tail_at[length:length + 1] = [j], [k]
            previous.append(tail_at[length - 1] if length else -1)
        chain = []
        k = tail_at[-1] if tail_at else -1
        while k >= 0:
            chain.append(candidates[k])
            k = previous[k]
        anchors: list[tuple[int, int]] = []
        for i, j in reversed(chain):
            if not anchors or (i >= anchors[-1][0] + size and j >= anchors[-1][1] + size):
                anchors.append((i, j))
        if anchors:
            return anchors, size
    return [], 0


# --- RTTM -------------------------------------------------------------------------------------------


def read_rttm(text: str, name: str) -> pd.DataFrame:
    """Speaker turns (turns_frame) from RTTM `SPEAKER <file-id> <channel> <onset> <duration> <NA> <NA> <speaker>
    <NA> <NA>` lines. Other record types (SPKR-INFO, ...), `;;` comments and blank lines are skipped. One
    file's diarization: several file ids are an error."""
    text = _checked_text(text, name)
    rows, file_ids = [], set()
    for number, line in enumerate(text.split("\n"), start=1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise SuppliedInputError(name, f"line {number}: a SPEAKER line has at least 8 fields, "
                                           f"this one {len(fields)}")
        onset, duration = (_rttm_number(fields[i], name, number, what) for i, what in ((3, "onset"), (4, "duration")))
        file_ids.add(fields[1])
        rows.append({"start": onset, "end": onset + duration, "speaker": fields[7]})
    if not rows:
        raise SuppliedInputError(name, "no SPEAKER lines")
    if len(file_ids) > 1:
        ids = sorted(file_ids)
        listed = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        raise SuppliedInputError(name, f"more than one file id ({listed}); supply the diarization of one file")
    return turns_frame(rows)


def _rttm_number(text: str, name: str, number: int, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise SuppliedInputError(name, f"line {number}: {what} is not a number ({text!r})")
    if value < 0:
        raise SuppliedInputError(name, f"line {number}: negative {what} ({text})")
    return value
