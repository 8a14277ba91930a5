"""The offline pipeline on real audio with real models: its speaker count, given or estimated, and its quality."""

from __future__ import annotations

import numpy as np
import pytest

from whisperx_assets.evaluation.quality import (Recording, diarization_error_rate, one_speaker_of_sample,
                                                pyannote_sample_rttm_turns)
from whisperx_assets.evaluation.synthetic import (MONOLOGUE_SCRIPT, MONOLOGUE_TEXTS, THREE_SPEAKER_SCRIPT,
                                                  foreign_monologue, synthesize_dialogue)
from whisperx_assets.speech.diarization.offline import mel_spectrogram
from whisperx_assets_tests.conftest import read_audio

slow = pytest.mark.slow

@pytest.fixture(scope="module")
def sample_rttm(sample) -> Recording:
    """pyannote's sample with its speaker-turn reference (sample.rttm), not the sentence one (sample.stm)."""
    return Recording(sample.path, pyannote_sample_rttm_turns())


@pytest.fixture(scope="module")
def three_speakers(tmp_path_factory) -> Recording:
    path = tmp_path_factory.mktemp("three") / "three.wav"
    return Recording(path, synthesize_dialogue(path, script=THREE_SPEAKER_SCRIPT, gaps=[0.5, 0.25]))


@pytest.fixture(scope="module")
def monologue(tmp_path_factory) -> Recording:
    path = tmp_path_factory.mktemp("monologue") / "monologue.wav"
    return Recording(path, synthesize_dialogue(path, script=MONOLOGUE_SCRIPT))


# --- speaker count not given ----------------------------------------------------------------------------


@slow
@pytest.mark.parametrize("language", ["en-dave", "de", "es", "fr"])
def test_one_generated_voice_is_one_speaker(diarizer, tmp_path, language):
    """Monologues in other voices and languages than the fixture's (dave in English, and each language's
    second voice reading its dialogue): one speaker, nothing missed."""
    path = tmp_path / f"{language}.wav"
    script = [("dave", t) for t in MONOLOGUE_TEXTS] if language == "en-dave" else foreign_monologue(language)
    recording = Recording(path, synthesize_dialogue(path, script=script))
    turns = diarizer(read_audio(path))
    assert turns.speaker.nunique() == 1
    assert diarization_error_rate(recording.turns, turns) <= 0.05


@slow
def test_default_dialogue(dialogue, dialogue_turns):
    assert dialogue_turns.speaker.nunique() == 2
    assert diarization_error_rate(dialogue.turns, dialogue_turns) <= 0.10


@slow
@pytest.mark.parametrize("recording, speakers, max_error", [
    ("sample_rttm", 2, 0.20), ("three_speakers", 3, 0.15), ("monologue", 1, 0.05)],
    ids=["pyannote-sample", "three-speakers", "monologue"])
def test_speakers_are_counted(diarizer, request, recording, speakers, max_error):
    recording = request.getfixturevalue(recording)
    turns = diarizer(read_audio(recording.path))
    assert turns.speaker.nunique() == speakers
    assert diarization_error_rate(recording.turns, turns) <= max_error


@slow
@pytest.mark.parametrize("speaker", ["speaker90", "speaker91"])
def test_one_real_voice_is_not_split_into_many(diarizer, tmp_path, speaker):
    """Real telephone speech of one speaker (pyannote's sample cut to one speaker's turns without the other's
    overlapping speech, >= 20 s): the eigengap alone finds 4 speakers in each; merging clusters with
    near-identical centroids gives 1."""
    recording = one_speaker_of_sample(tmp_path / f"{speaker}.wav", speaker)
    turns = diarizer(read_audio(recording.path))
    assert turns.speaker.nunique() == 1
    assert diarization_error_rate(recording.turns, turns) <= 0.05


# --- speaker count given --------------------------------------------------------------------------------


@slow
def test_num_speakers_is_honoured(diarizer, dialogue_audio, sample_audio, sample_rttm):
    assert diarizer(dialogue_audio, num_speakers=3).speaker.nunique() == 3
    assert diarizer(dialogue_audio, num_speakers=1).speaker.nunique() == 1
    assert diarizer(dialogue_audio, max_speakers=1).speaker.nunique() == 1
    assert diarizer(dialogue_audio, min_speakers=3).speaker.nunique() >= 3
    turns = diarizer(sample_audio, num_speakers=2)
    assert turns.speaker.nunique() == 2
    assert diarization_error_rate(sample_rttm.turns, turns) <= 0.20


# --- features -------------------------------------------------------------------------------------------


def test_mel_spectrogram_matches_resemblyzer(sample_audio):
    from resemblyzer.audio import wav_to_mel_spectrogram

    audio = sample_audio[: 5 * 16_000]
    np.testing.assert_allclose(mel_spectrogram(audio, block_frames=123), wav_to_mel_spectrogram(audio),
                               rtol=1e-5, atol=1e-6)
