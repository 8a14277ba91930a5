"""The whole engine on real media: every stage, the run facts, the one-shot CLI, bad input."""

import subprocess

import pytest

from whisperx_assets.speech import MediaError
from whisperx_assets.speech.frames import FACT_DTYPES
from whisperx_assets.evaluation.quality import diarization_error_rate, word_error_rate


@pytest.fixture(scope="module")
def dialogue_mp3(dialogue, tmp_path_factory):
    """The dialogue as an mp3 with a space in its name: the engine must decode it, not just wav."""
    path = tmp_path_factory.mktemp("engine") / "planning meeting.mp3"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(dialogue.path), "-b:a", "64k", str(path)],
                   check=True)
    return path


@pytest.fixture(scope="module")
def processed(engine, dialogue_mp3):
    return engine.process(dialogue_mp3)


def test_process_all_stages(processed, dialogue):
    assert processed.media.audio_codec == "mp3"
    words = processed.combined.words
    assert word_error_rate(dialogue.text, " ".join(words["word"])) <= 0.10
    der = diarization_error_rate(dialogue.turns, processed.diarization.turns)
    assert der <= 0.10
    # Speaker labels of words agree with the diarization's dominant labels per reference turn.
    assert words["speaker"].notna().mean() >= 0.95
    assert processed.combined.segments["speaker"].nunique() == 2


def test_facts_per_stage(processed):
    facts = processed.facts
    assert {c: str(t) for c, t in facts.dtypes.items()} == FACT_DTYPES
    assert facts["stage"].tolist() == ["transcript", "alignment", "diarization", "combined"]
    assert (facts["audio_seconds"] > 30).all() and (facts["wall_seconds"] > 0).all()
    row = facts.set_index("stage").loc["transcript"]
    assert row["language"] == "en" and row["language_probability"] > 0.5 and row["model"] == "base"
    assert facts.set_index("stage").loc["diarization", "speakers"] == 2
    for stage, rtf in zip(facts["stage"], facts["real_time_factor"]):
        print(f"{stage}: RTF {rtf:.3f}")


def test_bad_input_raises_media_error(engine, tmp_path):
    bad = tmp_path / "notes.mp3"
    bad.write_text("not audio at all")
    with pytest.raises(MediaError) as info:
        engine.process(bad)
    assert str(bad) in str(info.value)


def test_without_diarization(engine, speech_config, dialogue):
    result = engine.process(dialogue.path, speech_config.replace(diarize=False))
    assert result.diarization is None and result.combined is None
    assert list(result.facts["stage"]) == ["transcript", "alignment"]
