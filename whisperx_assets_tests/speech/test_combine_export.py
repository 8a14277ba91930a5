"""Speaker assignment (whisperx.assign_word_speakers) and the exports through whisperX's writers."""

import json

import pandas as pd
import pytest

from whisperx_assets.speech.combine import assign_speakers
from whisperx_assets.speech.export import EXPORT_FORMATS, export
from whisperx_assets.speech.frames import SEGMENT_DTYPES, WORD_DTYPES, turns_frame


@pytest.fixture(scope="module")
def combined(engine, dialogue, dialogue_transcript, dialogue_audio):
    alignment = engine.align(dialogue_transcript.segments, dialogue_audio, "en")
    turns = turns_frame([{"start": t.start, "end": t.end, "speaker": t.speaker} for t in dialogue.turns])
    return assign_speakers(alignment.segments, alignment.words, turns, alignment.facts.audio_seconds)


def test_every_word_gets_the_speaker_of_its_turn(dialogue, combined):
    words = combined.words
    assert {c: str(t) for c, t in words.dtypes.items()} == WORD_DTYPES
    assert words["speaker"].notna().all()
    expected = [next((t.speaker for t in dialogue.turns if t.start - 0.3 <= (w.start + w.end) / 2 <= t.end + 0.3), None)
                for w in words.itertuples()]
    agreement = (words["speaker"] == pd.Series(expected, dtype="string")).mean()
    assert agreement >= 0.95


def test_segments_get_speakers(combined):
    segments = combined.segments
    assert {c: str(t) for c, t in segments.dtypes.items()} == SEGMENT_DTYPES
    assert set(segments["speaker"]) == {"alice", "bob"}
    assert combined.facts.speakers == 2 and combined.facts.stage == "combined"


def test_no_turns_leaves_speakers_empty(combined):
    result = assign_speakers(combined.segments.assign(speaker=pd.NA).astype({"speaker": "string"}),
                             combined.words.assign(speaker=pd.NA).astype({"speaker": "string"}),
                             turns_frame([]), 10.0)
    assert result.words["speaker"].isna().all()


def test_exports_use_whisperx_writers(tmp_path, combined):
    written = export(combined.segments, combined.words, tmp_path, "meeting", language="en")
    assert set(written) == set(EXPORT_FORMATS)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"meeting.{f}" for f in EXPORT_FORMATS)
    srt = written["srt"].read_text()
    assert srt.startswith("1\n00:00:00,") and " --> " in srt and "[alice]: Good morning" in srt
    vtt = written["vtt"].read_text()
    assert vtt.startswith("WEBVTT")
    txt = written["txt"].read_text().splitlines()
    assert txt[0].startswith("[alice]: Good morning")
    tsv = written["tsv"].read_text().splitlines()
    assert tsv[0] == "start\tend\ttext" and len(tsv) == len(combined.segments) + 1
    data = json.loads(written["json"].read_text())
    assert data["language"] == "en" and data["segments"][0]["words"][0]["speaker"] == "alice"
    aud = written["aud"].read_text().splitlines()
    assert aud[0].split("\t")[2].startswith("[[alice]]")


def test_export_rejects_unsafe_stems_and_formats(tmp_path, combined):
    with pytest.raises(ValueError, match="unsafe"):
        export(combined.segments, combined.words, tmp_path, "../escape")
    with pytest.raises(ValueError, match="unknown export formats"):
        export(combined.segments, combined.words, tmp_path, "x", formats=("docx",))
    assert list(tmp_path.iterdir()) == []
