"""Transcription with the real default model (Whisper base, offline package) on real audio."""

import numpy as np
import pandas as pd
import pytest

from whisperx_assets.evaluation.quality import Recording, turn_boundary_errors, word_error_rate
from whisperx_assets.evaluation.synthetic import MONOLOGUE_TEXTS, synthesize_dialogue
from whisperx_assets.speech.frames import SEGMENT_DTYPES
from whisperx_assets.speech.transcribe import runs_of, snap_to_pauses, uncovered
from whisperx_assets_tests.conftest import read_audio


def transcript_text(result):
    return " ".join(result.segments["text"])


def test_dialogue_wer(dialogue, dialogue_transcript):
    wer = word_error_rate(dialogue.text, transcript_text(dialogue_transcript))
    print(f"dialogue WER {wer:.3f}, RTF {dialogue_transcript.facts.real_time_factor:.3f}")
    assert wer <= 0.10


def test_sample_wer(sample, sample_transcript):
    wer = word_error_rate(sample.text, transcript_text(sample_transcript))
    print(f"pyannote sample WER {wer:.3f}, RTF {sample_transcript.facts.real_time_factor:.3f}")
    assert wer <= 0.25


def test_language_detected_with_probability(dialogue_transcript):
    assert dialogue_transcript.language == "en"
    assert dialogue_transcript.language_probability > 0.5
    facts = dialogue_transcript.facts
    assert facts.language == "en" and facts.device == "cpu" and facts.compute_type == "int8"
    assert facts.backend.startswith("faster-whisper-batched:package:") and facts.audio_seconds > 30


def test_segments_contract(dialogue_transcript, dialogue):
    segments = dialogue_transcript.segments
    assert {c: str(t) for c, t in segments.dtypes.items()} == SEGMENT_DTYPES
    assert segments["segment_id"].tolist() == list(range(len(segments)))
    assert (segments["start"] < segments["end"]).all()
    assert segments["start"].is_monotonic_increasing
    assert segments["end"].max() <= dialogue.turns[-1].end + 0.5


def test_digital_silence_gives_empty_transcript(engine):
    result = engine.transcribe(np.zeros(16_000 * 5, dtype=np.float32))
    assert len(result.segments) == 0
    assert list(result.segments.columns) == list(SEGMENT_DTYPES)


def test_options_change_without_reloading(engine, speech_config, dialogue_audio):
    transcriber = engine.transcriber()
    clip = dialogue_audio[: 16_000 * 9]
    result = engine.transcribe(clip, speech_config.replace(language="en", beam_size=1, best_of=1,
                                                           initial_prompt="Planning meeting.", vad_onset=0.45))
    assert engine.transcriber() is transcriber  # same loaded model
    assert result.language == "en" and result.language_probability is None  # given, not detected
    assert "morning" in transcript_text(result).lower()


def test_translate_task_runs(engine, speech_config, dialogue_audio):
    result = engine.transcribe(dialogue_audio[: 16_000 * 5], speech_config.replace(task="translate", language="en"))
    assert "morning" in transcript_text(result).lower()


@pytest.mark.parametrize("model", ["tiny.en"])
def test_other_offline_model(tmp_path, dialogue, dialogue_audio, model, speech_config):
    from whisperx_assets.speech.transcribe import Transcriber

    config = speech_config.replace(whisper_model=model)
    result = Transcriber(config)(dialogue_audio, config)
    assert result.language == "en"
    assert word_error_rate(dialogue.text, transcript_text(result)) <= 0.15


def test_uncovered_regions_and_their_runs():
    regions = [(0.5, 1.2), (1.5, 4.0), (4.7, 5.8), (6.1, 8.5), (9.0, 9.3)]
    segments = [{"start": 4.5, "end": 8.6}]
    missed = uncovered(regions, segments)
    assert missed == [(0.5, 1.2), (1.5, 4.0), (9.0, 9.3)]
    assert runs_of(missed, regions) == [(0.5, 4.0), (9.0, 9.3)]
    # A segment whose timestamps end just before a region does not cover it (the region is mostly outside).
    assert uncovered([(26.39, 29.65)], [{"start": 21.85, "end": 26.39}]) == [(26.39, 29.65)]
    # Timestamps a little off still cover a short region at a segment's edge.
    assert uncovered([(9.0, 9.3)], [{"start": 9.15, "end": 11.0}]) == []


def test_boundaries_move_into_the_nearest_pause():
    segments = [{"start": 0.5, "end": 4.5}, {"start": 4.5, "end": 9.5}, {"start": 9.5, "end": 12.0}]
    regions = [(0.5, 4.0), (4.7, 9.6), (10.4, 12.0)]  # pauses 4.0-4.7 and 9.6-10.4
    snap_to_pauses(segments, regions)
    assert segments[0]["end"] == pytest.approx(4.2) and segments[1]["start"] == pytest.approx(4.5)
    assert segments[1]["end"] == pytest.approx(9.8) and segments[2]["start"] == pytest.approx(10.2)
    far = [{"start": 0.0, "end": 3.0}, {"start": 3.0, "end": 9.0}]
    snap_to_pauses(far, [(0.0, 5.0), (6.5, 9.0)])  # the only pause is 2 s away: left alone
    assert far[0]["end"] == 3.0 and far[1]["start"] == 3.0


def test_speech_the_batched_pass_drops_is_decoded_again(engine, tmp_path):
    """The batched pass leaves out the last sentence of this monologue (its chunk ends with it); decoding that
    region on its own restores it. Without the second pass the WER is 22 % and the last turn has no words."""
    path = tmp_path / "dave.wav"
    recording = Recording(path, synthesize_dialogue(path, [("dave", t) for t in MONOLOGUE_TEXTS]))
    result = engine.transcribe(read_audio(path))
    last = recording.turns[-1]
    assert any(start <= last.start + 0.1 and end >= last.end - 0.1 for start, end in result.coverage.recovered)
    assert result.coverage.missing == []
    assert word_error_rate(recording.text, transcript_text(result)) <= 0.05
    words = pd.DataFrame({"start": result.segments["start"], "end": result.segments["end"]})
    assert turn_boundary_errors(recording.turns, words).max() < last.end - last.start  # no turn wholly missed
