"""Speaker diarization on real audio with real models: the offline pipeline, its speaker count, its contract."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.diarize import (
    COLUMNS,
    OFFLINE_BACKEND,
    cached_pipeline,
    cluster_embeddings,
    load_diarizer,
    mel_spectrogram,
)
from whisperx_assets.speech.errors import ModelUnavailableError
from whisperx_assets.evaluation.quality import Recording, diarization_error_rate, pyannote_sample_rttm_turns
from whisperx_assets.evaluation.synthetic import synthesize_dialogue

slow = pytest.mark.slow

# Voices and texts not used by the default dialogue, so the count estimate is checked on fresh material.
THREE_SPEAKER_SCRIPT = [
    ("dave", "The train was late again this morning, so I missed the first meeting."),
    ("alice", "That happens a lot lately. Did anyone take notes?"),
    ("bob", "Maria did. She said the client wants a new offer by Thursday."),
    ("dave", "Thursday is very soon. We should split the work between us."),
    ("alice", "I can write the technical part if you handle the prices."),
    ("bob", "Fine. I will also check the delivery dates with the factory."),
    ("dave", "Good. Let us meet again tomorrow at ten to compare our drafts."),
    ("alice", "Ten is fine for me. I will book the small room."),
    ("bob", "Then I will bring the latest test results."),
]
MONOLOGUE_SCRIPT = [("bob", text) for text in (
    "This is a short report about the state of the garden in the early summer.",
    "The tomatoes are growing well, but the beans need more water than last year.",
    "I planted new flowers near the fence, and the birds seem to like them.",
    "Next week I will repair the old shed and paint the door green.",
    "If the weather stays dry, we can harvest the first vegetables in July.",
)]


def read(path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    assert rate == 16_000 and audio.ndim == 1
    return audio


@pytest.fixture(scope="module")
def diarizer():
    return load_diarizer(SpeechConfig(device="cpu", diarization_model="offline"))


@pytest.fixture(scope="module")
def three_speakers(tmp_path_factory) -> Recording:
    path = tmp_path_factory.mktemp("three") / "three.wav"
    return Recording(path, synthesize_dialogue(path, script=THREE_SPEAKER_SCRIPT, gaps=[0.5, 0.25]))


@pytest.fixture(scope="module")
def monologue(tmp_path_factory) -> Recording:
    path = tmp_path_factory.mktemp("monologue") / "monologue.wav"
    return Recording(path, synthesize_dialogue(path, script=MONOLOGUE_SCRIPT))


@pytest.fixture(scope="module")
def dialogue_turns(diarizer, dialogue) -> pd.DataFrame:
    return diarizer(read(dialogue.path))


# --- loading ------------------------------------------------------------------------------------------


def test_module_import_stays_light():
    code = "import sys, whisperx_assets.speech.diarize; print(sorted({'torch', 'pyannote.audio'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cached_pipeline_looks_only_at_the_local_cache(tmp_path):
    assert cached_pipeline("pyannote/speaker-diarization-community-1", cache_dir=tmp_path) is None
    assert cached_pipeline("not a hub id") is None


@slow
def test_offline_pipeline_without_token_or_cached_model(diarizer):
    assert diarizer.backend == OFFLINE_BACKEND
    assert diarizer.device == "cpu"
    if cached_pipeline(SpeechConfig().diarization_model) is not None:
        pytest.skip("the pretrained pipeline is in this machine's Hugging Face cache")
    assert load_diarizer(SpeechConfig(device="cpu", hf_token=None)).backend == OFFLINE_BACKEND


@slow
@pytest.mark.skipif(os.environ.get("HF_HUB_OFFLINE") != "1", reason="needs HF_HUB_OFFLINE=1 (set by conftest)")
def test_token_without_hub_access_raises_an_actionable_error():
    config = SpeechConfig(device="cpu", hf_token="hf_not_a_real_token",
                          diarization_model="whisperx-assets-tests/no-such-pipeline")
    with pytest.raises(ModelUnavailableError) as raised:
        load_diarizer(config)
    message = str(raised.value)
    for hint in ("HF_TOKEN", "licence", "huggingface.co/whisperx-assets-tests/no-such-pipeline", "HF_HOME",
                 "DIARIZATION_MODEL=offline"):
        assert hint in message


STUB_PIPELINE = """
from pyannote.audio import Pipeline
from pyannote.core import Annotation, Segment


class FixedTurns(Pipeline):
    def __init__(self, token=None, cache_dir=None):
        super().__init__()

    def apply(self, file, num_speakers=None, min_speakers=None, max_speakers=None):
        turns = Annotation(uri=file["uri"])
        turns[Segment(1.5, 2.0)] = "later"
        if num_speakers != 1:
            turns[Segment(0.0, 1.0)] = "first"
        return turns
"""


@slow
def test_local_pretrained_pipeline_folder(tmp_path, monkeypatch):
    """A pipeline folder (config.yaml naming the class) loads without the hub; counts reach the pipeline."""
    (tmp_path / "stub_diarization_pipeline.py").write_text(STUB_PIPELINE)
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "config.yaml").write_text("pipeline:\n  name: stub_diarization_pipeline.FixedTurns\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    diarizer = load_diarizer(SpeechConfig(device="cpu", diarization_model=str(tmp_path / "pipeline")))
    assert diarizer.backend == f"pyannote-pretrained:{tmp_path / 'pipeline'}"
    audio = np.random.default_rng(0).normal(0, 0.1, 3 * 16_000).astype(np.float32)
    turns = diarizer(audio)
    assert_turns_table(turns)
    assert turns.values.tolist() == [[0.0, 1.0, "SPEAKER_00"], [1.5, 2.0, "SPEAKER_01"]]
    assert diarizer(audio, num_speakers=1).values.tolist() == [[1.5, 2.0, "SPEAKER_00"]]


def test_cached_pipeline_finds_a_pre_placed_model(tmp_path):
    repo = tmp_path / "models--someone--some-pipeline"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123456789abcdef")
    (repo / "snapshots" / "0123456789abcdef").mkdir(parents=True)
    (repo / "snapshots" / "0123456789abcdef" / "config.yaml").write_text("pipeline: {}\n")
    assert cached_pipeline("someone/some-pipeline", cache_dir=tmp_path) == repo / "snapshots" / "0123456789abcdef"


@slow
def test_local_folder_without_a_pipeline_raises(tmp_path):
    with pytest.raises(ModelUnavailableError, match="DIARIZATION_MODEL"):
        load_diarizer(SpeechConfig(device="cpu", diarization_model=str(tmp_path)))


# --- quality, speaker count not given -------------------------------------------------------------------


@slow
def test_default_dialogue(dialogue, dialogue_turns):
    assert dialogue_turns.speaker.nunique() == 2
    assert diarization_error_rate(dialogue.turns, dialogue_turns) <= 0.10


@slow
def test_pyannote_sample(diarizer, sample):
    turns = diarizer(read(sample.path))
    assert turns.speaker.nunique() == 2
    assert diarization_error_rate(pyannote_sample_rttm_turns(), turns) <= 0.20


@slow
def test_three_speakers_are_counted(diarizer, three_speakers):
    turns = diarizer(read(three_speakers.path))
    assert turns.speaker.nunique() == 3
    assert diarization_error_rate(three_speakers.turns, turns) <= 0.15


@slow
def test_monologue_is_one_speaker(diarizer, monologue):
    turns = diarizer(read(monologue.path))
    assert turns.speaker.nunique() == 1
    assert diarization_error_rate(monologue.turns, turns) <= 0.05


# --- speaker count given --------------------------------------------------------------------------------


@slow
def test_num_speakers_is_honoured(diarizer, dialogue, sample):
    audio = read(dialogue.path)
    assert diarizer(audio, num_speakers=3).speaker.nunique() == 3
    assert diarizer(audio, num_speakers=1).speaker.nunique() == 1
    assert diarizer(audio, max_speakers=1).speaker.nunique() == 1
    assert diarizer(audio, min_speakers=3).speaker.nunique() >= 3
    turns = diarizer(read(sample.path), num_speakers=2)
    assert turns.speaker.nunique() == 2
    assert diarization_error_rate(pyannote_sample_rttm_turns(), turns) <= 0.20


@slow
def test_invalid_speaker_counts_are_refused(diarizer):
    audio = np.zeros(16_000, dtype=np.float32)
    with pytest.raises(ValueError):
        diarizer(audio, num_speakers=0)
    with pytest.raises(ValueError):
        diarizer(audio, min_speakers=3, max_speakers=2)
    with pytest.raises(ValueError):
        diarizer(np.zeros((2, 16_000), dtype=np.float32))


# --- contract -------------------------------------------------------------------------------------------


def assert_turns_table(turns: pd.DataFrame):
    assert tuple(turns.columns) == COLUMNS
    assert turns["start"].dtype == np.float64 and turns["end"].dtype == np.float64
    assert isinstance(turns["speaker"].dtype, pd.StringDtype)
    assert isinstance(turns.index, pd.RangeIndex)


@slow
@pytest.mark.parametrize("audio", [np.zeros(10 * 16_000, dtype=np.float32), np.zeros(0, dtype=np.float32),
                                   np.zeros((1, 16_000), dtype=np.float32)], ids=["10s", "empty", "2-D"])
def test_silence_gives_no_turns(diarizer, audio):
    turns = diarizer(audio)
    assert_turns_table(turns)
    assert turns.empty


@slow
def test_turns_table_contract(dialogue, dialogue_turns):
    turns = dialogue_turns
    assert_turns_table(turns)
    assert len(turns) > 0
    assert turns["start"].is_monotonic_increasing
    assert (turns["end"] > turns["start"]).all()
    duration = sf.info(str(dialogue.path)).duration
    assert turns["start"].min() >= 0 and turns["end"].max() <= duration + 0.1
    assert all(re.fullmatch(r"SPEAKER_\d{2}", name) for name in turns["speaker"])
    assert turns["speaker"].iloc[0] == "SPEAKER_00"  # numbered by first appearance


# --- building blocks without models ---------------------------------------------------------------------


def _synthetic_embeddings(num_speakers: int, seed: int = 0):
    """One centre per speaker, turns of 3 s, a window every 0.5 s.

    Windows of one turn share a turn-specific offset, as real windows share audio: the estimate must not
    mistake turns for speakers.
    """
    rng = np.random.default_rng(seed)
    dimension = 64
    centres = rng.normal(size=(num_speakers, dimension)) / np.sqrt(dimension)
    times = np.arange(0, 60, 0.5)
    turn = (times // 3).astype(int)
    speaker = turn % num_speakers
    offsets = rng.normal(scale=0.3 / np.sqrt(dimension), size=(turn.max() + 1, dimension))
    X = centres[speaker] + offsets[turn] + rng.normal(scale=0.1 / np.sqrt(dimension), size=(len(times), dimension))
    return X / np.linalg.norm(X, axis=1, keepdims=True), times, speaker


@pytest.mark.parametrize("num_speakers", [1, 2, 3, 5])
def test_cluster_embeddings_estimates_the_count(num_speakers):
    X, times, speaker = _synthetic_embeddings(num_speakers)
    labels = cluster_embeddings(X, times, window=5.0)
    assert len(set(labels)) == num_speakers
    # same partition up to renaming
    assert len(set(zip(labels, speaker))) == num_speakers


def test_cluster_embeddings_honours_bounds():
    X, times, _ = _synthetic_embeddings(3)
    assert len(set(cluster_embeddings(X, times, 5.0, num_speakers=2))) == 2
    assert len(set(cluster_embeddings(X, times, 5.0, max_speakers=2))) == 2
    assert len(set(cluster_embeddings(X, times, 5.0, min_speakers=4))) == 4


def test_mel_spectrogram_matches_resemblyzer(sample):
    from resemblyzer.audio import wav_to_mel_spectrogram

    audio = read(sample.path)[: 5 * 16_000]
    np.testing.assert_allclose(mel_spectrogram(audio, block_frames=123), wav_to_mel_spectrogram(audio),
                               rtol=1e-5, atol=1e-6)
