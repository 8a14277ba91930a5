"""Speaker diarization: who spoke when, as the turns table of `speech.frames` (start, end, speaker).

`resolve_diarization` picks the backend: pyannote's pretrained pipeline (`pretrained`) when a token, a cached
copy or a local folder makes it usable, else the `offline` pipeline, which needs no hub; `load_diarizer` loads
it. Importing this package is cheap: torch, pyannote and resemblyzer load in `load_diarizer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.diarization import offline, pretrained
from whisperx_assets.speech.errors import ModelUnavailableError
from whisperx_assets.speech.frames import turns_frame
from whisperx_assets.speech.models import resolve_device

OFFLINE_BACKEND = "offline:whisperx-segmentation+resemblyzer"
PRETRAINED_PREFIX = "pyannote-pretrained:"

__all__ = ["OFFLINE_BACKEND", "PRETRAINED_PREFIX", "DiarizationChoice", "Diarizer", "load_diarizer",
           "resolve_diarization", "torch_device"]


@dataclass
class Diarizer:
    """Callable diarizer; `backend` says which pipeline runs, `device` where."""

    backend: str
    device: str
    _run: Callable[[np.ndarray, int | None, int | None, int | None], object] = field(repr=False)  # -> Annotation
    config: SpeechConfig | None = field(default=None, repr=False)

    def __call__(self, audio: np.ndarray, num_speakers: int | None = None, min_speakers: int | None = None,
                 max_speakers: int | None = None) -> pd.DataFrame:
        """Diarize 16 kHz mono float32 `audio`; returns columns start, end (float64 s), speaker (string).

        Speaker counts not given here default to the configuration's; `num_speakers` overrides the bounds.
        """
        if self.config is not None and num_speakers is None and min_speakers is None and max_speakers is None:
            num_speakers, min_speakers, max_speakers = (
                self.config.num_speakers, self.config.min_speakers, self.config.max_speakers)
        num_speakers, min_speakers, max_speakers = _speaker_counts(num_speakers, min_speakers, max_speakers)
        audio = np.asarray(audio)
        if audio.ndim == 2 and 1 in audio.shape:
            audio = audio.reshape(-1)
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if not np.all(np.isfinite(audio)):
            raise ValueError("audio contains NaN or infinite samples")
        if audio.size == 0 or not np.any(audio):
            return turns_frame([])
        return _turns(self._run(audio, num_speakers, min_speakers, max_speakers))


def _speaker_counts(num, lo, hi) -> tuple[int | None, int | None, int | None]:
    """(num, min, max) checked and as ints; an exact count sets both bounds.

    `SpeechConfig` checks its own counts, but a `Diarizer` can be called with counts of the caller's.
    """
    for name, value in (("num_speakers", num), ("min_speakers", lo), ("max_speakers", hi)):
        if value is not None and (int(value) != value or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if num is not None:
        return int(num), int(num), int(num)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"min_speakers ({lo}) must not exceed max_speakers ({hi})")
    return None, (int(lo) if lo else None), (int(hi) if hi else None)


def _turns(annotation) -> pd.DataFrame:
    """pyannote Annotation -> turns table, speakers renamed SPEAKER_00.. in order of first appearance."""
    tracks = sorted(((s.start, s.end, label) for s, _, label in annotation.itertracks(yield_label=True)),
                    key=lambda track: track[:2])
    names: dict[object, str] = {}
    return turns_frame([{"start": start, "end": end, "speaker": names.setdefault(label, f"SPEAKER_{len(names):02d}")}
                        for start, end, label in tracks])


def torch_device(config: SpeechConfig) -> str:
    """torch's name for the configured device; CUDA asked for but missing fails here, before any model loads."""
    device, _ = resolve_device(config.device, "auto")
    if device == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        raise ModelUnavailableError("device='cuda' was requested for diarization but CUDA is not available")
    return f"cuda:{config.device_index}"


@dataclass(frozen=True)
class DiarizationChoice:
    """The pipeline a configuration diarizes with (`resolve_diarization`)."""

    pipeline: str | None  # the pretrained pipeline DIARIZATION_MODEL names (a local one by its full path), if any
    origin: str  # the pretrained one's: "local", "hub-cache" or "hub" (a download); "offline": the offline one runs
    source: str | Path | None = None  # what pyannote loads: a folder or the hub id
    token: str | None = None  # HF_TOKEN, where pyannote may ask the hub

    @property
    def backend(self) -> str:
        return OFFLINE_BACKEND if self.origin == "offline" else PRETRAINED_PREFIX + self.pipeline


def resolve_diarization(config: SpeechConfig, download: bool = True) -> DiarizationChoice:
    """The pipeline `config` diarizes with, decided without loading one or touching the network. The pretrained
    pipeline DIARIZATION_MODEL names comes from a local copy; else, with HF_TOKEN and `download`, from the hub
    (pyannote fetches it unless cached); else from the Hugging Face cache. Otherwise the offline pipeline runs, so
    without a token and without a cached or local copy nothing touches the network.

    ModelUnavailableError: the pretrained pipeline is not here and HF_TOKEN would download it, which `download`
    False refuses; or the offline pipeline's models are not installed."""
    model = (config.diarization_model or "").strip()
    if model.lower() in ("", "offline"):
        model = None
    else:
        local = Path(model).expanduser()
        if local.exists():  # a local copy of a pipeline (folder or config.yaml)
            return DiarizationChoice(str(local), "local", local, config.hf_token)
        if config.hf_token and download:
            return DiarizationChoice(model, "hub", model, config.hf_token)
        cached = pretrained.cached_pipeline(model)
        if cached is not None:  # loaded from its folder, so pyannote has no reason to ask the hub
            return DiarizationChoice(model, "hub-cache", cached)
        if config.hf_token:
            raise ModelUnavailableError(f"diarization model {model!r} is not cached: a run would download it with "
                                        "HF_TOKEN (pre-place it in HF_HOME, or set DIARIZATION_MODEL=offline)")
    offline.bundled_segmentation_path()
    offline.voice_encoder_path()
    return DiarizationChoice(model, "offline")


def load_diarizer(config: SpeechConfig) -> Diarizer:
    """The pipeline `resolve_diarization` chooses, loaded; if it cannot load, `ModelUnavailableError` says how to
    fix it."""
    device = torch_device(config)
    choice = resolve_diarization(config)
    run = (offline.load(device) if choice.origin == "offline"
           else pretrained.load(choice.source, device, choice.token, choice.pipeline))
    return Diarizer(choice.backend, device, run, config)
