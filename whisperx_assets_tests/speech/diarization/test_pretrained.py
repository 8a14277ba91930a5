"""pyannote's pretrained pipeline: finding it in the cache, loading a local folder, errors that say what to do."""

from __future__ import annotations

import os

import numpy as np
import pytest

from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.diarization import load_diarizer
from whisperx_assets.speech.diarization.pretrained import cached_pipeline
from whisperx_assets.speech.errors import ModelUnavailableError
from whisperx_assets_tests.speech.diarization.test_diarizer import assert_turns_table
from whisperx_assets_tests.speech.test_resolve import pre_place

slow = pytest.mark.slow

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


def test_cached_pipeline_looks_only_at_the_local_cache(tmp_path):
    assert cached_pipeline("pyannote/speaker-diarization-community-1", cache_dir=tmp_path) is None
    assert cached_pipeline("not a hub id") is None


def test_cached_pipeline_finds_a_pre_placed_model(tmp_path):
    snapshot = pre_place(tmp_path, "someone/some-pipeline", "config.yaml")
    assert cached_pipeline("someone/some-pipeline", cache_dir=tmp_path) == snapshot


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


@slow
def test_local_folder_without_a_pipeline_raises(tmp_path):
    with pytest.raises(ModelUnavailableError, match="DIARIZATION_MODEL"):
        load_diarizer(SpeechConfig(device="cpu", diarization_model=str(tmp_path)))
