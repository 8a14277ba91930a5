"""Shared fixtures: real recordings with exact references (generated dialogues, pyannote's sample)."""

from __future__ import annotations

import contextlib
import os

# Before anything imports pyannote or Hugging Face: no telemetry, no hub access in tests.
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

from whisperx_assets.evaluation.quality import Recording, pyannote_sample
from whisperx_assets.evaluation.synthetic import synthesize_dialogue


@pytest.fixture(scope="session")
def dialogue(tmp_path_factory) -> Recording:
    """The default two-voice espeak-ng dialogue (~35 s, 8 turns)."""
    path = tmp_path_factory.mktemp("dialogue") / "dialogue.wav"
    return Recording(path, synthesize_dialogue(path))


@pytest.fixture(scope="session")
def short_dialogue(tmp_path_factory) -> Recording:
    """The dialogue's first two turns (~8 s): for tests about orchestration, not accuracy."""
    from whisperx_assets.evaluation.synthetic import DEFAULT_SCRIPT

    path = tmp_path_factory.mktemp("short-dialogue") / "short.wav"
    return Recording(path, synthesize_dialogue(path, DEFAULT_SCRIPT[:2]))


@pytest.fixture(scope="session")
def sample() -> Recording:
    """pyannote.audio's bundled telephone sample (30 s, two real speakers, STM reference)."""
    return pyannote_sample()


@pytest.fixture(scope="session")
def speech_config(tmp_path_factory):
    from whisperx_assets.speech import SpeechConfig

    return SpeechConfig(cache_dir=tmp_path_factory.mktemp("speech-cache"))


@pytest.fixture(scope="session")
def engine(speech_config):
    """One engine for the whole session: each real model loads once."""
    from whisperx_assets.speech import SpeechEngine

    engine = SpeechEngine(speech_config)
    yield engine
    engine.release()


def read_audio(path):
    import soundfile as sf

    audio, rate = sf.read(path, dtype="float32")
    assert rate == 16_000 and audio.ndim == 1
    return audio


@pytest.fixture(scope="session")
def dialogue_audio(dialogue):
    return read_audio(dialogue.path)


@pytest.fixture(scope="session")
def sample_audio(sample):
    return read_audio(sample.path)


@pytest.fixture(scope="session")
def dialogue_transcript(engine, dialogue_audio):
    return engine.transcribe(dialogue_audio)


@pytest.fixture(scope="session")
def sample_transcript(engine, sample_audio):
    return engine.transcribe(sample_audio)


@pytest.fixture(scope="session")
def deployment(tmp_path_factory):
    """(url, inbox, storage, root) of a running webserver + daemon, shared by the end-to-end tests. Runs may
    read sources from the inbox and from `root/library` (SOURCE_ROOTS)."""
    from whisperx_assets.evaluation.servers import deployment as start_deployment

    root = tmp_path_factory.mktemp("deployment")
    (root / "library").mkdir()
    with shared("deployment") as stack:
        yield stack.enter_context(start_deployment(root, env={"SOURCE_ROOTS": f"{root / 'inbox'},{root / 'library'}"}))


@pytest.fixture(scope="session")
def s3_service():
    """The environment that points S3 clients at a throwaway S3-compatible server (SeaweedFS, ~3 s to start)."""
    from whisperx_assets.evaluation.stack import s3_server

    with shared("s3_service") as stack:
        yield stack.enter_context(s3_server())


@pytest.fixture
def s3(s3_service, monkeypatch) -> str:
    """A new prefix in the test bucket, with this test's environment pointing S3 clients at its server. (One
    bucket: SeaweedFS gives each bucket volumes of its own, and runs out of them after a few dozen.)"""
    import uuid

    for name, value in s3_service.items():
        monkeypatch.setenv(name, value)
    return f"s3://tests/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def standin(tmp_path_factory):
    """(deployment, instance): a real webserver and daemon on the stand-in engine (`standin.py`), for tests of
    the orchestration around a partition (callbacks to local addresses allowed). Tests may restart it. Ready
    once `speakers_sensor` has made the first (empty) voiceprints, so files processed in tests come after it."""
    from dagster import AssetKey

    from whisperx_assets.evaluation.servers import Deployment, running
    from whisperx_assets_tests.test_faults import wait_for

    with shared("standin") as stack:
        started = stack.enter_context(running(Deployment(
            tmp_path_factory.mktemp("standin"), workspace="whisperx_assets_tests/standin_workspace.yaml",
            env={"FETCH_ALLOW_PRIVATE_ADDRESSES": "1", "CALLBACK_DAGSTER_URL": "http://ui.test",
                 "VOICES_REFRESH_SECONDS": "0"})))
        deployment, instance = started
        wait_for(lambda: instance.fetch_materializations(AssetKey("voiceprints"), limit=1).records, 120,
                 "first voiceprints", deployment)
        yield started


# Fixtures that start servers or load real models: a test using one is `slow` (deselect with -m "not slow").
SLOW_FIXTURES = {"deployment", "standin", "faults", "engine", "pipeline", "speech_config", "dialogue_transcript",
                 "sample_transcript"}
# Servers shared by the tests of several modules. Those modules run one after another and each server stops after
# the last test that uses it, not at the end of the session: an idle webserver and daemon still take a share of
# this machine's two cores from every later test.
SHARED_SERVERS = ("deployment", "standin", "s3_service")
_open: dict[str, contextlib.ExitStack] = {}
_last_user: dict[str, str] = {}


@contextlib.contextmanager
def shared(name: str):
    """An exit stack for the shared server `name`, closed after its last test (or at the session's end)."""
    with contextlib.ExitStack() as stack:
        _open[name] = stack
        yield stack
    _open.pop(name, None)


def uses(item, name: str) -> bool:
    return name in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    # Whole modules move (their module-scoped fixtures set up once), in their own order otherwise.
    first_server: dict[str, int] = {}
    for item in items:
        group = next((i for i, name in enumerate(SHARED_SERVERS) if uses(item, name)), len(SHARED_SERVERS))
        first_server[item.module.__name__] = min(group, first_server.get(item.module.__name__, group))
    items.sort(key=lambda item: first_server[item.module.__name__])


def pytest_collection_finish(session):
    for item in session.items:  # after deselection
        for name in SHARED_SERVERS:
            if uses(item, name):
                _last_user[name] = item.nodeid


def pytest_runtest_teardown(item, nextitem):
    for name, nodeid in _last_user.items():
        if nodeid == item.nodeid and name in _open:
            _open.pop(name).close()
