"""`whisperx-assets health`: each check on fakes (GraphQL answers, stores, model settings), then the command against
the shared real deployment and against a closed port."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from whisperx_assets.api import health
from whisperx_assets.api.health import Check, Unreachable
from whisperx_assets.evaluation.servers import REPO, free_port
from whisperx_assets.speech.config import SpeechConfig

CLI = str(Path(sys.executable).parent / "whisperx-assets")
NOW = 1_000_000.0


def answers(data: dict):
    """A `query` that answers every document with `data`."""
    return lambda document: data


def unreachable(document):
    raise Unreachable("no answer from http://127.0.0.1:1/graphql (ConnectionError)")


def daemons(*statuses):
    return answers({"instance": {"daemonHealth": {"allDaemonStatuses": [
        {"daemonType": kind, "required": required, "healthy": healthy, "lastHeartbeatTime": beat}
        for kind, required, healthy, beat in statuses]}}})


def workspace(*entries, typename="Workspace"):
    return answers({"workspaceOrError": {"__typename": typename, "locationEntries": list(entries)}})


def location(name="whisperx_assets", status="LOADED", error=None):
    loaded = {"__typename": "PythonError", "message": error} if error else {"__typename": "RepositoryLocation"}
    return {"name": name, "loadStatus": status, "locationOrLoadError": loaded if status == "LOADED" else None}


# --- webserver and daemons -------------------------------------------------------------------------------------


def test_webserver_answers():
    check = health.check_webserver(answers({"version": "1.13.27"}), "http://x")
    assert check == Check("webserver", True, "Dagster 1.13.27 answers GraphQL at http://x")


def test_webserver_error_answer_fails_and_no_answer_is_unreachable():
    def broken(document):
        raise RuntimeError("http://x/graphql answered HTTP 502")

    check = health.check_webserver(broken)
    assert not check.ok and "502" in check.detail
    with pytest.raises(Unreachable):
        health.check_webserver(unreachable)


def test_fresh_heartbeats_pass():
    check = health.check_daemons(daemons(("SENSOR", True, True, NOW - 5), ("QUEUED_RUN_COORDINATOR", True, True, NOW - 20),
                                         ("SCHEDULER", False, None, None)), now=NOW)
    assert check.ok and "2 daemons" in check.detail and "5 s ago" in check.detail, check


def test_stale_or_missing_heartbeats_fail():
    check = health.check_daemons(daemons(("SENSOR", True, True, NOW - 500), ("BACKFILL", True, False, None)),
                                 max_age=120, now=NOW)
    assert not check.ok
    assert "SENSOR: last heartbeat 500 s ago" in check.detail and "BACKFILL: no heartbeat" in check.detail


def test_unhealthy_daemon_fails_even_with_a_fresh_heartbeat():
    check = health.check_daemons(daemons(("SENSOR", True, False, NOW - 3)), now=NOW)
    assert not check.ok and "SENSOR: unhealthy" in check.detail


def test_no_required_daemon_passes():
    assert health.check_daemons(daemons(("SENSOR", False, None, None)), now=NOW).ok


# --- code location ------------------------------------------------------------------------------------------------


def test_code_location_loaded():
    assert health.check_code_location(workspace(location(), location("other"))) == \
        Check("code location", True, "whisperx_assets loaded")


@pytest.mark.parametrize("entries, expected", [
    ((location(error="Traceback ...\nImportError: no module named whisperx"),),
     "whisperx_assets failed to load: ImportError: no module named whisperx"),
    ((location(status="LOADING"),), "whisperx_assets is still loading (LOADING)"),
    ((location("other"),), "whisperx_assets is not in the workspace (it has: other)"),
])
def test_code_location_failures(entries, expected):
    check = health.check_code_location(workspace(*entries))
    assert check == Check("code location", False, expected)


def test_run_checks_against_a_closed_port(tmp_path, monkeypatch):
    monkeypatch.setenv("STORAGE_URL", str(tmp_path / "store"))
    checks, reachable = health.run_checks(f"http://127.0.0.1:{free_port()}", liveness=True, timeout=5)
    assert not reachable
    assert [(c.check, c.ok) for c in checks] == [("webserver", False), ("daemons", False)]
    assert "cannot reach" in checks[0].detail and "not checked" in checks[1].detail


# --- store --------------------------------------------------------------------------------------------------------


def test_store_takes_a_write_and_a_delete(tmp_path):
    check = health.check_store(tmp_path / "store")
    assert check.ok, check
    assert list((tmp_path / "store" / "health").iterdir()) == []  # the probe is gone


def test_store_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("STORAGE_URL", str(tmp_path / "env-store"))
    assert health.check_store().ok and (tmp_path / "env-store" / "health").is_dir()


def test_unwritable_store_fails_with_the_reason(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    check = health.check_store(blocker)
    assert not check.ok and "cannot write and delete health/" in check.detail and str(blocker) in check.detail


def test_store_that_refuses_writes(tmp_path, monkeypatch):
    import whisperx_assets.inputs.store as store

    def full(target, write):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "atomic_write", full)
    check = health.check_store(tmp_path)
    assert not check.ok and "No space left on device" in check.detail


def test_store_in_a_bucket(s3):
    check = health.check_store(s3)
    assert check.ok, check
    from whisperx_assets.inputs.sources import location as store_location

    assert not list(store_location(s3).rglob("probe-*"))


# --- models -------------------------------------------------------------------------------------------------------


def test_default_models_resolve_offline(tmp_path):
    check = health.check_models(SpeechConfig(cache_dir=tmp_path))
    assert check.ok, check
    assert "whisper base (package:" in check.detail and "diarization" in check.detail


def test_a_model_that_is_not_here_fails_without_downloading(tmp_path, monkeypatch):
    import faster_whisper.utils

    calls = []

    def download_model(name, **kw):
        calls.append(kw)
        raise ValueError("not cached")

    monkeypatch.setattr(faster_whisper.utils, "download_model", download_model)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    check = health.check_models(SpeechConfig(cache_dir=tmp_path, whisper_model="large-v3"))
    assert not check.ok and "large-v3" in check.detail and "not cached" in check.detail
    assert calls and all(kw.get("local_files_only") for kw in calls)  # looked in the cache only
    assert "HF_HUB_OFFLINE" not in os.environ  # restored


def test_local_model_folder_missing_files_fails(tmp_path):
    (tmp_path / "model").mkdir()
    check = health.check_models(SpeechConfig(cache_dir=tmp_path, whisper_model=str(tmp_path / "model")))
    assert not check.ok and "model.bin" in check.detail


def test_uncached_diarization_model_with_a_token_fails(tmp_path):
    config = SpeechConfig(cache_dir=tmp_path, hf_token="hf_x", diarization_model="someone/not-cached-pipeline")
    check = health.check_models(config)
    assert not check.ok and "someone/not-cached-pipeline" in check.detail and "download" in check.detail


def test_uncached_alignment_model_fails(tmp_path):
    check = health.check_models(SpeechConfig(cache_dir=tmp_path, align_model="someone/not-cached-wav2vec2"))
    assert not check.ok and "someone/not-cached-wav2vec2" in check.detail


# --- the command --------------------------------------------------------------------------------------------------


def cli(*args, env=None, timeout=120):
    run = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})}, cwd=REPO)
    return run.returncode, run.stdout, run.stderr


def test_closed_port_exits_3(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = cli("health", "--liveness", "--url", url)
    assert code == 3, (out, err)
    assert out.splitlines()[0].startswith("FAIL webserver: cannot reach the Dagster webserver")
    code, out, err = cli("health", "--url", url, "--json", env={"STORAGE_URL": str(tmp_path / "store")})
    assert code == 3, (out, err)
    import json

    checks = json.loads(out)
    assert [c["check"] for c in checks] == ["webserver", "daemons", "code location", "store", "models"]
    assert [c["ok"] for c in checks][:3] == [False, False, False] and checks[3]["ok"]


def test_health_of_the_running_deployment(deployment):
    url, inbox, storage, root = deployment
    env = {"STORAGE_URL": str(storage)}
    deadline = time.monotonic() + 180  # the daemon's first heartbeats come a little after the webserver is up
    while True:
        code, out, err = cli("health", "--url", url, env=env)
        if code == 0 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert code == 0, (out, err)
    assert [line.split(":")[0] for line in out.splitlines()] == \
        ["ok   webserver", "ok   daemons", "ok   code location", "ok   store", "ok   models"]
    code, out, err = cli("--json", "health", "--liveness", "--url", url, env=env)
    assert code == 0, (out, err)
    import json

    assert [(c["check"], c["ok"]) for c in json.loads(out)] == [("webserver", True), ("daemons", True)]
