"""Shared fixtures: real recordings with exact references (generated dialogues, pyannote's sample)."""

from __future__ import annotations

import os

# Before anything imports pyannote or Hugging Face: no telemetry, no hub access in tests.
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

from whisperx_assets.speech.quality import Recording, pyannote_sample
from whisperx_assets.speech.synthetic import synthesize_dialogue


@pytest.fixture(scope="session")
def dialogue(tmp_path_factory) -> Recording:
    """The default two-voice espeak-ng dialogue (~35 s, 8 turns)."""
    path = tmp_path_factory.mktemp("dialogue") / "dialogue.wav"
    return Recording(path, synthesize_dialogue(path))


@pytest.fixture(scope="session")
def sample() -> Recording:
    """pyannote.audio's bundled telephone sample (30 s, two real speakers, STM reference)."""
    return pyannote_sample()
