"""Supplied transcripts and diarizations: this project's own exports read back, whisperX JSON, hand-written
SRT/WebVTT/text with the markup found in the wild, plain text timed by a machine transcript, RTTM, and the
messages for bad files."""

import importlib.util
import json
import math
import random
import re
from pathlib import Path

import pandas as pd
import pytest

from whisperx_assets.speech import supplied as supplied_module
from whisperx_assets.speech.errors import MediaError
from whisperx_assets.speech.export import export
from whisperx_assets.speech.frames import SEGMENT_DTYPES, TURN_DTYPES, segments_frame, turns_frame, words_frame
from whisperx_assets.speech.supplied import (MAX_SUPPLIED_BYTES, SuppliedInputError, check_size, check_times,
                                             place_text, read_rttm, read_transcript, transcript_format)


def _words(text: str, start: float, end: float, speaker: str) -> list[dict]:
    """The words of `text` one after another from `start` to `end`."""
    words = text.split()
    edges = [start, *(round(start + i * (end - start) / len(words), 3) for i in range(1, len(words))), end]
    return [{"word": w, "start": edges[i], "end": edges[i + 1], "score": 0.9, "speaker": speaker}
            for i, w in enumerate(words)]


SPOKEN = [  # (start, end, text, speaker): times that rounding to milliseconds changes; one segment past an hour
    (0.5124, 2.3456, "Good morning, everyone.", "SPEAKER_00"),
    (3.0, 6.7891, "It is 3.5 degrees in Zürich! Bring a coat.", "SPEAKER_01"),
    (3661.25, 3663.5, "Tom & Jerry said bye.", "SPEAKER_00"),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    segments = [{"start": s, "end": e, "text": t, "speaker": sp, "words": _words(t, s, e, sp)}
                for s, e, t, sp in SPOKEN]
    out = tmp_path_factory.mktemp("exports")
    return export(segments_frame(segments, "en"), words_frame(segments), out, "meeting",
                  formats=("srt", "vtt", "txt", "json"), language="en")


def _assert_contract(frame: pd.DataFrame, language: str | None):
    assert {c: str(t) for c, t in frame.dtypes.items()} == SEGMENT_DTYPES
    assert frame["segment_id"].tolist() == list(range(len(frame)))
    assert frame["avg_logprob"].isna().all() and frame["speaker"].isna().all()
    assert (frame["language"].isna() if language is None else frame["language"] == language).all()


@pytest.mark.parametrize("fmt", ["srt", "vtt", "json"])
def test_our_own_timed_exports_read_back(exported, fmt):
    text = exported[fmt].read_text()
    assert "[SPEAKER_01]: It is 3.5" in text or fmt == "json"
    result = read_transcript(text, exported[fmt].name)
    assert (result.format, result.timed, result.language) == (fmt, True, "en" if fmt == "json" else None)
    _assert_contract(result.segments, result.language)
    assert result.segments["text"].tolist() == [t for _, _, t, _ in SPOKEN]
    for column, i in (("start", 0), ("end", 1)):
        assert result.segments[column].tolist() == pytest.approx([s[i] for s in SPOKEN], abs=0.001)


def test_our_own_text_export_reads_back_as_untimed_sentences(exported):
    result = read_transcript(exported["txt"].read_text(), "meeting.txt", language="en")
    assert (result.format, result.timed, result.language) == ("txt", False, "en")
    _assert_contract(result.segments, "en")
    assert result.segments["text"].tolist() == ["Good morning, everyone.", "It is 3.5 degrees in Zürich!",
                                                "Bring a coat.", "Tom & Jerry said bye."]
    assert result.segments[["start", "end"]].isna().all().all()


def test_whisperx_json():
    """As whisperX writes it: leading spaces, words, word_segments, speakers; here out of order. Its language
    wins over the one given."""
    data = {"segments": [
        {"start": 4.2, "end": 6.0, "text": " Zweiter Satz.", "speaker": "SPEAKER_01",
         "words": [{"word": "Zweiter", "start": 4.2, "end": 4.9, "score": 0.8},
                   {"word": "Satz.", "start": 5.0, "end": 6.0}]},
        {"start": 0, "end": 3.5, "text": " Erster Satz hier.", "avg_logprob": -0.25, "words": []},
        {"start": 3.6, "end": 3.9, "text": "  "},
    ], "word_segments": [], "language": "de"}
    result = read_transcript(json.dumps(data, ensure_ascii=False), "whisperx-output.json", language="en")
    assert (result.format, result.timed, result.language) == ("json", True, "de")
    _assert_contract(result.segments, "de")
    assert result.segments[["start", "end", "text"]].values.tolist() == [[0.0, 3.5, "Erster Satz hier."],
                                                                          [4.2, 6.0, "Zweiter Satz."]]
    no_language = read_transcript('{"segments": [{"start": 1, "end": 2, "text": "hi"}]}', "t.json", language="en")
    assert no_language.language == "en"


VTT = """WEBVTT - Meeting notes
Kind: captions
Language: en

NOTE This is a comment
spanning two lines

STYLE
::cue { color: yellow }

intro
00:01.000 --> 00:04.500 align:start position:10% line:0
<v Alice>Hello &amp; welcome</v>
to the <c.yellow>meeting</c>.

2
00:00:05.250 --> 00:00:07.000
<v.loud Bob>Thanks, <b>Alice</b>!

00:07.000 --> 00:08.000
<00:07.000><c>karaoke</c> <00:07.500><c>words</c>

3
01:00:08.500 --> 01:00:09.000

"""


def test_vtt_with_header_notes_styles_identifiers_settings_and_voices():
    result = read_transcript(VTT, "captions.vtt")
    _assert_contract(result.segments, None)
    assert result.segments[["start", "end", "text"]].values.tolist() == [
        [1.0, 4.5, "Hello & welcome to the meeting."], [5.25, 7.0, "Thanks, Alice!"], [7.0, 8.0, "karaoke words"]]


SRT = """\ufeff1
00:00:02,000 --> 00:00:03,500
<i>First line</i>
second line

3
00:00:00,500 --> 00:00:01,000
{\\an8}[SPEAKER_01]: Earlier cue

2
00:00:04,000 --> 00:00:05,000
<font color="#ff0000">Red</font> text


continued after a blank line

4
00:00:06,000 --> 00:00:07,000
<i></i>
"""


def test_srt_with_tags_multiline_cues_crlf_and_a_byte_order_mark():
    result = read_transcript(SRT.replace("\n", "\r\n"), "film.SRT", language="en")
    assert result.format == "srt" and result.language == "en"
    _assert_contract(result.segments, "en")
    assert result.segments[["start", "end", "text"]].values.tolist() == [
        [0.5, 1.0, "Earlier cue"], [2.0, 3.5, "First line second line"],
        [4.0, 5.0, "Red text continued after a blank line"]]


def test_text_with_several_sentences_and_labels():
    text = ("[SPEAKER_00]: Good morning. Is everyone here?\n \n"
            "SPEAKER_01: Yes! We are all here… Let's start with item 3.5 of the agenda.\n"
            '"Quoted sentence." Next one\n')
    result = read_transcript(text, "notes.txt")
    assert (result.timed, result.language) == (False, None)
    assert result.segments["text"].tolist() == ["Good morning.", "Is everyone here?", "Yes!", "We are all here…",
                                                "Let's start with item 3.5 of the agenda.", '"Quoted sentence."',
                                                "Next one"]


@pytest.mark.parametrize("name, text, fmt", [
    ("a.SRT", "anything", "srt"), ("b.Vtt", "", "vtt"), ("c.json", "", "json"), ("d.TXT", "WEBVTT", "txt"),
    ("upload", "\ufeff\nWEBVTT\n\n00:01.000 --> 00:02.000\nhi", "vtt"),
    ("upload", "1\n00:00:01,000 --> 00:00:02,000\nhi", "srt"),
    ("upload.dat", ' {"segments": []}', "json"),
    ("notes.md", "Just text --> with an arrow", "txt"),
])
def test_format_by_extension_else_sniffed(name, text, fmt):
    assert transcript_format(name, text) == fmt


def test_read_transcript_sniffs_and_refuses_unknown_formats():
    assert read_transcript(VTT, "upload").format == "vtt"
    with pytest.raises(ValueError, match="unknown transcript format 'docx'"):
        read_transcript("text", "t.docx", fmt="docx")


# --- plain text timed by a machine transcript --------------------------------------------------------

MACHINE = segments_frame([
    {"start": 0.0, "end": 2.0, "text": "Good morning everyone."},
    {"start": 2.5, "end": 5.0, "text": "Today we discuss the budget."},
    {"start": 5.5, "end": 8.0, "text": "And then the the schedule."},
    {"start": 9.0, "end": 10.0, "text": "Thanks for watching."},  # not in the supplied text
], "en")
# "Um," and "Bye." are inserted, "we" became "we'll", one "the" is not there, case and punctuation differ.
PLAIN = "Um, good morning, everyone! Today we'll discuss the Budget;\nand then the schedule. Bye."


def _placed(frame: pd.DataFrame) -> list[list]:
    return frame[["start", "end", "text"]].values.tolist()


def test_place_text_gives_each_word_the_segment_of_its_match():
    supplied = read_transcript(PLAIN, "plain.txt", language="en").segments
    placed = place_text(supplied, MACHINE, "en")
    _assert_contract(placed, "en")
    assert _placed(placed) == [[0.0, 2.0, "Um, good morning, everyone!"],
                               [2.5, 5.0, "Today we'll discuss the Budget;"],
                               [5.5, 8.0, "and then the schedule. Bye."]]


def test_place_text_cut_at_anchors_gives_the_same_placement(monkeypatch):
    supplied = read_transcript(PLAIN, "plain.txt", language="en").segments
    direct = _placed(place_text(supplied, MACHINE, "en"))
    monkeypatch.setattr(supplied_module, "DIRECT_MATCH_LIMIT", 0)
    assert _placed(place_text(supplied, MACHINE, "en")) == direct


def test_matching_cut_at_anchors_matches_nearly_as_much_as_difflib(monkeypatch):
    """A long text (many repeated words) with substitutions, deletions and insertions; per character too, where
    no single character is unique and anchors are runs of them. difflib only sees small pieces."""
    import difflib

    rng = random.Random(7)
    pieces = []

    class Spy(difflib.SequenceMatcher):
        def __init__(self, isjunk, a, b, autojunk):
            pieces.append(len(a) * len(b))
            super().__init__(isjunk, a, b, autojunk)

    for vocabulary, n in ((["the", "a", "and", "of", "to"] + [f"w{i}" for i in range(400)], 1500),
                          ([chr(0x3041 + i) for i in range(40)], 1500)):
        a = [vocabulary[min(int(rng.paretovariate(1.1)) - 1, len(vocabulary) - 1)] for _ in range(n)]
        b = []
        for word in a:
            r = rng.random()
            b.extend([] if r < 0.03 else [rng.choice(vocabulary)] if r < 0.1 else [word, "x"] if r < 0.12 else [word])
        direct = supplied_module._matched_pairs(a, b)
        monkeypatch.setattr(supplied_module, "DIRECT_MATCH_LIMIT", 10_000)
        monkeypatch.setattr(difflib, "SequenceMatcher", Spy)
        pieces.clear()
        anchored = sorted(supplied_module._matched_pairs(a, b))
        monkeypatch.undo()
        assert max(pieces) < len(a) * len(b) / 20
        assert all(a[i] == b[j] for i, j in anchored)
        assert all(i0 < i1 and j0 < j1 for (i0, j0), (i1, j1) in zip(anchored, anchored[1:]))
        assert len(anchored) >= 0.97 * len(direct)


def test_place_text_without_a_match_spans_the_machine_transcript():
    supplied = read_transcript("Completely different words.", "other.txt").segments
    assert _placed(place_text(supplied, MACHINE, "en")) == [[0.0, 10.0, "Completely different words."]]
    [[start, end, text]] = _placed(place_text(supplied, segments_frame([], "en"), "en"))
    assert math.isnan(start) and math.isnan(end) and text == "Completely different words."


def test_place_text_matches_per_character_without_spaces():
    machine = segments_frame([{"start": 0.0, "end": 2.0, "text": "今日は良い天気です。"},
                              {"start": 2.0, "end": 4.0, "text": "明日は雨が降るでしょう。"}], "ja")
    supplied = read_transcript("今日は いい天気ですね。明日は雨が降るでしょう", "ja.txt", language="ja").segments
    assert supplied["text"].tolist() == ["今日は いい天気ですね。", "明日は雨が降るでしょう"]
    placed = place_text(supplied, machine, "ja")
    _assert_contract(placed, "ja")
    assert _placed(placed) == [[0.0, 2.0, "今日はいい天気ですね。"], [2.0, 4.0, "明日は雨が降るでしょう"]]


# --- RTTM ---------------------------------------------------------------------------------------------


def test_rttm_of_pyannotes_sample():
    folder = Path(importlib.util.find_spec("pyannote.audio").submodule_search_locations[0])
    turns = read_rttm((folder / "sample" / "sample.rttm").read_text(), "sample.rttm")
    assert {c: str(t) for c, t in turns.dtypes.items()} == TURN_DTYPES
    assert len(turns) == 10 and set(turns["speaker"]) == {"speaker90", "speaker91"}
    assert turns.iloc[0].tolist() == [6.69, pytest.approx(7.12), "speaker90"]
    assert turns["start"].is_monotonic_increasing


def test_rttm_skips_comments_blank_lines_and_other_records():
    text = (";; diarization of meeting.wav\n"
            "SPKR-INFO meeting 1 <NA> <NA> <NA> unknown alice <NA> <NA>\n\n"
            "SPEAKER meeting 1 5.250 1.5 <NA> <NA> bob <NA> <NA>\n"
            "SPEAKER\tmeeting\t1\t0.000\t4.75\t<NA>\t<NA>\talice\t<NA>\t<NA>\n"
            "SPEAKER meeting 1 6.0 0 <NA> <NA> alice <NA>\n")
    turns = read_rttm(text, "meeting.rttm")
    expected = turns_frame([{"start": 0.0, "end": 4.75, "speaker": "alice"},
                            {"start": 5.25, "end": 6.75, "speaker": "bob"},
                            {"start": 6.0, "end": 6.0, "speaker": "alice"}])
    pd.testing.assert_frame_equal(turns, expected)


# --- bad files ------------------------------------------------------------------------------------------

SPEAKER_LINE = "SPEAKER {} 1 {} {} <NA> <NA> s1 <NA> <NA>"


@pytest.mark.parametrize("read, name, text, message", [
    (read_transcript, "notes.srt", "1\n00:00:01,000 --> 00:00:02,000\nA\n\n2\n00:00:02,000 --> 00:00:03,000\nB\n\n"
     "3\n00:00:05,000 --> 00:00:04,000\nC\n", "notes.srt: cue 3 ends before it starts (00:00:05,000 --> 00:00:04,000)"),
    (read_transcript, "bad.srt", "1\n00:00:0x,000 --> 00:00:02,000\nA\n",
     "bad.srt: cue 1: unparsable time '00:00:0x,000'"),
    (read_transcript, "cut.srt", "1\n00:00:01,000 -->\nA\n", "cut.srt: cue 1: unparsable time ''"),
    (read_transcript, "sixty.vtt", "WEBVTT\n\n00:61.000 --> 01:02.000\nA\n",
     "sixty.vtt: cue 1: unparsable time '00:61.000'"),
    (read_transcript, "neg.srt", "1\n-00:00:01,000 --> 00:00:02,000\nA\n",
     "neg.srt: cue 1: negative time '-00:00:01,000'"),
    (read_transcript, "joined.srt", "1\n00:00:01,000 --> 00:00:02,000\nA\n2\n00:00:02,000 --> 00:00:03,000\nB\n",
     "joined.srt: cue 1: expected an optional cue identifier, a 'start --> end' line and text (is a blank line "
     "between cues missing?)"),
    (read_transcript, "lead.srt", "Subtitles by X\n\n1\n00:00:01,000 --> 00:00:02,000\nA\n",
     "lead.srt: text before the first cue ('Subtitles by X')"),
    (read_transcript, "none.srt", "just words", "none.srt: no cues (no 'start --> end' lines)"),
    (read_transcript, "blank.srt", "1\n00:00:01,000 --> 00:00:02,000\n<i></i>\n", "blank.srt: no text"),
    (read_transcript, "empty.vtt", "\ufeff  \r\n\n", "empty.vtt: empty file"),
    (read_transcript, "t.json", '{"text": "hi"}', "t.json: not whisperX JSON: no segments list"),
    (read_transcript, "list.json", "[1, 2]", "list.json: not whisperX JSON: no segments list"),
    (read_transcript, "broken.json", '{"segments": [',
     "broken.json: not JSON (Expecting value: line 1 column 15 (char 14))"),
    (read_transcript, "lang.json", '{"segments": [], "language": 7}', "lang.json: language is not a string (7)"),
    (read_transcript, "empty.json", '{"segments": []}', "empty.json: no text"),
    (read_transcript, "neg.json", '{"segments": [{"start": -1.0, "end": 2.0, "text": "a"}]}',
     "neg.json: segment 1: negative start time (-1.0)"),
    (read_transcript, "order.json",
     '{"segments": [{"start": 0, "end": 1, "text": "a"}, {"start": 3.0, "end": 2.5, "text": "b"}]}',
     "order.json: segment 2 ends before it starts (3.0 > 2.5)"),
    (read_transcript, "notime.json", '{"segments": [{"start": 0, "text": "a"}]}',
     "notime.json: segment 1 has no end time"),
    (read_transcript, "str.json", '{"segments": [{"start": "0:01", "end": 2, "text": "a"}]}',
     "str.json: segment 1: start is not a number ('0:01')"),
    (read_transcript, "inf.json", '{"segments": [{"start": 0, "end": Infinity, "text": "a"}]}',
     "inf.json: segment 1: end is not a number (inf)"),
    (read_transcript, "notext.json", '{"segments": [{"start": 0, "end": 1}]}', "notext.json: segment 1 has no text"),
    (read_transcript, "item.json", '{"segments": ["hello"]}', "item.json: segment 1 is not an object"),
    (read_rttm, "x.rttm", ";; nothing\nSPKR-INFO f 1 <NA> <NA> <NA> unknown a <NA> <NA>\n", "x.rttm: no SPEAKER lines"),
    (read_rttm, "two.rttm", "\n".join(SPEAKER_LINE.format(f, 0, 1) for f in ("b", "a", "b")),
     "two.rttm: more than one file id (a, b); supply the diarization of one file"),
    (read_rttm, "many.rttm", "\n".join(SPEAKER_LINE.format(f"f{i}", 0, 1) for i in range(7)),
     "many.rttm: more than one file id (f0, f1, f2, f3, f4 and 2 more); supply the diarization of one file"),
    (read_rttm, "neg.rttm", SPEAKER_LINE.format("a", -0.5, 1), "neg.rttm: line 1: negative onset (-0.5)"),
    (read_rttm, "nan.rttm", SPEAKER_LINE.format("a", 0, "nan"), "nan.rttm: line 1: duration is not a number ('nan')"),
    (read_rttm, "bad.rttm", "\n" + SPEAKER_LINE.format("a", "zero", 1),
     "bad.rttm: line 2: onset is not a number ('zero')"),
    (read_rttm, "short.rttm", "SPEAKER a 1 0 1",
     "short.rttm: line 1: a SPEAKER line has at least 8 fields, this one 5"),
    (read_rttm, "empty.rttm", "", "empty.rttm: empty file"),
])
def test_bad_files_are_refused_naming_the_file_and_the_reason(read, name, text, message):
    with pytest.raises(SuppliedInputError, match=f"^{re.escape(message)}$") as caught:
        read(text, name)
    assert isinstance(caught.value, MediaError) and isinstance(caught.value, ValueError)
    assert caught.value.path == name


def test_size_limit_counts_bytes():
    big = "x" * int(7.2 * 2**20)
    message = "big.srt: too large (7.2 MB); supplied transcripts and diarizations are limited to 5 MB"
    for check in (lambda: check_size(big, "big.srt"), lambda: check_size(big.encode(), "big.srt"),
                  lambda: read_transcript(big, "big.srt")):
        with pytest.raises(SuppliedInputError, match=f"^{re.escape(message)}$"):
            check()
    check_size(b"x" * MAX_SUPPLIED_BYTES, "limit.txt")
    with pytest.raises(SuppliedInputError, match="too large"):
        check_size("é" * (MAX_SUPPLIED_BYTES // 2 + 1), "accents.txt")  # fewer characters than bytes


def test_times_must_start_within_the_audio():
    srt = "1\n00:00:00,000 --> 00:00:05,000\nA\n\n2\n00:00:09,000 --> 00:00:12,000\nB\n"
    segments = read_transcript(srt, "ok.srt").segments
    check_times(segments, 10.0, "ok.srt")  # the last cue may end after the sound does
    check_times(read_transcript("Text.", "t.txt").segments, 10.0, "t.txt")
    with pytest.raises(SuppliedInputError, match=re.escape("late.srt: 1 of its 2 segments start after the audio ends "
                                                           "(8.0 s), the first at 9.0 s: is it for another file?")):
        check_times(segments, 8.0, "late.srt")
    turns = turns_frame([{"start": 3.0, "end": 4.0, "speaker": "a"}, {"start": 5.0, "end": 6.0, "speaker": "b"}])
    with pytest.raises(SuppliedInputError, match=re.escape("2 of its 2 turns start after the audio ends (3.0 s)")):
        check_times(turns, 3.0, "ms.rttm")
