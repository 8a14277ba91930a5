"""Which alignment backend and model, and which diarization pipeline, a configuration resolves to: decided with
no model loaded and no network, on caches made up in temporary folders."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import constants as hub_constants
import pytest

from whisperx_assets.speech.align import POCKETSPHINX, WHISPER, AlignmentChoice, resolve_alignment
from whisperx_assets.speech.config import SpeechConfig
from whisperx_assets.speech.diarization import OFFLINE_BACKEND, PRETRAINED_PREFIX, offline, resolve_diarization
from whisperx_assets.speech.errors import ModelUnavailableError

SNAPSHOT = "0123456789abcdef"


def pre_place(cache: Path, repo_id: str, *files: str) -> Path:
    """Lay out `repo_id` in a Hugging Face cache folder as a download leaves it; its snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SNAPSHOT)
    snapshot = repo / "snapshots" / SNAPSHOT
    snapshot.mkdir(parents=True)
    for name in files:
        (snapshot / name).write_text("pipeline: {}\n" if name == "config.yaml" else "{}\n")
    return snapshot


@pytest.fixture
def caches(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """Empty Hugging Face and torch hub caches: (the hub cache, torch's checkpoints folder)."""
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "hf", tmp_path / "torch" / "hub" / "checkpoints"


def config(**fields) -> SpeechConfig:
    return SpeechConfig(device="cpu", **fields)


# --- alignment ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fields, language, expected", [
    ({"align_backend": "whisper"}, "fr", WHISPER),
    ({"align_backend": "pocketsphinx"}, "en", POCKETSPHINX),
    ({"align_backend": "pocketsphinx"}, None, POCKETSPHINX),
    ({}, None, AlignmentChoice("auto", None)),  # the language decides
    ({"align_backend": "wav2vec2"}, None, AlignmentChoice("wav2vec2", None)),
])
def test_backends_that_need_no_wav2vec2_model(fields, language, expected):
    assert resolve_alignment(config(**fields), language) == expected


def test_pocketsphinx_is_english_only():
    with pytest.raises(ModelUnavailableError, match="English only"):
        resolve_alignment(config(align_backend="pocketsphinx"), "de")


def test_a_local_wav2vec2_folder(tmp_path):
    choice = resolve_alignment(config(align_model=str(tmp_path)))
    assert choice == AlignmentChoice("wav2vec2", str(tmp_path), "local")


def test_a_cached_hub_model(caches):
    pre_place(caches[0], "someone/wav2vec2", "config.json")
    assert resolve_alignment(config(align_model="someone/wav2vec2")) == \
        AlignmentChoice("wav2vec2", "someone/wav2vec2", "hub-cache")


def test_a_cached_torchaudio_bundle(caches):
    caches[1].mkdir(parents=True)
    (caches[1] / "wav2vec2_fairseq_base_ls960_asr_ls960.pth").touch()
    choice = resolve_alignment(config(align_backend="wav2vec2"), "en")
    assert choice == AlignmentChoice("wav2vec2", "WAV2VEC2_ASR_BASE_960H", "torch hub cache")


def test_an_alignment_model_asked_for_but_not_here(caches):
    """Without a download it cannot be used, auto or not (a run under auto falls back from it); with one, it
    comes from the hub."""
    for fields in ({"align_model": "someone/not-cached"}, {"align_backend": "wav2vec2", "align_model": "someone/not-cached"}):
        with pytest.raises(ModelUnavailableError, match="someone/not-cached.*Hugging Face cache.*ALIGN_MODEL"):
            resolve_alignment(config(**fields), "en")
        assert resolve_alignment(config(**fields), "en", download=True) == \
            AlignmentChoice("wav2vec2", "someone/not-cached", "hub")
    with pytest.raises(ModelUnavailableError, match="torch hub cache"):
        resolve_alignment(config(align_backend="wav2vec2"), "en")


@pytest.mark.parametrize("language, expected", [("en", POCKETSPHINX), ("fr", WHISPER), ("xx", WHISPER)])
def test_auto_without_its_default_model_takes_an_offline_aligner(caches, language, expected):
    """Even where downloads are allowed: auto never downloads whisperX's default (xx has none)."""
    assert resolve_alignment(config(), language, download=True) == expected


# --- diarization ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["offline", " OFFLINE ", ""])
def test_offline_asked_for(model):
    choice = resolve_diarization(config(diarization_model=model, hf_token="hf_x"))
    assert (choice.pipeline, choice.origin, choice.backend) == (None, "offline", OFFLINE_BACKEND)


def test_a_local_pipeline_folder(tmp_path):
    choice = resolve_diarization(config(diarization_model=str(tmp_path), hf_token="hf_x"), download=False)
    assert (choice.origin, choice.source, choice.token) == ("local", tmp_path, "hf_x")
    assert choice.backend == PRETRAINED_PREFIX + str(tmp_path)


def test_a_cached_pipeline_loads_from_its_folder_without_the_token(caches):
    snapshot = pre_place(caches[0], "someone/pipeline", "config.yaml")
    choice = resolve_diarization(config(diarization_model="someone/pipeline"))
    assert (choice.pipeline, choice.origin, choice.source, choice.token) == \
        ("someone/pipeline", "hub-cache", snapshot, None)


def test_a_pipeline_not_here(caches):
    """With a token it is downloaded (refused without downloads); without one the offline pipeline runs."""
    with_token = config(diarization_model="someone/not-cached", hf_token="hf_x")
    choice = resolve_diarization(with_token)
    assert (choice.origin, choice.source, choice.token) == ("hub", "someone/not-cached", "hf_x")
    with pytest.raises(ModelUnavailableError, match="someone/not-cached.*would download it"):
        resolve_diarization(with_token, download=False)
    choice = resolve_diarization(config(diarization_model="someone/not-cached"), download=False)
    assert (choice.pipeline, choice.backend) == ("someone/not-cached", OFFLINE_BACKEND)


def test_the_offline_pipeline_without_resemblyzer(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "resemblyzer" else find_spec(name, *a))
    with pytest.raises(ModelUnavailableError, match="resemblyzer with its pretrained.pt"):
        resolve_diarization(config(diarization_model="offline"))


def test_the_offline_pipelines_models_are_installed():
    assert offline.bundled_segmentation_path().is_file() and offline.voice_encoder_path().is_file()
