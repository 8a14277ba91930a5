"""pyannote's pretrained diarization pipeline, from the Hugging Face hub, its cache or a local folder."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from whisperx_assets.speech.errors import ModelUnavailableError
from whisperx_assets.speech.media import SAMPLE_RATE


def cached_pipeline(repo_id: str, cache_dir: str | Path | None = None) -> Path | None:
    """Folder of `repo_id` in the Hugging Face cache (HF_HOME / HF_HUB_CACHE), or None; never networked."""
    if repo_id.count("/") != 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, local_files_only=True, cache_dir=cache_dir))
    except Exception:  # not cached, or an invalid id: either way, not usable offline
        return None
    return folder if (folder / "config.yaml").is_file() else None


def load(source: str | Path, device: str, token: str | None, name: str) -> Callable:
    """The pipeline at `source` (hub id or folder) as a function (audio, num, min, max) -> pyannote Annotation.

    `name` is what the user configured, for the error message.
    """
    try:
        import torch
        from pyannote.audio import Pipeline

        pipeline = Pipeline.from_pretrained(str(source), token=token)
        if pipeline is None:  # pyannote returns None when the hub refuses the download
            raise RuntimeError("the hub refused the download (gated model or invalid token)")
        pipeline.to(torch.device(device))
    except Exception as error:
        raise _unavailable(name, error, local=Path(name).expanduser().exists()) from error

    def run(audio: np.ndarray, num_speakers: int | None, min_speakers: int | None, max_speakers: int | None):
        output = pipeline({"waveform": torch.from_numpy(audio)[None], "sample_rate": SAMPLE_RATE},
                          num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers)
        # pyannote 4 returns DiarizeOutput; 3.x pipelines loaded by 4 may return the Annotation itself.
        return getattr(output, "speaker_diarization", output)

    return run


def _unavailable(model: str, error: BaseException, local: bool) -> ModelUnavailableError:
    if local:
        fix = ("point DIARIZATION_MODEL at a folder holding a complete pyannote pipeline (config.yaml and the "
               "models it names), or set DIARIZATION_MODEL=offline to use the offline diarization pipeline.")
    else:
        fix = (f"set HF_TOKEN to a Hugging Face token that can read it, accept its licence at "
               f"https://huggingface.co/{model} and allow access to huggingface.co; or pre-place the model in the "
               f"Hugging Face cache (HF_HOME) or point DIARIZATION_MODEL at a local copy. To use the offline "
               f"diarization pipeline instead, unset HF_TOKEN (with no cached copy) or set DIARIZATION_MODEL=offline.")
    return ModelUnavailableError(
        f"cannot load the diarization pipeline {model!r} ({type(error).__name__}: {error}). To fix: {fix}")
