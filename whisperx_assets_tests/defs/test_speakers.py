"""speakers_sensor against an ephemeral instance and a temporary SPEAKERS_DIR: refreshes of voiceprints (enrollment
changed since the one it was built from) and voices (files embedded since those it took in), one at a time, retried
after a failure, throttled; the re-naming runs after either; the pure batching helpers behind those runs."""

import json
import shutil
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from dagster import (AssetKey, AssetMaterialization, DagsterRunStatus, DefaultSensorStatus,
                     MetadataValue, build_sensor_context, materialize)
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteRepositoryOrigin

import whisperx_assets.defs.speakers as speakers_module
from whisperx_assets.definitions import defs
from whisperx_assets.defs.assets.speakers import voiceprints, voiceprints_version, voices
from whisperx_assets.defs.jobs import RANGE_END, RANGE_START, process_media_job
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.resources import MediaStoreResource, WhisperXResource
from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.defs.speakers import (REFRESH_TAG, RELABEL_TAG, RELABELED, UNFINISHED, contiguous_runs,
                                           refresh_speakers_job, relabel_requests, speakers_sensor)
from whisperx_assets.inputs.enrollment import enroll, fingerprint, name_voice
from whisperx_assets.inputs.sources import location
from whisperx_assets.inputs.store import MediaStore, StageOutput
from whisperx_assets_tests.defs.test_sensors import request_keys
from whisperx_assets_tests.inputs.test_enrollment import clip

KEYS = ["a", "b", "c", "d", "e", "f", "g", "h"]


@pytest.fixture
def speakers(tmp_path, monkeypatch):
    folder = tmp_path / "speakers"
    monkeypatch.setenv("SPEAKERS_DIR", str(folder))
    monkeypatch.setenv("STORAGE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("VOICES_REFRESH_SECONDS", "0")
    return folder


@pytest.fixture
def clock(monkeypatch):
    """The sensor's clock, now: tests move it on (`clock.now += 301`)."""
    clock = SimpleNamespace(now=time.time())
    monkeypatch.setattr(speakers_module, "time", SimpleNamespace(time=lambda: clock.now))
    return clock


def evaluate(instance, cursor=None):
    return speakers_sensor(build_sensor_context(instance=instance, cursor=cursor))


def report(instance, asset, partition=None, **event) -> int:
    """A materialization of `asset` recorded as a run would; its storage id."""
    instance.report_runless_asset_event(AssetMaterialization(asset, partition=partition, **event))
    return instance.fetch_materializations(AssetKey(asset), limit=1).records[0].storage_id


def latest_id(instance, asset) -> int:
    records = instance.fetch_materializations(AssetKey(asset), limit=1).records
    return records[0].storage_id if records else 0


def built_voiceprints(instance, version=voiceprints_version([])) -> int:
    """A `voiceprints` materialization built from SPEAKERS_DIR as it is now (of nobody unless `version` says)."""
    enrollment = fingerprint(location(PipelineSettings().speakers_dir))
    return report(instance, "voiceprints", metadata={"enrollment": enrollment}, tags={DATA_VERSION_TAG: version})


def built_voices(instance, **metadata) -> int:
    """A `voices` materialization that took in every file embedded so far."""
    return report(instance, "voices", metadata={"embedded_through": latest_id(instance, "speaker_embeddings"),
                                                **metadata})


def settled(instance):
    """The cursor once the first refresh, of the (empty) voiceprints, is built."""
    first = evaluate(instance)
    built_voiceprints(instance)
    return evaluate(instance, first.cursor).cursor


def job_run(instance, job_name, status, tags=None):
    """A run of `job_name` in `status`, as the daemon records it (a queued run needs the job's code origin)."""
    origin = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("whisperx_assets"), "__repository__")
    return instance.create_run_for_job(job_def=defs.resolve_job_def(job_name), status=status, tags=tags,
                                       remote_job_origin=origin.get_job_origin(job_name))


def refresh_run(instance, asset, status=DagsterRunStatus.STARTED):
    """The run the sensor's refresh request of `asset` became."""
    return job_run(instance, refresh_speakers_job.name, status, tags={REFRESH_TAG: asset})


def refreshes(result) -> list[str]:
    """The assets whose refresh `result` requests, each tagged with its asset."""
    assets = [r.asset_selection for r in result.run_requests if r.job_name == refresh_speakers_job.name]
    assert all(len(selected) == 1 for selected in assets)
    assert [r.tags.get(REFRESH_TAG) for r in result.run_requests if r.job_name == refresh_speakers_job.name] == \
        [selected[0].path[-1] for selected in assets]
    return [selected[0].path[-1] for selected in assets]


def planned(instance, result) -> list[tuple[str, list[str]]]:
    """(run key, partitions) of each requested run."""
    order = instance.get_dynamic_partitions(media_files.name)
    return [(r.run_key, request_keys(r, order)) for r in result.run_requests]


def progress(cursor) -> dict:
    """The cursor without the time of the last voices request."""
    return {k: v for k, v in json.loads(cursor).items() if k != "voices_requested"}


def with_names(instance, keys=KEYS, named=("a", "b", "c", "e", "g", "h")):
    """Partitions `keys`, of which `named` have `speaker_names`."""
    instance.add_dynamic_partitions(media_files.name, list(keys))
    for key in named:
        report(instance, "speaker_names", key)


def test_contiguous_runs_follow_the_partitions_order():
    assert contiguous_runs({"h", "a", "b", "d", "e", "f"}, KEYS) == [["a", "b"], ["d", "e", "f"], ["h"]]
    assert contiguous_runs(set(KEYS), KEYS) == [KEYS]
    assert contiguous_runs({"c"}, KEYS) == [["c"]]
    assert contiguous_runs({"a", "c", "e", "g"}, KEYS) == [["a"], ["c"], ["e"], ["g"]]


def test_contiguous_runs_drop_keys_that_are_not_partitions():
    assert contiguous_runs({"gone", "b", "c"}, KEYS) == [["b", "c"]]
    assert contiguous_runs({"gone"}, KEYS) == []
    assert contiguous_runs(set(), KEYS) == []
    assert contiguous_runs({"a"}, []) == []


def test_relabel_requests_cut_runs_into_batches_of_batch_max_files():
    requests = relabel_requests({"a", "b", "c", "d", "f", "g", "h"}, KEYS, "voices-42",
                                PipelineSettings(batch_max_files=3))
    assert [r.run_key for r in requests] == ["relabel-voices-42-a-3", "relabel-voices-42-d-1",
                                             "relabel-voices-42-f-3"]
    first, single, last = requests
    assert first.partition_key is None and single.partition_key == "d" and last.partition_key is None
    assert first.tags == {RANGE_START: "a", RANGE_END: "c", "whisperx_assets/batch_size": "3",
                          RELABEL_TAG: "voices-42"}
    assert last.tags[RANGE_START] == "f" and last.tags[RANGE_END] == "h"
    assert single.tags == {RELABEL_TAG: "voices-42"}
    for request in requests:
        assert request.job_name == process_media_job.name
        assert request.asset_selection == [AssetKey("speaker_names"), AssetKey("combined"), AssetKey("subtitles")]


def test_relabel_requests_one_file_per_run_when_batch_max_files_is_1():
    requests = relabel_requests({"b", "c"}, KEYS, "why", PipelineSettings(batch_max_files=1))
    assert [(r.run_key, r.partition_key) for r in requests] == [("relabel-why-b-1", "b"), ("relabel-why-c-1", "c")]
    assert relabel_requests(set(), KEYS, "why", PipelineSettings()) == []


def test_relabeling_reruns_only_naming_and_what_follows_it():
    job_assets = defs.resolve_job_def(process_media_job.name).asset_layer.executable_asset_keys
    assert set(RELABELED) <= job_assets
    assert not {AssetKey(a) for a in ("media", "transcript", "alignment", "diarization")} & set(RELABELED)
    refresh = defs.resolve_job_def(refresh_speakers_job.name).asset_layer.executable_asset_keys
    assert refresh == {AssetKey("voiceprints"), AssetKey("voices")}


def test_the_sensor_runs_by_default_and_requests_both_jobs():
    assert speakers_sensor.default_status == DefaultSensorStatus.RUNNING
    assert {t.job_name for t in speakers_sensor.targets} == {refresh_speakers_job.name, process_media_job.name}


def ended(instance, run, status):
    """`run` ended in `status`, at the (real) time of the call."""
    run = instance.get_run_by_id(run.run_id)
    if status == DagsterRunStatus.FAILURE:
        instance.report_run_failed(run)
    elif status == DagsterRunStatus.CANCELED:
        instance.report_run_canceled(run)
    else:
        instance.report_dagster_event(DagsterEvent(DagsterEventType.RUN_SUCCESS.value, job_name=run.job_name),
                                      run_id=run.run_id)
    assert instance.get_run_by_id(run.run_id).status == status


def test_the_first_tick_refreshes_voiceprints_of_nobody_until_they_are_built(speakers, instance):
    first = evaluate(instance)
    [request] = first.run_requests
    assert request.job_name == refresh_speakers_job.name and request.asset_selection == [AssetKey("voiceprints")]
    assert request.tags == {REFRESH_TAG: "voiceprints"} and request.run_key is None
    run = refresh_run(instance, "voiceprints")
    waiting = evaluate(instance, first.cursor)
    assert waiting.run_requests == [] and waiting.cursor == first.cursor
    built_voiceprints(instance)
    ended(instance, run, DagsterRunStatus.SUCCESS)
    settled = evaluate(instance, waiting.cursor)
    assert settled.run_requests == []
    assert evaluate(instance, settled.cursor).run_requests == []


def test_an_enrollment_change_refreshes_voiceprints_until_one_is_built_from_it(speakers, instance, tmp_path):
    cursor = settled(instance)
    enroll(location(speakers), "Ada", [clip(tmp_path / "in" / "ada.wav")])
    changed = evaluate(instance, cursor)
    assert refreshes(changed) == ["voiceprints"] and len(changed.run_requests) == 1
    assert refreshes(evaluate(instance, changed.cursor)) == ["voiceprints"]  # no run came of it: still due
    built_voiceprints(instance, "ada")
    assert refreshes(evaluate(instance, changed.cursor)) == []
    name_voice(location(speakers), "VOICE_0001", "Ada")
    assert refreshes(evaluate(instance, changed.cursor)) == ["voiceprints"]


def test_voiceprints_built_from_an_enrollment_changed_since_are_refreshed_again(speakers, instance, tmp_path):
    """The refresh records the fingerprint taken before it read the folder: a change while it ran is seen."""
    cursor = settled(instance)
    enroll(location(speakers), "Ada", [clip(tmp_path / "in" / "ada.wav")])
    stale = fingerprint(location(speakers))
    name_voice(location(speakers), "VOICE_0001", "Ada")
    report(instance, "voiceprints", metadata={"enrollment": stale}, tags={DATA_VERSION_TAG: "ada"})
    assert refreshes(evaluate(instance, cursor)) == ["voiceprints"]


def test_voiceprints_built_before_their_enrollment_was_recorded_are_refreshed_once(speakers, instance):
    """A materialization from before `enrollment` was in its metadata (an upgrade) is refreshed."""
    report(instance, "voiceprints", tags={DATA_VERSION_TAG: voiceprints_version([])})
    first = evaluate(instance)
    assert refreshes(first) == ["voiceprints"]
    built_voiceprints(instance)
    assert evaluate(instance, first.cursor).run_requests == []


def test_an_enrollment_returning_to_an_earlier_state_is_refreshed_again(speakers, instance, tmp_path):
    """The daemon never reuses a run key: a refresh must not carry one spent by an earlier request (a voice name
    removed again, everyone removed)."""
    root = location(speakers)
    changes = [lambda: enroll(root, "Ada", [clip(tmp_path / "in" / "ada.wav")]),
               lambda: name_voice(root, "VOICE_0001", "Ada"), lambda: (root / "Ada" / "VOICE_0001.voice").unlink(),
               lambda: shutil.rmtree(speakers / "Ada")]
    cursor, spent, seen = None, set(), []
    for change in [lambda: None, *changes]:
        change()
        seen.append(fingerprint(root))
        result = evaluate(instance, cursor)
        [request] = [r for r in result.run_requests if r.job_name == refresh_speakers_job.name]
        assert request.asset_selection == [AssetKey("voiceprints")]
        assert request.run_key not in spent
        spent.add(request.run_key) if request.run_key else None
        built_voiceprints(instance, seen[-1])
        cursor = result.cursor
    assert seen[3] == seen[1] and seen[4] == seen[0]  # earlier states


def test_an_evaluation_repeated_after_a_crash_requests_the_same_runs(speakers, instance, tmp_path):
    """The daemon creates no second run for a run key: a tick evaluated again from an older cursor must request
    the same keys, not new ones."""
    with_names(instance)
    enroll(location(speakers), "Ada", [clip(tmp_path / "in" / "ada.wav")])
    report(instance, "speaker_embeddings", "a")
    report(instance, "voiceprints", tags={DATA_VERSION_TAG: "enrolled"})
    report(instance, "voices", metadata={"relabel": MetadataValue.json(["b"])})
    first, again = evaluate(instance), evaluate(instance)
    assert [r.run_key for r in first.run_requests] == [r.run_key for r in again.run_requests]
    assert refreshes(first) == ["voiceprints"] and len(first.run_requests) == 5
    assert progress(first.cursor) == progress(again.cursor)
    assert len(first.cursor) < 200


def test_materializations_of_other_assets_request_nothing(speakers, instance):
    cursor = settled(instance)
    with_names(instance)
    for asset in ("media", "diarization", "combined"):
        report(instance, asset, "a")
    quiet = evaluate(instance, cursor)
    assert quiet.run_requests == [] and quiet.cursor == cursor


def test_a_tick_with_nothing_to_re_name_does_not_read_every_partition_key(speakers, instance, monkeypatch):
    cursor = settled(instance)
    with_names(instance)
    built_voices(instance, relabel=[])

    def every_key(*args):
        raise AssertionError("read every partition key")

    monkeypatch.setattr(instance, "get_dynamic_partitions", every_key)
    evaluate(instance, cursor)


def test_new_embeddings_refresh_voices_until_they_are_taken_in(speakers, instance):
    cursor = settled(instance)
    instance.add_dynamic_partitions(media_files.name, ["a", "b"])
    report(instance, "speaker_embeddings", "a")
    report(instance, "speaker_embeddings", "b")
    first = evaluate(instance, cursor)
    [request] = first.run_requests
    assert request.job_name == refresh_speakers_job.name and request.asset_selection == [AssetKey("voices")]
    assert request.tags == {REFRESH_TAG: "voices"} and request.run_key is None
    built_voices(instance)
    taken_in = evaluate(instance, first.cursor)
    assert taken_in.run_requests == []
    report(instance, "speaker_embeddings", "a")
    assert refreshes(evaluate(instance, taken_in.cursor)) == ["voices"]


def test_voices_built_before_the_latest_embeddings_are_refreshed_again(speakers, instance):
    """`embedded_through` is read when the refresh starts: files embedded while it ran are taken in next time."""
    cursor = settled(instance)
    report(instance, "speaker_embeddings", "a")
    started = latest_id(instance, "speaker_embeddings")
    report(instance, "speaker_embeddings", "b")
    report(instance, "voices", metadata={"embedded_through": started})
    assert refreshes(evaluate(instance, cursor)) == ["voices"]


@pytest.mark.parametrize("status", UNFINISHED)
def test_no_refresh_while_a_refresh_is_unfinished(speakers, instance, tmp_path, status):
    cursor = settled(instance)
    run = refresh_run(instance, "voiceprints", status)
    enroll(location(speakers), "Ada", [clip(tmp_path / "in" / "ada.wav")])
    report(instance, "speaker_embeddings", "a")
    waiting = evaluate(instance, cursor)
    assert waiting.run_requests == []
    built_voiceprints(instance, "ada")
    ended(instance, run, DagsterRunStatus.SUCCESS)
    assert refreshes(evaluate(instance, waiting.cursor)) == ["voices"]


def test_one_refresh_at_a_time_voiceprints_first(speakers, instance, tmp_path):
    """Both due in one tick: voiceprints is requested, voices once that run has ended."""
    cursor = settled(instance)
    enroll(location(speakers), "Ada", [clip(tmp_path / "in" / "ada.wav")])
    report(instance, "speaker_embeddings", "a")
    first = evaluate(instance, cursor)
    assert refreshes(first) == ["voiceprints"] and len(first.run_requests) == 1
    run = refresh_run(instance, "voiceprints")
    assert evaluate(instance, first.cursor).run_requests == []
    built_voiceprints(instance, "ada")
    ended(instance, run, DagsterRunStatus.SUCCESS)
    assert refreshes(evaluate(instance, first.cursor)) == ["voices"]


@pytest.mark.parametrize("status", [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED])
def test_finished_refreshes_and_other_jobs_runs_do_not_hold_a_refresh_back(speakers, instance, status, monkeypatch):
    monkeypatch.setenv("VOICES_REFRESH_SECONDS", "300")
    job_run(instance, refresh_speakers_job.name, status)  # launched by hand: no refresh tag
    job_run(instance, process_media_job.name, DagsterRunStatus.STARTED)
    report(instance, "speaker_embeddings", "a")
    first = evaluate(instance)
    assert refreshes(first) == ["voiceprints"]
    built_voiceprints(instance)
    assert refreshes(evaluate(instance, first.cursor)) == ["voices"]


@pytest.mark.parametrize("status", [DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED])
def test_a_failed_voiceprints_refresh_is_retried_after_voices_refresh_seconds(speakers, instance, tmp_path, clock,
                                                                               monkeypatch, status):
    monkeypatch.setenv("VOICES_REFRESH_SECONDS", "300")
    cursor = settled(instance)
    enroll(location(speakers), "Ada", [clip(tmp_path / "in" / "ada.wav")])
    requested = evaluate(instance, cursor)
    assert refreshes(requested) == ["voiceprints"]
    ended(instance, refresh_run(instance, "voiceprints"), status)
    clock.now = time.time() + 290
    held = evaluate(instance, requested.cursor)
    assert held.run_requests == [] and held.cursor == requested.cursor
    clock.now += 11
    assert refreshes(evaluate(instance, held.cursor)) == ["voiceprints"]


def test_a_failed_voices_refresh_is_retried_without_new_embeddings(speakers, instance, clock, monkeypatch):
    monkeypatch.setenv("VOICES_REFRESH_SECONDS", "300")
    cursor = settled(instance)
    report(instance, "speaker_embeddings", "a")
    clock.now = time.time() - 1000  # requested long ago: the throttle would let it through
    requested = evaluate(instance, cursor)
    assert refreshes(requested) == ["voices"]
    ended(instance, refresh_run(instance, "voices"), DagsterRunStatus.FAILURE)
    clock.now = time.time() + 290
    assert evaluate(instance, requested.cursor).run_requests == []
    clock.now += 11
    retried = evaluate(instance, requested.cursor)
    assert refreshes(retried) == ["voices"]
    ended(instance, refresh_run(instance, "voices"), DagsterRunStatus.SUCCESS)
    built_voices(instance)
    clock.now += 1000
    assert evaluate(instance, retried.cursor).run_requests == []


def test_a_voiceprints_refresh_waiting_to_be_retried_lets_voices_refresh(speakers, instance, tmp_path, monkeypatch):
    monkeypatch.setenv("VOICES_REFRESH_SECONDS", "300")
    cursor = settled(instance)
    enroll(location(speakers), "Ada", [clip(tmp_path / "in" / "ada.wav")])
    ended(instance, refresh_run(instance, "voiceprints"), DagsterRunStatus.FAILURE)
    report(instance, "speaker_embeddings", "a")
    assert refreshes(evaluate(instance, cursor)) == ["voices"]


def test_voices_are_refreshed_at_most_every_voices_refresh_seconds(speakers, instance, monkeypatch):
    monkeypatch.setenv("VOICES_REFRESH_SECONDS", "300")
    cursor = settled(instance)
    report(instance, "speaker_embeddings", "a")
    refreshed = evaluate(instance, cursor)
    assert refreshes(refreshed) == ["voices"]
    built_voices(instance)
    report(instance, "speaker_embeddings", "b")
    held = evaluate(instance, refreshed.cursor)
    assert held.run_requests == [] and progress(held.cursor) == progress(evaluate(instance, cursor).cursor)
    state = json.loads(held.cursor)
    assert abs(state["voices_requested"] - time.time()) < 60
    state["voices_requested"] -= 301
    assert refreshes(evaluate(instance, json.dumps(state))) == ["voices"]


def test_a_changed_voiceprints_relabels_every_named_file(speakers, instance, monkeypatch):
    monkeypatch.setenv("BATCH_MAX_FILES", "2")
    cursor = settled(instance)
    with_names(instance)
    stored = built_voiceprints(instance, "ada-enrolled")
    relabeled = evaluate(instance, cursor)
    why = f"voiceprints-{stored}"
    assert planned(instance, relabeled) == [(f"relabel-{why}-a-2", ["a", "b"]), (f"relabel-{why}-c-1", ["c"]),
                                            (f"relabel-{why}-e-1", ["e"]), (f"relabel-{why}-g-2", ["g", "h"])]
    assert {r.tags[RELABEL_TAG] for r in relabeled.run_requests} == {why}
    assert all(r.asset_selection == RELABELED for r in relabeled.run_requests)
    assert evaluate(instance, relabeled.cursor).run_requests == []


def test_a_voiceprints_refresh_with_the_same_content_relabels_nothing(speakers, instance):
    cursor = settled(instance)
    with_names(instance)
    built_voiceprints(instance)
    nobody = evaluate(instance, cursor)
    assert nobody.run_requests == []
    built_voiceprints(instance, "ada-enrolled")
    enrolled = evaluate(instance, nobody.cursor)
    assert len(enrolled.run_requests) == 3
    built_voiceprints(instance, "ada-enrolled")
    assert evaluate(instance, enrolled.cursor).run_requests == []
    back = built_voiceprints(instance)
    assert [r.run_key for r in evaluate(instance, enrolled.cursor).run_requests] == [
        f"relabel-voiceprints-{back}-a-3", f"relabel-voiceprints-{back}-e-1", f"relabel-voiceprints-{back}-g-2"]


def test_a_voices_refresh_relabels_the_files_it_names(speakers, instance):
    cursor = settled(instance)
    with_names(instance)
    stored = report(instance, "voices", metadata={"relabel": MetadataValue.json(["h", "c", "d", "deleted"])})
    relabeled = evaluate(instance, cursor)
    why = f"voices-{stored}"
    assert planned(instance, relabeled) == [(f"relabel-{why}-c-2", ["c", "d"]), (f"relabel-{why}-h-1", ["h"])]
    assert all(r.tags[RELABEL_TAG] == why and r.asset_selection == RELABELED for r in relabeled.run_requests)
    assert evaluate(instance, relabeled.cursor).run_requests == []
    report(instance, "voices", metadata={"relabel": MetadataValue.json([])})
    report(instance, "voices", metadata={"voices": 3})
    quiet = evaluate(instance, relabeled.cursor)
    assert quiet.run_requests == [] and quiet.cursor != relabeled.cursor


def test_materialized_voiceprints_of_a_named_voice_relabel_the_named_files(speakers, instance, tmp_path):
    """The real `voiceprints` asset (a person with a named voice and no clips needs no model)."""
    resources = {"whisperx": WhisperXResource(), "storage": MediaStoreResource(root=str(tmp_path / "store"))}
    first = evaluate(instance)
    assert materialize([voiceprints], instance=instance, resources=resources).success
    [record] = instance.fetch_materializations(AssetKey("voiceprints"), limit=1).records
    assert record.asset_materialization.metadata["enrollment"].value == fingerprint(location(speakers))
    with_names(instance, named=("b", "c"))
    empty = evaluate(instance, first.cursor)
    assert empty.run_requests == []
    name_voice(location(speakers), "VOICE_0001", "Ada")
    changed = evaluate(instance, empty.cursor)
    assert [r.asset_selection for r in changed.run_requests] == [[AssetKey("voiceprints")]]
    assert materialize([voiceprints], instance=instance, resources=resources).success
    stored = instance.fetch_materializations(AssetKey("voiceprints"), limit=1).records[0].storage_id
    assert planned(instance, evaluate(instance, changed.cursor)) == [(f"relabel-voiceprints-{stored}-b-2",
                                                                      ["b", "c"])]


def test_materialized_voices_relabel_the_files_whose_voice_now_recurs(speakers, instance, tmp_path):
    """The real `voices` asset over stored embeddings: the same voice in b and d recurs, f's voice does not."""
    store = MediaStore(tmp_path / "store")
    same, other = np.eye(4)[0], np.eye(4)[1]
    keys = [f"{name}-{n:012x}" for n, name in enumerate(KEYS)]  # stored outputs need real partition keys
    b, d, f = keys[1], keys[3], keys[5]
    for key, vector in ((b, same), (d, same), (f, other)):
        frame = pd.DataFrame({"speaker": ["SPEAKER_00"], "seconds": [3.0], "model": ["resemblyzer-ge2e-256"],
                              "embedding": [vector.tolist()]})
        store.write_output("speaker_embeddings", key, StageOutput(frame, {}), work="test")
    cursor = settled(instance)
    with_names(instance, keys, named=keys)
    for key in (b, d, f):
        report(instance, "speaker_embeddings", key)
    assert refreshes(evaluate(instance, cursor)) == ["voices"]
    result = materialize([voices], instance=instance,
                         resources={"storage": MediaStoreResource(root=str(store.root))})
    assert result.success
    [record] = instance.fetch_materializations(AssetKey("voices"), limit=1).records
    assert record.asset_materialization.metadata["embedded_through"].value == latest_id(instance, "speaker_embeddings")
    stored = record.storage_id
    relabeled = evaluate(instance, cursor)
    assert planned(instance, relabeled) == [(f"relabel-voices-{stored}-{b}-1", [b]),
                                            (f"relabel-voices-{stored}-{d}-1", [d])]
    report(instance, "speaker_embeddings", keys[6])
    assert refreshes(evaluate(instance, relabeled.cursor)) == ["voices"]
