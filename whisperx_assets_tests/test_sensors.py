"""media_inbox_sensor on real files in a temporary inbox."""

import json
import os
import time

import pytest
from dagster import DagsterInstance, SensorResult, build_sensor_context

from whisperx_assets.partitions import is_valid_key, media_files
from whisperx_assets.resources import MediaStoreResource
from whisperx_assets.sensors import media_inbox_sensor
from whisperx_assets.store import MediaStore


@pytest.fixture
def inbox(tmp_path, monkeypatch):
    folder = tmp_path / "inbox"
    folder.mkdir()
    monkeypatch.setenv("INBOX_DIR", str(folder))
    monkeypatch.setenv("SENSOR_SETTLE_SECONDS", "2")
    return folder


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as instance:
        yield instance


def drop(path, data=b"RIFF....WAVEfmt ", age=10.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    past = time.time() - age
    os.utime(path, (past, past))
    return path


def tick(instance, tmp_path, cursor=None) -> SensorResult:
    context = build_sensor_context(instance=instance, cursor=cursor,
                                   resources={"storage": MediaStoreResource(root=str(tmp_path / "store"))})
    result = media_inbox_sensor(context)
    # Apply the partition adds as the daemon does before it submits the runs.
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(media_files.name, list(request.partition_keys))
    return result


def test_new_files_become_partitions_and_runs(inbox, instance, tmp_path):
    drop(inbox / "a.wav")
    drop(inbox / "nested" / "deeper" / "Call Two.MP4", b"other bytes")
    drop(inbox / "notes.txt")  # unsupported: ignored
    drop(inbox / ".partial.wav")  # hidden (e.g. an upload in progress): ignored
    result = tick(instance, tmp_path)
    keys = sorted(r.partition_key for r in result.run_requests)
    assert len(keys) == 2 and all(is_valid_key(k) for k in keys)
    assert keys[0].startswith("a-") and keys[1].startswith("call-two-")
    assert sorted(instance.get_dynamic_partitions("media_files")) == keys
    assert {r.run_key for r in result.run_requests} == set(keys)
    store = MediaStore(tmp_path / "store")
    assert store.source(keys[0])["source"] == str(inbox / "a.wav")


def test_unchanged_files_are_never_rerun_and_changed_ones_are(inbox, instance, tmp_path):
    path = drop(inbox / "a.wav")
    first = tick(instance, tmp_path)
    assert len(first.run_requests) == 1
    second = tick(instance, tmp_path, first.cursor)
    assert not second.run_requests
    drop(path, b"new content")
    third = tick(instance, tmp_path, second.cursor)
    assert len(third.run_requests) == 1
    assert third.run_requests[0].partition_key != first.run_requests[0].partition_key


def test_same_bytes_dropped_again_is_not_rerun(inbox, instance, tmp_path):
    drop(inbox / "a.wav")
    first = tick(instance, tmp_path)
    drop(inbox / "copy" / "a.wav")  # same name and bytes elsewhere in the inbox: same key
    second = tick(instance, tmp_path, first.cursor)
    assert not second.run_requests


def test_half_written_files_wait(inbox, instance, tmp_path):
    path = drop(inbox / "growing.wav", age=0)
    first = tick(instance, tmp_path)
    assert not first.run_requests
    os.utime(path, (time.time() - 10, time.time() - 10))
    assert len(tick(instance, tmp_path, first.cursor).run_requests) == 1


def test_unreadable_file_does_not_stop_others(inbox, instance, tmp_path, monkeypatch):
    drop(inbox / "good.wav")
    bad = drop(inbox / "bad.wav")
    import whisperx_assets.sensors as sensors

    real = sensors.content_hash

    def flaky(path):
        if path.name == "bad.wav":
            raise PermissionError(f"[Errno 13] Permission denied: '{path}'")
        return real(path)

    monkeypatch.setattr(sensors, "content_hash", flaky)
    result = tick(instance, tmp_path)
    assert [r.partition_key[:5] for r in result.run_requests] == ["good-"]
    assert "bad.wav" not in json.loads(result.cursor)  # tried again next tick
    assert bad.exists()


def test_thousand_files_at_once(inbox, instance, tmp_path):
    for i in range(1000):
        drop(inbox / f"batch{i // 100}" / f"clip {i:04d}.wav", f"clip {i}".encode())
    started = time.monotonic()
    first = tick(instance, tmp_path)
    second = tick(instance, tmp_path, first.cursor)
    elapsed = time.monotonic() - started
    assert len(first.run_requests) == 500 and len(second.run_requests) == 500  # capped per tick
    assert len(set(instance.get_dynamic_partitions("media_files"))) == 1000
    assert not tick(instance, tmp_path, second.cursor).run_requests
    print(f"1000 files in two ticks: {elapsed:.1f} s")
    assert elapsed < 30
