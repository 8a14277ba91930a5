"""The client's own decisions, without a server (the deployment's answers stubbed): the end-to-end tests in
test_lifecycle.py cover the same paths against a real webserver."""

import numpy as np
import pytest
import soundfile as sf

from whisperx_assets.api.client import Unreadable, WhisperXClient
from whisperx_assets.inputs.sources import identify


@pytest.fixture
def recording(tmp_path):
    path = tmp_path / "talk.wav"
    sf.write(path, np.zeros(16_000, dtype=np.float32), 16_000)
    return identify(path)


def test_a_file_the_deployment_reads_where_it_is_is_not_copied(recording, tmp_path, monkeypatch):
    client = WhisperXClient("http://127.0.0.1:9")
    monkeypatch.setattr(client, "intake", lambda: {"source_roots": [str(tmp_path)],
                                                   "storage_url": str(tmp_path / "store")})
    assert client.copy_in(recording) is None
    assert not (tmp_path / "store").exists()


def test_a_file_outside_source_roots_is_copied_into_a_reachable_store(recording, tmp_path, monkeypatch):
    client = WhisperXClient("http://127.0.0.1:9")
    (tmp_path / "store").mkdir()
    monkeypatch.setattr(client, "intake", lambda: {"source_roots": [str(tmp_path / "inbox")],
                                                   "storage_url": str(tmp_path / "store")})
    copied = client.copy_in(recording)
    assert copied == str(tmp_path / "store" / "inputs" / f"{recording.key}.wav")
    assert open(copied, "rb").read() == open(recording.source, "rb").read()


def test_a_store_on_another_machine_is_explained(recording, tmp_path, monkeypatch):
    client = WhisperXClient("http://127.0.0.1:9")
    monkeypatch.setattr(client, "intake", lambda: {"source_roots": ["/srv/inbox"], "storage_url": "/srv/no-store"})
    with pytest.raises(Unreadable, match=r"talk.wav is outside the folders the deployment reads sources from "
                                         r"\(SOURCE_ROOTS: /srv/inbox\) and its store /srv/no-store is not reachable "
                                         r"from here: .*add its folder to SOURCE_ROOTS"):
        client.copy_in(recording)
