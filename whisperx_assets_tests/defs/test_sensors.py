"""media_inbox_sensor on real files in a temporary inbox; split_failed_batch_sensor on a real failed batch run."""

import json
import os
import time

import pytest
from dagster import AssetKey, SensorResult, build_sensor_context

from whisperx_assets.definitions import defs
from whisperx_assets.defs.jobs import RANGE_END, RANGE_START, RESUME_FROM, process_media_job, run_keys
from whisperx_assets.inputs.keys import is_valid_key
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.resources import MediaStoreResource
from whisperx_assets.defs.sensors import media_inbox_sensor, split_plan
from whisperx_assets.inputs.keys import content_hash
from whisperx_assets.inputs.sources import location
from whisperx_assets.inputs.store import MediaStore, copy_file


@pytest.fixture
def inbox(tmp_path, monkeypatch):
    folder = tmp_path / "inbox"
    folder.mkdir()
    monkeypatch.setenv("INBOX_URL", str(folder))
    monkeypatch.setenv("SENSOR_SETTLE_SECONDS", "2")
    monkeypatch.setenv("BATCH_MAX_AUDIO_SECONDS", "0")  # stand-in bytes declare no duration (see the probe tests)
    return folder


def drop(path, data=b"RIFF....WAVEfmt ", age=10.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    past = time.time() - age
    os.utime(path, (past, past))
    return path


def evaluate(instance, tmp_path, cursor=None, caplog=None) -> SensorResult:
    """One evaluation of the sensor, nothing applied."""
    context = build_sensor_context(instance=instance, cursor=cursor,
                                   resources={"storage": MediaStoreResource(root=str(tmp_path / "store"))})
    if caplog is not None:
        context.log.addHandler(caplog.handler)  # the sensor's logger does not propagate
    return media_inbox_sensor(context)


def apply_adds(instance, result) -> None:
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(media_files.name, list(request.partition_keys))


def create_runs(instance, result) -> None:
    """The requested runs, created as the daemon creates them (each records the partitions it plans)."""
    job = defs.resolve_job_def(process_media_job.name)
    for request in result.run_requests or []:
        tags = {**request.tags, **({"dagster/partition": request.partition_key} if request.partition_key else {})}
        instance.create_run_for_job(job_def=job, tags=tags)


def tick(instance, tmp_path, cursor=None, caplog=None) -> SensorResult:
    """A tick as the daemon runs it: the evaluation, its partition adds applied first, then its runs."""
    result = evaluate(instance, tmp_path, cursor, caplog)
    apply_adds(instance, result)
    create_runs(instance, result)
    return result


def handled(tmp_path, result) -> dict:
    """The files the sensor records as handled after `result`: the state its cursor names."""
    return MediaStore(tmp_path / "store").read_inbox_state(json.loads(result.cursor)["state"])


def requested_runs(instance, result) -> list[list[str]]:
    """The partitions of each requested run, as Dagster resolves them (ranges in partition order)."""
    order = instance.get_dynamic_partitions(media_files.name)
    return [request_keys(r, order) for r in result.run_requests]


def request_keys(request, order: list[str]) -> list[str]:
    return run_keys({**request.tags, **({"dagster/partition": request.partition_key} if request.partition_key else {})},
                    order)


def count_calls(monkeypatch, owner, *methods) -> list:
    """Record each call of `owner`'s `methods` (name, first argument after self) and let it through."""
    calls = []
    for method in methods:
        real = getattr(owner, method)
        monkeypatch.setattr(owner, method, lambda *a, real=real, method=method, **k: calls.append((method, *a[:2]))
                            or real(*a, **k))
    return calls


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
    assert "bad.wav" not in handled(tmp_path, result)  # tried again next tick
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


def test_files_gone_from_the_inbox_are_forgotten(inbox, instance, tmp_path):
    paths = [drop(inbox / f"clip{i:02d}.wav", f"clip {i}".encode()) for i in range(50)]
    first = tick(instance, tmp_path)
    assert len(handled(tmp_path, first)) == 50
    for path in paths[10:]:
        path.unlink()
    second = tick(instance, tmp_path, first.cursor)
    assert sorted(handled(tmp_path, second)) == [p.name for p in paths[:10]] and not second.run_requests
    drop(paths[30], b"clip 30")  # dropped again, same bytes: hashed, but its partition exists
    third = tick(instance, tmp_path, second.cursor)
    assert not third.run_requests and not third.dynamic_partitions_requests
    assert len(handled(tmp_path, third)) == 11
    assert len(instance.get_dynamic_partitions(media_files.name)) == 50


def test_the_cursor_stays_small_and_an_idle_tick_does_no_work(inbox, instance, tmp_path, monkeypatch):
    """3,000 files handled: the cursor names the state and holds nothing per file; an idle tick hashes nothing,
    asks Dagster nothing and writes nothing; one new file costs one hash and lookups of its key alone."""
    for i in range(3000):
        drop(inbox / f"day{i // 500}" / f"call {i:04d}.wav", f"call {i}".encode())
    monkeypatch.setenv("SENSOR_MAX_FILES_PER_TICK", "3000")
    first = evaluate(instance, tmp_path)
    apply_adds(instance, first)  # (its runs are not needed here)
    assert len(handled(tmp_path, first)) == 3000 and len(first.cursor) < 100
    import whisperx_assets.inputs.sources as sources

    hashed = count_calls(monkeypatch, sources, "content_hash")
    lookups = count_calls(monkeypatch, instance, "get_dynamic_partitions", "get_existing_dynamic_partitions",
                          "has_dynamic_partition")
    states = tmp_path / "store" / "inbox-state"
    written = sorted((p.name, p.stat().st_mtime_ns) for p in states.iterdir())
    idle = tick(instance, tmp_path, first.cursor)
    assert idle.cursor == first.cursor and not idle.run_requests
    assert hashed == [] and lookups == []
    assert sorted((p.name, p.stat().st_mtime_ns) for p in states.iterdir()) == written
    new = drop(inbox / "day2" / "late call.wav", b"late")
    busy = tick(instance, tmp_path, idle.cursor)
    assert [name for name, *_ in hashed] == ["content_hash"] and hashed[0][1] == new
    assert [(name, len(keys)) for name, _, keys in lookups] == [("get_existing_dynamic_partitions", 1)] * 2
    assert len(busy.cursor) < 100 and len(handled(tmp_path, busy)) == 3001


def test_states_no_cursor_names_are_deleted(inbox, instance, tmp_path, monkeypatch):
    import whisperx_assets.defs.sensors as sensors

    monkeypatch.setattr(sensors, "STALE_STATE_S", 0.0)
    result = tick(instance, tmp_path)
    for i in range(5):
        drop(inbox / f"clip{i}.wav", f"clip {i}".encode())
        uncommitted = evaluate(instance, tmp_path, result.cursor)  # a tick whose cursor the daemon never kept
        result = tick(instance, tmp_path, result.cursor)
    names = {p.stem for p in (tmp_path / "store" / "inbox-state").iterdir()}
    assert json.loads(result.cursor)["state"] in names and len(names) <= 2
    assert json.loads(uncommitted.cursor)["state"] == json.loads(result.cursor)["state"]  # same files: same state


def test_a_cursor_of_the_earlier_version_is_taken_over(inbox, instance, tmp_path, monkeypatch):
    path = drop(inbox / "a.wav")
    first = tick(instance, tmp_path)
    stat = path.stat()
    legacy = json.dumps({"a.wav": [stat.st_size, stat.st_mtime_ns, first.run_requests[0].partition_key]})
    import whisperx_assets.inputs.sources as sources

    hashed = count_calls(monkeypatch, sources, "content_hash")
    result = tick(instance, tmp_path, legacy)
    assert not hashed and not result.run_requests and handled(tmp_path, result) == {"a.wav": [stat.st_size,
                                                                                             stat.st_mtime_ns]}


@pytest.mark.parametrize("damage", ["deleted", "cut short"])
def test_a_lost_state_means_hashing_again_but_no_run(inbox, instance, tmp_path, caplog, damage):
    drop(inbox / "a.wav")
    first = tick(instance, tmp_path)
    for state in (tmp_path / "store" / "inbox-state").iterdir():
        state.unlink() if damage == "deleted" else state.write_bytes(state.read_bytes()[:5])
    second = tick(instance, tmp_path, first.cursor, caplog=caplog)
    assert not second.run_requests and "a.wav" in handled(tmp_path, second)
    assert "missing from the store or unreadable" in caplog.text


def test_the_daemon_dying_between_partition_adds_and_runs_loses_no_file(inbox, instance, tmp_path):
    """Dagster applies a tick's partition adds, then records its runs and cursor. Died in between: the tick is
    evaluated again from the cursor before it, its partitions exist, and each file gets its run."""
    drop(inbox / "a.wav", b"a")
    drop(inbox / "b.wav", b"b")
    interrupted = evaluate(instance, tmp_path)
    apply_adds(instance, interrupted)  # ... and the daemon is killed
    again = tick(instance, tmp_path)  # the committed cursor is still the one before
    assert sorted(r.partition_key for r in again.run_requests) == sorted(interrupted.dynamic_partitions_requests[0]
                                                                         .partition_keys)
    assert not again.dynamic_partitions_requests


def test_the_daemon_dying_after_the_runs_runs_no_file_twice(inbox, instance, tmp_path):
    """Died after the runs were created but before the cursor was kept: evaluated again, no second run."""
    drop(inbox / "a.wav", b"a")
    drop(inbox / "b.wav", b"b")
    tick(instance, tmp_path)  # its cursor is lost
    again = tick(instance, tmp_path)
    assert not again.run_requests and not again.dynamic_partitions_requests


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
    assert sorted(handled(tmp_path, second)) == [os.path.join("share", "b.wav")]  # a.wav is gone, b.wav unknown
    unreadable.add(str(inbox))  # the inbox itself unreadable: nothing is forgotten
    assert tick(instance, tmp_path, second.cursor).cursor == second.cursor
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
    assert "b.wav" in handled(tmp_path, result)  # handled: not hashed again
    assert sorted(instance.get_dynamic_partitions(media_files.name)) == sorted([run.partition_key, *submitted])


def test_a_file_removed_before_hashing_is_skipped_and_logged(inbox, instance, tmp_path, monkeypatch, caplog):
    drop(inbox / "kept.wav", b"kept")
    gone = drop(inbox / "gone.wav", b"gone")
    import whisperx_assets.defs.sensors as sensors

    real = sensors.scan_folder

    def scan_then_delete(root, unlisted=None):
        found = list(real(root, unlisted))
        gone.unlink()  # between the walk and the hashing
        yield from found

    monkeypatch.setattr(sensors, "scan_folder", scan_then_delete)
    result = tick(instance, tmp_path, caplog=caplog)
    assert [r.partition_key[:5] for r in result.run_requests] == ["kept-"]
    assert list(handled(tmp_path, result)) == ["kept.wav"]
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


def speech_file(path, seconds: float):
    """A real WAV of `seconds` (silence: only its declared duration matters here), settled."""
    import numpy as np
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * 16_000), dtype=np.float32), 16_000)
    past = time.time() - 10
    os.utime(path, (past, past))
    return path


def test_runs_of_files_arriving_together_are_bounded_by_their_audio_seconds(inbox, instance, tmp_path, monkeypatch):
    """4 s, 4 s, 4 s, 15 s, 1 s and 4 s recordings and a file that is not media (0 s: it fails at once), under
    a 10 s bound: the long one runs alone, the others fill runs up to 10 s in name order."""
    monkeypatch.setenv("BATCH_MAX_AUDIO_SECONDS", "10")
    for name, seconds in (("a", 4), ("b", 4), ("c", 4), ("d", 15), ("e", 1), ("f", 4)):
        speech_file(inbox / f"{name}.wav", seconds)
    drop(inbox / "g.wav", b"not audio at all")
    runs = requested_runs(instance, tick(instance, tmp_path))
    assert [[key[0] for key in run] for run in runs] == [["a", "b"], ["c"], ["d"], ["e", "f", "g"]]


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
                 "io_manager": ParquetIOManager(root=str(store.root))}

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


def test_a_bucket_inbox(s3, instance, tmp_path, monkeypatch):
    """INBOX_URL and STORAGE_URL as prefixes of a real S3-compatible server: objects are picked up once settled,
    bounded by their audio seconds, an unchanged object is not picked up again, a new upload under the same
    name is (new ETag and time), hidden and unsupported objects are skipped."""
    inbox, store = location(f"{s3}/inbox"), MediaStore(f"{s3}/store")
    monkeypatch.setenv("INBOX_URL", str(inbox))
    monkeypatch.setenv("BATCH_MAX_AUDIO_SECONDS", "6")
    local = tmp_path / "local"
    for name, seconds in (("a", 4), ("b", 4), ("c", 1)):
        speech_file(local / f"{name}.wav", seconds)
        copy_file(local / f"{name}.wav", inbox / "talks" / f"{name}.wav")
    copy_file(local / "a.wav", inbox / ".uploading.wav")
    copy_file(local / "a.wav", inbox / "notes.txt")

    def evaluate_bucket(cursor=None):
        context = build_sensor_context(instance=instance, cursor=cursor,
                                       resources={"storage": MediaStoreResource(root=str(store.root))})
        result = media_inbox_sensor(context)
        apply_adds(instance, result)
        create_runs(instance, result)
        return result

    monkeypatch.setenv("SENSOR_SETTLE_SECONDS", "30")
    waiting = evaluate_bucket()
    assert not waiting.run_requests  # just uploaded: not settled yet
    monkeypatch.setenv("SENSOR_SETTLE_SECONDS", "0")
    first = evaluate_bucket(waiting.cursor)
    runs = requested_runs(instance, first)
    assert [[key[0] for key in run] for run in runs] == [["a"], ["b", "c"]]
    key = runs[0][0]
    assert store.source(key).source == str(inbox / "talks" / "a.wav")
    assert store.source(key).sha256 == content_hash(local / "a.wav")
    size, modified, etag = store.read_inbox_state(json.loads(first.cursor)["state"])["talks/a.wav"]
    assert size == (local / "a.wav").stat().st_size and etag and abs(modified / 1e9 - time.time()) < 120
    assert not evaluate_bucket(first.cursor).run_requests  # nothing new
    speech_file(local / "a2.wav", 2)
    copy_file(local / "a2.wav", inbox / "talks" / "a.wav")  # a new upload under the same name
    [[changed]] = requested_runs(instance, evaluate_bucket(first.cursor))
    assert changed.startswith("a-") and changed != key
