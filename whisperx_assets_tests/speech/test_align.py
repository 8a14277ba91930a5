"""Alignment backends on real audio: pocketsphinx (offline English), Whisper's own timings, and whisperX's
wav2vec2 loading and alignment code with a tiny randomly initialised CTC model."""

import json

import numpy as np
import pandas as pd
import pytest

from whisperx_assets.speech.align import Aligner, stretch_to_voice
from whisperx_assets.speech.errors import ModelUnavailableError
from whisperx_assets.speech.frames import WORD_DTYPES
from whisperx_assets.evaluation.quality import turn_boundary_errors


@pytest.fixture(scope="module")
def pocketsphinx_alignment(engine, speech_config, dialogue_transcript, dialogue_audio):
    return engine.align(dialogue_transcript.segments, dialogue_audio, "en", speech_config)


def test_auto_picks_pocketsphinx_for_english_offline(pocketsphinx_alignment):
    assert pocketsphinx_alignment.facts.backend == "pocketsphinx"


def test_turn_timing_error_from_words(dialogue, pocketsphinx_alignment):
    errors = turn_boundary_errors(dialogue.turns, pocketsphinx_alignment.words)
    print(f"pocketsphinx turn boundary MAE {errors.mean() * 1000:.0f} ms, worst {errors.max() * 1000:.0f} ms, "
          f"RTF {pocketsphinx_alignment.facts.real_time_factor:.3f}")
    assert errors.mean() <= 0.050 and errors.max() <= 0.150


def test_three_voices_with_pauses_before_turns(engine, speech_config, tmp_path):
    """The issue's meeting: three voices, 0.4-0.7 s pauses; a turn's first word used to start up to ~1 s early."""
    from whisperx_assets.evaluation.synthetic import THREE_SPEAKER_SCRIPT, synthesize_dialogue
    from whisperx_assets_tests.conftest import read_audio

    path = tmp_path / "three.wav"
    turns = synthesize_dialogue(path, THREE_SPEAKER_SCRIPT)
    audio = read_audio(path)
    transcript = engine.transcribe(audio)
    errors = turn_boundary_errors(turns, engine.align(transcript.segments, audio, "en", speech_config).words)
    assert errors.mean() <= 0.050 and errors.max() <= 0.150


def test_words_contract(pocketsphinx_alignment, dialogue_audio):
    words = pocketsphinx_alignment.words
    assert {c: str(t) for c, t in words.dtypes.items()} == WORD_DTYPES
    assert words[["start", "end"]].notna().all().all()
    assert (words["start"] <= words["end"]).all()
    assert words["start"].is_monotonic_increasing
    assert words["end"].max() <= len(dialogue_audio) / 16_000
    # Segments are split into sentences, as whisperX's aligner does.
    segments = pocketsphinx_alignment.segments
    assert len(segments) >= 12 and segments["text"].str.match(r"^\S.*[.?!]$").all()
    assert set(words["segment_id"]) <= set(segments["segment_id"])


def test_words_without_timing_are_interpolated(engine, speech_config, dialogue_audio):
    """'42' and 'Zorblax' are not in the pronouncing dictionary: they get times from their neighbours."""
    segments = pd.DataFrame({"segment_id": [0], "start": [0.4], "end": [4.1], "speaker": [None], "avg_logprob": [None],
                             "text": ["Good morning. Thank you 42 for joining Zorblax the planning meeting today."]})
    segments = segments.astype({"text": "string", "speaker": "string", "avg_logprob": "float64"})
    words = engine.align(segments, dialogue_audio, "en", speech_config).words
    assert words[["start", "end"]].notna().all().all()
    for token in ("42", "Zorblax"):
        row = words[words["word"] == token].iloc[0]
        assert np.isnan(row["score"])
        assert 0.4 <= row["start"] <= row["end"] <= 4.1
    ignored = engine.align(segments, dialogue_audio, "en", speech_config.replace(interpolate_method="ignore")).words
    assert ignored.loc[ignored["word"] == "42", "start"].isna().all()


def test_whisper_backend(engine, speech_config, dialogue, dialogue_transcript, dialogue_audio):
    result = engine.align(dialogue_transcript.segments, dialogue_audio, "en", speech_config.replace(align_backend="whisper"))
    assert result.facts.backend == "whisper"
    errors = turn_boundary_errors(dialogue.turns, result.words)
    print(f"whisper turn boundary MAE {errors.mean() * 1000:.0f} ms")
    assert errors.mean() <= 0.4
    assert result.words[["start", "end"]].notna().all().all()


def test_wav2vec2_unavailable_offline_is_actionable(speech_config):
    with pytest.raises(ModelUnavailableError, match="ALIGN_MODEL"):
        Aligner(speech_config.replace(align_backend="wav2vec2"), "en")


def test_configured_align_model_that_fails_falls_back(speech_config):
    aligner = Aligner(speech_config.replace(align_model="no-such/model"), "en")
    assert aligner.backend == "pocketsphinx"


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory):
    """A randomly initialised Wav2Vec2ForCTC with a character vocabulary, saved like a hub checkpoint."""
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    folder = tmp_path_factory.mktemp("tiny-wav2vec2")
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz'")}}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    processor = Wav2Vec2Processor(Wav2Vec2FeatureExtractor(sampling_rate=16_000), tokenizer)
    config = Wav2Vec2Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=4, pad_token_id=0)
    import torch

    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_wav2vec2_backend_runs_whisperx_alignment(engine, speech_config, dialogue_transcript, dialogue_audio,
                                                 tiny_wav2vec2, monkeypatch):
    import nltk

    def no_download(*args, **kwargs):
        raise AssertionError("nltk.download must not be called")

    monkeypatch.setattr(nltk, "download", no_download)
    config = speech_config.replace(align_model=str(tiny_wav2vec2))
    result = engine.align(dialogue_transcript.segments, dialogue_audio, "en", config)
    assert result.facts.backend == "wav2vec2" and result.facts.model == str(tiny_wav2vec2)
    words = result.words
    assert len(words) > 50
    timed = words.dropna(subset=["start", "end"])
    assert len(timed) >= 0.9 * len(words)
    duration = len(dialogue_audio) / 16_000
    assert ((timed["start"] >= 0) & (timed["end"] <= duration + 0.1) & (timed["start"] <= timed["end"])).all()


def test_word_spans_shrink_to_the_voice_inside_them():
    from whisperx_assets.speech.align import clip_to_voice, voiced_frames

    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    audio = np.concatenate([0.001 * rng.standard_normal(16_000), 0.3 * np.sin(2 * np.pi * 200 * t),
                            0.001 * rng.standard_normal(16_000)]).astype(np.float32)
    voiced = voiced_frames(audio)
    assert voiced[100:200].all() and not voiced[:100].any() and not voiced[200:].any()
    starts, ends = clip_to_voice(np.array([0.5, 1.2, 0.1, np.nan]), np.array([2.5, 1.4, 0.6, np.nan]), voiced)
    assert starts[0] == pytest.approx(1.0) and ends[0] == pytest.approx(2.0)  # the pauses around it removed
    assert (starts[1], ends[1]) == (1.2, 1.4)  # inside the voice: unchanged, never widened
    assert (starts[2], ends[2]) == (0.1, 0.6)  # no voice inside: left as it was
    assert np.isnan(starts[3]) and np.isnan(ends[3])
    # Wholly in a pause (an interpolated time): a sentence's last word goes back to the end of the voice before
    # it, a sentence's first word forward to the start of the voice after it; a word inside a sentence stays.
    starts, ends = clip_to_voice(np.array([2.2, 0.3, 0.3]), np.array([2.5, 0.6, 0.6]), voiced,
                                 [True, False, False])  # "done." | "Next word"
    assert (starts[0], ends[0]) == pytest.approx((1.7, 2.0))
    assert (starts[1], ends[1]) == pytest.approx((1.0, 1.3))
    assert (starts[2], ends[2]) == (0.3, 0.6)


def test_sentence_edges_stretch_to_the_voice_around_them():
    """pocketsphinx gave the first 0.3 s of a turn and the last 0.25 s of another to silence."""
    voiced = np.zeros(300, dtype=bool)
    voiced[50:120] = voiced[123:140] = True  # a 30 ms closure inside the voice at 1.20-1.23 s
    voiced[200:260] = True
    ends_sentence = [False, True, False, True]  # "Next week." "Fine then."
    starts, ends = np.array([0.8, 1.1, 2.0, 2.2]), np.array([1.1, 1.15, 2.2, 2.35])
    new_starts, new_ends = stretch_to_voice(starts, ends, voiced, ends_sentence, (0.3, 3.0))
    assert new_starts.tolist() == [0.5, 1.1, 2.0, 2.2]  # sentence starts: back to the voice's start
    assert new_ends.tolist() == [1.1, 1.4, 2.2, 2.6]  # sentence ends: on to its end, across the short closure
    # Never past the bounds or into the next sentence's first word.
    bounded_starts, bounded_ends = stretch_to_voice(starts, ends, voiced, ends_sentence, (0.7, 2.5))
    assert bounded_starts[0] == 0.7 and bounded_ends[-1] == 2.5
