"""The offline diarizer and its turns of the default dialogue, loaded and computed once for these modules."""

from __future__ import annotations

import pandas as pd
import pytest

from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.diarization import Diarizer, load_diarizer


@pytest.fixture(scope="package")
def diarizer() -> Diarizer:
    return load_diarizer(SpeechConfig(device="cpu", diarization_model="offline"))


@pytest.fixture(scope="package")
def dialogue_turns(diarizer, dialogue_audio) -> pd.DataFrame:
    return diarizer(dialogue_audio)
