"""Dagster resources: the speech engine with its models, and the media store.

Runs use the in-process executor, so one `WhisperXResource` serves every asset of a run: each model loads
once per run (on first use, never at import or in the sensor) and is released at teardown, which also
frees GPU memory. Decoded audio of the current partition is kept too, so stages do not decode twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.engine import SpeechEngine
from whisperx_assets.speech.media import MediaInfo
from whisperx_assets.store import MediaStore


class WhisperXResource(ConfigurableResource):
    """Speech models for a run. Unset fields take the environment (WHISPER_MODEL, DEVICE, COMPUTE_TYPE,
    BATCH_SIZE, HF_TOKEN, ... see the README), then the engine's defaults."""

    whisper_model: Optional[str] = None
    device: Optional[str] = None
    compute_type: Optional[str] = None
    batch_size: Optional[int] = None
    threads: Optional[int] = None
    align_backend: Optional[str] = None
    align_model: Optional[str] = None
    diarization_model: Optional[str] = None
    hf_token: Optional[str] = None

    _engine: Optional[SpeechEngine] = PrivateAttr(default=None)
    _audio: dict = PrivateAttr(default_factory=dict)

    def speech_config(self, **overrides) -> SpeechConfig:
        fields = {k: v for k, v in self.model_dump().items() if v is not None}
        return SpeechConfig.from_env(**{**fields, **{k: v for k, v in overrides.items() if v is not None}})

    @property
    def engine(self) -> SpeechEngine:
        if self._engine is None:
            self._engine = SpeechEngine(self.speech_config())
        return self._engine

    def load_audio(self, path: Path) -> tuple[MediaInfo, np.ndarray]:
        key = (str(path), path.stat().st_mtime_ns)
        if key not in self._audio:
            self._audio.clear()  # keep one file's samples: a run's stages work on one partition at a time
            self._audio[key] = self.engine.load(path)
        return self._audio[key]

    def free_memory(self) -> None:
        """After a CUDA out-of-memory error: drop models and cached audio, empty the GPU cache."""
        self._audio.clear()
        if self._engine is not None:
            self._engine.release()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        self.free_memory()
        self._engine = None


class MediaStoreResource(ConfigurableResource):
    """Where inputs and outputs live (STORAGE_DIR, default media/storage)."""

    root: str

    @property
    def store(self) -> MediaStore:
        return MediaStore(Path(self.root))
