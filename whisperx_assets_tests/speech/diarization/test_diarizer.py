"""The package's entry points: which backend `load_diarizer` picks, and the `Diarizer` contract."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.diarization import OFFLINE_BACKEND, load_diarizer
from whisperx_assets.speech.diarization.pretrained import cached_pipeline
from whisperx_assets.speech.frames import TURN_DTYPES

slow = pytest.mark.slow


def assert_turns_table(turns: pd.DataFrame):
    assert tuple(turns.columns) == tuple(TURN_DTYPES)
    assert turns["start"].dtype == np.float64 and turns["end"].dtype == np.float64
    assert isinstance(turns["speaker"].dtype, pd.StringDtype)
    assert isinstance(turns.index, pd.RangeIndex)


def test_package_import_stays_light():
    code = ("import sys, whisperx_assets.speech.diarization; "
            "print(sorted({'torch', 'pyannote.audio'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@slow
def test_offline_pipeline_without_token_or_cached_model(diarizer):
    assert diarizer.backend == OFFLINE_BACKEND
    assert diarizer.device == "cpu"
    if cached_pipeline(SpeechConfig().diarization_model) is not None:
        pytest.skip("the pretrained pipeline is in this machine's Hugging Face cache")
    assert load_diarizer(SpeechConfig(device="cpu", hf_token=None)).backend == OFFLINE_BACKEND


@slow
def test_invalid_speaker_counts_are_refused(diarizer):
    audio = np.zeros(16_000, dtype=np.float32)
    with pytest.raises(ValueError):
        diarizer(audio, num_speakers=0)
    with pytest.raises(ValueError):
        diarizer(audio, min_speakers=3, max_speakers=2)
    with pytest.raises(ValueError):
        diarizer(np.zeros((2, 16_000), dtype=np.float32))


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
