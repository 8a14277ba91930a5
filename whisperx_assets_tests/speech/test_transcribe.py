"""Transcription with the real default model (Whisper base, offline package) on real audio."""

import numpy as np
import pytest

from whisperx_assets.speech.frames import SEGMENT_DTYPES
from whisperx_assets.evaluation.quality import word_error_rate


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
    assert facts.backend.startswith("whisperx-batched:package:") and facts.audio_seconds > 30


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
    assert transcriber.pipeline.options.beam_size == 1


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
