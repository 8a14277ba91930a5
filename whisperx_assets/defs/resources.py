"""Dagster resources: the speech engine with its models, and the media store.

Runs use the in-process executor, so one `WhisperXResource` serves every asset of a run: each model loads
once per run (on first use, never at import or in the sensor) and is released at teardown, which also
frees GPU memory. Decoded audio is kept for the run (up to AUDIO_CACHE_SECONDS of it, least recently used
dropped first), so the stages of a batch decode each file once.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Optional

import numpy as np
from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.engine import SpeechEngine
from whisperx_assets.speech.media import SAMPLE_RATE, MediaInfo
from whisperx_assets.inputs.store import MediaStore


class WhisperXResource(ConfigurableResource):
    """Speech models and options for a run. Every field is a run-config override; unset fields take the
    environment (WHISPER_MODEL, DEVICE, COMPUTE_TYPE, BATCH_SIZE, DEFAULT_LANG, ... see the README), then the
    engine's defaults. Values are checked by `SpeechConfig`, which names the allowed range."""

    whisper_model: Optional[str] = None
    device: Optional[str] = None
    compute_type: Optional[str] = None
    batch_size: Optional[int] = None
    threads: Optional[int] = None
    language: Optional[str] = None
    task: Optional[str] = None
    beam_size: Optional[int] = None
    best_of: Optional[int] = None
    patience: Optional[float] = None
    length_penalty: Optional[float] = None
    temperatures: Optional[list[float]] = None
    compression_ratio_threshold: Optional[float] = None
    log_prob_threshold: Optional[float] = None
    no_speech_threshold: Optional[float] = None
    initial_prompt: Optional[str] = None
    hotwords: Optional[str] = None
    suppress_numerals: Optional[bool] = None
    chunk_size: Optional[int] = None
    vad_onset: Optional[float] = None
    vad_offset: Optional[float] = None
    align_backend: Optional[str] = None
    align_model: Optional[str] = None
    interpolate_method: Optional[str] = None
    diarization_model: Optional[str] = None
    num_speakers: Optional[int] = None
    min_speakers: Optional[int] = None
    max_speakers: Optional[int] = None

    _engine: Optional[SpeechEngine] = PrivateAttr(default=None)
    _audio: OrderedDict = PrivateAttr(default_factory=OrderedDict)

    def speech_config(self) -> SpeechConfig:
        return SpeechConfig.from_env(**{k: v for k, v in self.model_dump().items() if v is not None})

    @property
    def engine(self) -> SpeechEngine:
        if self._engine is None:
            self._engine = SpeechEngine(self.speech_config())
        return self._engine

    def load_audio(self, path: Path) -> tuple[MediaInfo, np.ndarray]:
        key = (str(path), path.stat().st_mtime_ns)
        if key in self._audio:
            self._audio.move_to_end(key)
            return self._audio[key]
        loaded = self._audio[key] = self.engine.load(path)
        budget = PipelineSettings.from_env().audio_cache_seconds * SAMPLE_RATE
        while len(self._audio) > 1 and sum(len(samples) for _, samples in self._audio.values()) > budget:
            self._audio.popitem(last=False)
        return loaded

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
