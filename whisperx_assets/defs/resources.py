"""Dagster resources: the speech engine with its models, and the media store.

Runs use the in-process executor, so one `WhisperXResource` serves every asset of a run: each model loads
once per run (on first use, never at import or in the sensor) and is released at teardown, which also
frees GPU memory. Decoded audio is kept for the run (up to AUDIO_CACHE_SECONDS of it, least recently used
dropped first), so the stages of a batch decode each file once.
"""

from __future__ import annotations

from collections import OrderedDict
from types import UnionType
from typing import Annotated, Literal, Optional, Union, get_args, get_origin

import numpy as np
from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr, create_model
from upath import UPath

from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.speech.config import SpeechConfig, per_run_fields
from whisperx_assets.speech.engine import SpeechEngine
from whisperx_assets.speech.media import SAMPLE_RATE, MediaInfo
from whisperx_assets.inputs.store import MediaStore, local_file


def config_type(annotation):
    """The Dagster config type for a `SpeechConfig` field's: choices as str and paths as str (`SpeechConfig`
    checks them), tuples as lists."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return config_type(args[0])
    if origin is Literal:
        return type(args[0])
    if origin in (Union, UnionType):
        return config_type(next(a for a in args if a is not type(None)))
    if origin is tuple:
        return list[args[0]]
    return annotation


class SpeechEngineResource(ConfigurableResource):
    _engine: Optional[SpeechEngine] = PrivateAttr(default=None)
    _audio: OrderedDict = PrivateAttr(default_factory=OrderedDict)

    def speech_config(self) -> SpeechConfig:
        return SpeechConfig(**{k: v for k, v in self.model_dump().items() if v is not None})

    @property
    def engine(self) -> SpeechEngine:
        if self._engine is None:
            self._engine = SpeechEngine(self.speech_config())
        return self._engine

    def load_audio(self, path: UPath) -> tuple[MediaInfo, np.ndarray]:
        """A stored input decoded (once per run while it stays in the cache; stored inputs never change)."""
        key = str(path)
        if key in self._audio:
            self._audio.move_to_end(key)
            return self._audio[key]
        with local_file(path) as local:
            loaded = self._audio[key] = self.engine.load(local)
        budget = PipelineSettings().audio_cache_seconds * SAMPLE_RATE
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


# Speech models and options for a run: every `SpeechConfig` field marked per-run is a run-config override;
# unset fields take the environment, then the engine's defaults.
WhisperXResource = create_model(
    "WhisperXResource", __base__=SpeechEngineResource, __module__=__name__,
    **{name: (Optional[config_type(info.annotation)], Field(None, description=info.description))
       for name, info in per_run_fields().items()})


class MediaStoreResource(ConfigurableResource):
    """Where inputs and outputs live (STORAGE_URL, default media/storage)."""

    root: str

    @property
    def store(self) -> MediaStore:
        return MediaStore(self.root)
