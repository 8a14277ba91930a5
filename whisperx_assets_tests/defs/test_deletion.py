"""`delete_media` on a real instance and store: everything of the partition goes, other partitions stay; a
partition with a run in progress is refused."""

import contextlib

import pandas as pd
import pytest
from dagster import AssetKey, AssetMaterialization, AssetRecordsFilter, DagsterInstance

from whisperx_assets.definitions import defs
from whisperx_assets.defs.deletion import delete_media
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.resources import MediaStoreResource
from whisperx_assets.evaluation.servers import environment, write_instance_config
from whisperx_assets.evaluation.stack import postgres_server
from whisperx_assets.inputs.sources import Source
from whisperx_assets.inputs.store import MediaStore, StageOutput

GONE, KEPT = "gone-0123456789ab", "kept-0123456789ab"


@pytest.fixture(params=["sqlite", "postgres"])
def instance(request, tmp_path):
    """A real instance as deployed: SQLite under DAGSTER_HOME (events sharded by run), or PostgreSQL."""
    home = tmp_path / "home"
    home.mkdir()
    with contextlib.ExitStack() as stack:
        env = {}
        if request.param == "postgres":
            env["DAGSTER_POSTGRES_URL"] = stack.enter_context(postgres_server())
        write_instance_config(home, postgres=bool(env))
        with environment(env):
            instance = stack.enter_context(DagsterInstance.from_config(str(home)))
        yield instance


@pytest.fixture
def filled(instance, tmp_path):
    """(instance, store) with two partitions, each with a source record, an input, outputs, subtitles and history."""
    store = MediaStore(tmp_path / "store")
    instance.add_dynamic_partitions(media_files.name, [GONE, KEPT])
    for key in (GONE, KEPT):
        store.register(Source(key, f"/inbox/{key}.wav", f"{key}.wav"))
        (store.root / "inputs").mkdir(parents=True, exist_ok=True)
        store.media_path(key, "x.wav").write_bytes(b"RIFF")
        for asset in ("transcript", "combined"):
            store.write_output(asset, key, StageOutput(pd.DataFrame({"a": [1]})), "run")
            instance.report_runless_asset_event(AssetMaterialization(asset, partition=key))
        store.subtitles_dir(key).mkdir(parents=True)
        (store.subtitles_dir(key) / f"{key}.srt").write_text("1\n")
    store.write_collection("voices", pd.DataFrame({"partition": [GONE, KEPT], "speaker": ["SPEAKER_00"] * 2,
                                                   "voice_id": ["VOICE_0001"] * 2, "similarity": [1.0] * 2,
                                                   "embedding": [[1.0, 0.0]] * 2}))
    yield instance, store


def history(instance, key: str) -> int:
    return sum(len(instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(a), asset_partitions=[key]),
                                                  limit=10).records) for a in ("transcript", "combined"))


def delete(instance, store, keys):
    return delete_media.execute_in_process(instance=instance, raise_on_error=False,
                                           resources={"storage": MediaStoreResource(root=str(store.root))},
                                           run_config={"ops": {"delete_partitions": {"config": {"partitions": keys}}}})


def test_delete_removes_everything_of_the_partition_and_nothing_else(filled):
    instance, store = filled
    result = delete(instance, store, [GONE])
    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    removed = output.step_output_data.metadata["removed"].value[GONE]
    assert len(removed) == 5  # source record, input, two outputs, subtitles folder
    assert not [p for p in store.root.rglob("*") if GONE in p.name]
    assert instance.get_dynamic_partitions(media_files.name) == [KEPT]
    assert history(instance, GONE) == 0 and history(instance, KEPT) == 2
    assert len([p for p in store.root.rglob("*") if KEPT in p.name]) == 6
    assert list(store.read_collection("voices")["partition"]) == [KEPT]  # its voice embeddings go at once
    assert delete(instance, store, [GONE]).success is False  # no such partition any more: said so


def test_delete_is_refused_while_a_run_covers_the_partition(filled):
    instance, store = filled
    job = defs.resolve_job_def("process_media")
    run = instance.create_run_for_job(job_def=job, tags={"dagster/partition": GONE})  # not started: in progress
    result = delete(instance, store, [GONE, KEPT])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert f"refused: a run is in progress for {GONE} (run {run.run_id})" in failure.step_failure_data.error.message
    assert history(instance, GONE) == 2 and store.source(GONE) and store.source(KEPT)  # nothing deleted
