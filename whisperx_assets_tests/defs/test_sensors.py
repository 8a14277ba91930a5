"""media_inbox_sensor on real files in a temporary inbox; split_failed_batch_sensor on a real failed batch run."""

import json
import os
import time

import pytest
from dagster import AssetKey, DagsterInstance, SensorResult, build_sensor_context

from whisperx_assets.defs.jobs import RANGE_END, RANGE_START, RESUME_FROM, run_keys
from whisperx_assets.inputs.keys import is_valid_key
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.resources import MediaStoreResource
from whisperx_assets.defs.sensors import media_inbox_sensor, split_plan
from whisperx_assets.inputs.store import MediaStore


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


def tick(instance, tmp_path, cursor=None, caplog=None) -> SensorResult:
    context = build_sensor_context(instance=instance, cursor=cursor,
                                   resources={"storage": MediaStoreResource(root=str(tmp_path / "store"))})
    if caplog is not None:
        context.log.addHandler(caplog.handler)  # the sensor's logger does not propagate
    result = media_inbox_sensor(context)
    # Apply the partition adds as the daemon does before it submits the runs.
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(media_files.name, list(request.partition_keys))
    return result


def requested_runs(instance, result) -> list[list[str]]:
    """The partitions of each requested run, as Dagster resolves them (ranges in partition order)."""
    order = instance.get_dynamic_partitions(media_files.name)
    return [request_keys(r, order) for r in result.run_requests]


def request_keys(request, order: list[str]) -> list[str]:
    return run_keys({**request.tags, **({"dagster/partition": request.partition_key} if request.partition_key else {})},
                    order)


def test_new_files_become_partitions_and_runs(inbox, instance, tmp_path):
    drop(inbox / "a.wav")
    drop(inbox / "nested" / "deeper" / "Call Two.MP4", b"other bytes")
    drop(inbox / "notes.txt")  # unsupported: ignored
    drop(inbox / ".partial.wav")  # hidden (e.g. an upload in progress): ignored
    result = tick(instance, tmp_path)
    [batch] = requested_runs(instance, result)  # files arriving together: one run
    keys = sorted(batch)
    assert len(keys) == 2 and all(is_valid_key(k) for k in keys)
    assert keys[0].startswith("a-") and keys[1].startswith("call-two-")
    assert sorted(instance.get_dynamic_partitions("media_files")) == keys
    assert result.run_requests[0].tags["whisperx_assets/batch_size"] == "2"
    store = MediaStore(tmp_path / "store")
    assert store.source(keys[0]).source == str(inbox / "a.wav")


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
    import whisperx_assets.inputs.sources as sources

    real = sources.content_hash

    def flaky(path):
        if path.name == "bad.wav":
            raise PermissionError(f"[Errno 13] Permission denied: '{path}'")
        return real(path)

    monkeypatch.setattr(sources, "content_hash", flaky)
    result = tick(instance, tmp_path)
    assert [r.partition_key[:5] for r in result.run_requests] == ["good-"]  # a single file: a one-partition run
    assert "bad.wav" not in json.loads(result.cursor)  # tried again next tick
    assert bad.exists()


def test_thousand_files_at_once(inbox, instance, tmp_path):
    for i in range(1000):
        drop(inbox / f"batch{i // 100}" / f"clip {i:04d}.wav", f"clip {i}".encode())
    started = time.monotonic()
    first = tick(instance, tmp_path)
    first_runs = requested_runs(instance, first)
    second = tick(instance, tmp_path, first.cursor)
    elapsed = time.monotonic() - started
    runs = first_runs + requested_runs(instance, second)
    assert sum(map(len, first_runs)) == 500  # capped per tick
    assert [len(r) for r in runs] == [32] * 15 + [20] + [32] * 15 + [20]  # BATCH_MAX_FILES per run
    assert sorted(k for r in runs for k in r) == sorted(instance.get_dynamic_partitions("media_files"))
    assert len(set(instance.get_dynamic_partitions("media_files"))) == 1000
    assert not tick(instance, tmp_path, second.cursor).run_requests
    print(f"1000 files in two ticks: {elapsed:.1f} s")
    assert elapsed < 30


def test_batch_size_is_configurable(inbox, instance, tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_MAX_FILES", "1")
    for name in ("a", "b", "c"):
        drop(inbox / f"{name}.wav", name.encode())
    assert [len(r) for r in requested_runs(instance, tick(instance, tmp_path))] == [1, 1, 1]


def test_cursor_forgets_files_gone_from_the_inbox(inbox, instance, tmp_path, monkeypatch):
    paths = [drop(inbox / f"clip{i:02d}.wav", f"clip {i}".encode()) for i in range(50)]
    first = tick(instance, tmp_path)
    assert len(json.loads(first.cursor)) == 50
    for path in paths[10:]:
        path.unlink()
    calls = []
    for method in ("get_dynamic_partitions", "has_dynamic_partition"):
        real = getattr(instance, method)
        monkeypatch.setattr(instance, method, lambda *a, real=real, **k: calls.append(a) or real(*a, **k))
    second = tick(instance, tmp_path, first.cursor)
    assert sorted(json.loads(second.cursor)) == [p.name for p in paths[:10]] and not second.run_requests
    drop(paths[30], b"clip 30")  # dropped again, same bytes: hashed, but its partition exists
    third = tick(instance, tmp_path, second.cursor)
    assert not third.run_requests and not third.dynamic_partitions_requests
    assert len(json.loads(third.cursor)) == 11
    assert len(calls) == 2  # one partition lookup per tick, however many files
    assert len(instance.get_dynamic_partitions(media_files.name)) == 50


def test_a_folder_that_cannot_be_listed_keeps_its_files(inbox, instance, tmp_path, monkeypatch):
    drop(inbox / "a.wav")
    drop(inbox / "share" / "b.wav", b"b")
    first = tick(instance, tmp_path)
    (inbox / "a.wav").unlink()
    real = os.scandir
    unreadable = {str(inbox / "share")}

    def scandir(path):
        if str(path) in unreadable:
            raise PermissionError(f"[Errno 13] Permission denied: '{path}'")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    second = tick(instance, tmp_path, first.cursor)
    assert sorted(json.loads(second.cursor)) == [os.path.join("share", "b.wav")]  # a.wav is gone, b.wav unknown
    unreadable.add(str(inbox))  # the inbox itself unreadable: nothing is forgotten
    assert json.loads(tick(instance, tmp_path, second.cursor).cursor) == json.loads(second.cursor)
    unreadable.clear()  # readable again: b.wav is still known, not hashed or run again
    third = tick(instance, tmp_path, second.cursor)
    assert not third.run_requests and third.cursor == second.cursor


def test_a_partition_submitted_during_the_tick_is_not_added_or_run_twice(inbox, instance, tmp_path, monkeypatch):
    drop(inbox / "a.wav", b"a")
    drop(inbox / "b.wav", b"b")
    import whisperx_assets.inputs.sources as sources
    from whisperx_assets.inputs.keys import partition_key

    real = sources.content_hash
    submitted = []

    def hash_while_cli_submits(path):
        digest = real(path)
        if path.name == "b.wav":  # `submit` adds the same file while the sensor hashes it
            submitted.append(partition_key(path.name, digest))
            instance.add_dynamic_partitions(media_files.name, submitted)
        return digest

    monkeypatch.setattr(sources, "content_hash", hash_while_cli_submits)
    result = tick(instance, tmp_path)
    [run] = result.run_requests
    assert run.partition_key.startswith("a-")
    [add] = result.dynamic_partitions_requests
    assert list(add.partition_keys) == [run.partition_key]
    assert json.loads(result.cursor)["b.wav"][2] == submitted[0]  # handled: not hashed again
    assert sorted(instance.get_dynamic_partitions(media_files.name)) == sorted([run.partition_key, *submitted])


def test_a_file_removed_before_hashing_is_skipped_and_logged(inbox, instance, tmp_path, monkeypatch, caplog):
    drop(inbox / "kept.wav", b"kept")
    gone = drop(inbox / "gone.wav", b"gone")
    import whisperx_assets.defs.sensors as sensors

    real = sensors.scan_inbox

    def scan_then_delete(root, unlisted=None):
        found = list(real(root, unlisted))
        gone.unlink()  # between the walk and the hashing
        yield from found

    monkeypatch.setattr(sensors, "scan_inbox", scan_then_delete)
    result = tick(instance, tmp_path, caplog=caplog)
    assert [r.partition_key[:5] for r in result.run_requests] == ["kept-"]
    assert list(json.loads(result.cursor)) == ["kept.wav"]
    assert [k[:5] for k in instance.get_dynamic_partitions(media_files.name)] == ["kept-"]
    assert "skipping gone.wav: removed from the inbox before it was hashed" in caplog.text


def test_a_file_replaced_after_registration_fails_ingest_and_becomes_a_new_partition(inbox, instance, tmp_path):
    from whisperx_assets.speech.errors import MediaError

    path = drop(inbox / "a.wav", b"first take")
    first = tick(instance, tmp_path)
    old = first.run_requests[0].partition_key
    drop(path, b"second take", age=5)  # replaced before its run ingested it
    store = MediaStore(tmp_path / "store")
    source = store.source(old)
    with pytest.raises(MediaError, match="changed after it was registered") as error:
        store.ingest(old, path, source.name, source.sha256)
    assert error.value.path == str(path)
    assert not list((tmp_path / "store" / "inputs").iterdir())  # no stale copy left
    second = tick(instance, tmp_path, first.cursor)
    [run] = second.run_requests
    assert run.partition_key.startswith("a-") and run.partition_key != old
    assert sorted(instance.get_dynamic_partitions(media_files.name)) == sorted([old, run.partition_key])


def test_split_plan():
    keys = list("abcdef")
    assert split_plan(keys, {"c"}) == [["a", "b"], ["c"], ["d", "e", "f"]]
    assert split_plan(keys, {"a", "f"}) == [["a"], ["b", "c", "d", "e"], ["f"]]
    assert split_plan(keys, {"c", "d"}) == [["a", "b"], ["c"], ["d"], ["e", "f"]]
    assert split_plan(keys, None) == [[k] for k in keys]  # crashed, cause unknown: every file alone


def test_a_failed_batch_run_is_split_around_the_bad_file(tmp_path, instance):
    """A real batch run of `media` fails on one bad file; the sensor asks for the good files together and the
    bad one alone. A one-file run is never split."""
    import numpy as np
    import soundfile as sf
    from dagster import DagsterEventType, build_run_status_sensor_context, materialize

    from whisperx_assets.defs.assets import media
    from whisperx_assets.defs.io_managers import ParquetIOManager
    from whisperx_assets.inputs.sources import identify
    from whisperx_assets.defs.resources import WhisperXResource
    from whisperx_assets.defs.sensors import split_failed_batch_sensor

    store = MediaStore(tmp_path / "store")
    paths = [tmp_path / "one.wav", tmp_path / "bad.wav", tmp_path / "two.wav"]
    sf.write(paths[0], np.zeros(16_000, dtype=np.float32), 16_000)
    paths[1].write_bytes(b"not audio at all" * 64)
    sf.write(paths[2], np.zeros(8_000, dtype=np.float32), 16_000)
    sources = [identify(p) for p in paths]
    keys = [source.key for source in sources]
    for source in sources:
        store.register(source)
    instance.add_dynamic_partitions(media_files.name, keys)
    resources = {"whisperx": WhisperXResource(), "storage": MediaStoreResource(root=str(store.root)),
                 "io_manager": ParquetIOManager(base_dir=str(store.root))}

    def split(**target):
        result = materialize([media], instance=instance, resources=resources, raise_on_error=False, **target)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        [failure] = [e.dagster_event for e in instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)]
        context = build_run_status_sensor_context(sensor_name="split_failed_batch_sensor", dagster_event=failure,
                                                  dagster_instance=instance, dagster_run=run).for_run_failure()
        return run, split_failed_batch_sensor(context)

    run, requests = split(tags={RANGE_START: keys[0], RANGE_END: keys[2]})
    order = instance.get_dynamic_partitions(media_files.name)
    planned = [request_keys(r, order) for r in requests]
    assert planned == [[keys[0]], [keys[1]], [keys[2]]]  # the bad file sits between the two good ones
    assert all(r.tags["whisperx_assets/split_from"] == run.run_id for r in requests)
    # The steps that did not finish (here `media` itself), with the failed run's work so finished files are kept.
    assert all(r.asset_selection == [AssetKey("media")] and r.tags[RESUME_FROM] == run.run_id for r in requests)
    assert len({r.run_key for r in requests}) == 3

    run, skipped = split(partition_key=keys[1])
    assert "not a batch run" in skipped.skip_message


def test_a_run_that_died_after_its_last_step_is_recorded_as_successful(tmp_path, instance):
    """The run process killed while tearing down, after every step succeeded: Dagster reports the run failed
    (its code server saw the process die); the sensor records it as the success it is."""
    from dagster import DagsterRunStatus, asset, build_run_status_sensor_context, materialize

    from whisperx_assets.defs.sensors import split_failed_batch_sensor

    @asset
    def done():
        return 1

    result = materialize([done], instance=instance)
    run = instance.get_run_by_id(result.run_id)
    failure = instance.report_run_failed(run, "Run execution process for it was terminated by signal 9.")
    context = build_run_status_sensor_context(sensor_name="split_failed_batch_sensor", dagster_event=failure,
                                              dagster_instance=instance,
                                              dagster_run=instance.get_run_by_id(run.run_id)).for_run_failure()
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    outcome = split_failed_batch_sensor(context)
    assert "marked successful" in outcome.skip_message
    finished = instance.get_run_by_id(run.run_id)
    assert finished.status == DagsterRunStatus.SUCCESS and finished.tags["dagster/will_retry"] == "false"
