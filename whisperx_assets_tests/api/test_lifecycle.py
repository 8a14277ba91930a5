"""A partition's life after its first run, through the CLI on a real webserver and daemon (stand-in engine: only
the orchestration is under test): reprocessing when an option changes (each stage's code version comes from the
options that shape it, so changing the aligner makes `alignment` stale and `backfill --stale` re-runs it and what
follows it), and deletion (everything of the partition goes; refused while its run is queued)."""


import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from dagster import AssetKey, AssetRecordsFilter, DagsterEventType

from whisperx_assets.api.client import JOB, WhisperXClient, media_config
from whisperx_assets.defs.assets import ASSET_NAMES
from whisperx_assets.defs.assets.speech import GPU_POOL
from whisperx_assets.inputs.sources import identify
from whisperx_assets.inputs.store import MediaStore
from whisperx_assets_tests.api.test_api import cli
from whisperx_assets_tests.test_faults import wait_for

pytestmark = pytest.mark.slow


def materializations(instance, asset: str, key: str) -> int:
    return len(instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[key]),
                                              limit=10).records)


def processed(deployment, instance, tmp_path, name: str) -> str:
    """A new 2 s recording dropped into the inbox and through every asset; its partition key."""
    sf.write(tmp_path / name, np.sin(np.arange(32_000) / (len(name) + 5)).astype(np.float32) * 0.1, 16_000)
    [key] = deployment.drop((tmp_path / name, name))
    wait_for(lambda: all(materializations(instance, a, key) for a in ASSET_NAMES), 120, f"{name} processed", deployment)
    return key


def test_changing_the_aligner_makes_alignment_and_what_follows_stale(standin, tmp_path):
    deployment, instance = standin
    key = processed(deployment, instance, tmp_path, "talk.wav")
    client = WhisperXClient(deployment.url)
    code, data, err = cli(deployment.url, "backfill", "--stale")
    assert code == 0 and key not in data["partitions"], (data, err)  # nothing changed yet

    deployment.stop()
    deployment.env["ALIGN_BACKEND"] = "whisper" if deployment.env.get("ALIGN_BACKEND") != "whisper" else "auto"
    deployment.start()
    assert client.stale_partitions()[key] == ["alignment"]  # the UI shows it stale (and other files' alignment)
    code, data, err = cli(deployment.url, "backfill", "--stale")
    assert code == 0, err
    assert key in data["partitions"] and data["assets"] == ["alignment", "combined", "subtitles"]
    wait_for(lambda: materializations(instance, "subtitles", key) == 2, 120, "stale assets re-run", deployment)
    wait_for(lambda: client.stale_partitions() == {}, 30, "nothing stale", deployment)
    counts = {a: materializations(instance, a, key) for a in ASSET_NAMES}
    assert counts == {"media": 1, "transcript": 1, "diarization": 1, "speaker_embeddings": 1, "speaker_names": 1,
                      "alignment": 2, "combined": 2, "subtitles": 2}, counts


def test_delete_removes_the_partition_its_files_and_history(standin, tmp_path):
    deployment, instance = standin
    gone, kept = (processed(deployment, instance, tmp_path, name) for name in ("private.wav", "other.wav"))
    runs = {r.event_log_entry.run_id for r in instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("combined"), asset_partitions=[gone]), limit=10).records}
    code, data, err = cli(deployment.url, "delete", gone)
    assert code == 0, err
    assert len(data["removed"][gone]) == 11  # source, input, 8 outputs (subtitles' file list too), subtitles folder
    store = MediaStore(deployment.storage)
    assert not [p for p in store.root.rglob("*") if gone in p.name]
    assert [p for p in store.root.rglob("*") if kept in p.name]
    assert gone not in instance.get_dynamic_partitions("media_files")
    assert not any(materializations(instance, a, gone) for a in ASSET_NAMES)
    assert all(materializations(instance, a, kept) for a in ASSET_NAMES)
    for run_id in runs:  # the run's own event log no longer holds the partition's materializations
        events = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        assert not [e for e in events if e.dagster_event.partition == gone]
    code, data, err = cli(deployment.url, "list")
    assert gone not in {row["partition"] for row in data["partitions"]}


def test_delete_is_refused_while_a_run_for_the_partition_is_queued(standin, tmp_path):
    deployment, instance = standin
    instance.event_log_storage.set_concurrency_slots(GPU_POOL, 0)  # runs stay queued
    try:
        sf.write(tmp_path / "queued.wav", np.zeros(16_000, dtype=np.float32), 16_000)
        [key] = deployment.drop((tmp_path / "queued.wav", "queued.wav"))
        wait_for(lambda: instance.has_dynamic_partition("media_files", key) and
             WhisperXClient(deployment.url).partition_runs(key), 60, "run queued", deployment)
        code, data, err = cli(deployment.url, "delete", key)
        assert code == 1 and "refused: a run is in progress for " + key in data["error"], (data, err)
    finally:
        instance.event_log_storage.set_concurrency_slots(GPU_POOL, 1)
    wait_for(lambda: materializations(instance, "subtitles", key), 120, "queued run done", deployment)
    assert MediaStore(deployment.storage).source(key)  # nothing was deleted


def test_submit_stages_runs_those_and_what_they_lack(standin, tmp_path):
    deployment, instance = standin
    client = WhisperXClient(deployment.url)
    path = tmp_path / "stages.wav"
    sf.write(path, np.sin(np.arange(24_000) / 7).astype(np.float32) * 0.1, 16_000)

    def submit(stages: str) -> dict:
        code, data, err = cli(deployment.url, "submit", path, "--stages", stages, "--wait")
        assert code == 0, (data, err)
        return data[0]

    first = submit("transcript")  # a new file: its media comes first
    key = first["partition"]
    assert set(first["steps"]) == {"media", "transcript"}
    assert client.materialized(key) == ["media", "transcript"]
    assert set(submit("diarization,alignment")["steps"]) == {"diarization", "alignment"}
    again = submit("diarization")  # asked for again: run again, the rest stays as it was
    assert set(again["steps"]) == {"diarization"}
    counts = {a: materializations(instance, a, key) for a in ASSET_NAMES}
    assert counts == {"media": 1, "transcript": 1, "alignment": 1, "diarization": 2, "speaker_embeddings": 0,
                      "speaker_names": 0, "combined": 0, "subtitles": 0}, counts
    code, data, err = cli(deployment.url, "submit", path, "--stages", "transcript,subtitle")
    assert code == 2 and "comma-separated list of media,transcript" in err, (data, err)


def test_sources_outside_source_roots_are_refused_and_the_cli_copies_them_in(standin, tmp_path):
    deployment, instance = standin
    client = WhisperXClient(deployment.url)
    secret, mine = tmp_path / "secret.wav", tmp_path / "mine.wav"
    for i, path in enumerate((secret, mine)):
        sf.write(path, np.sin(np.arange(16_000) / (9 + i)).astype(np.float32) * 0.1, 16_000)

    # a launch that names a server-side file outside SOURCE_ROOTS (the inbox here) reads nothing
    source = identify(secret)
    client.add_partition(source.key)
    run_id = client.submit_job_execution(JOB, run_config={"ops": {"media": {"config": media_config(source)}}},
                                         tags={"dagster/partition": source.key})
    wait_for(lambda: client.run(run_id)["status"] in ("SUCCESS", "FAILURE"), 60, "refused run ends", deployment)
    run = client.run(run_id)
    assert run["status"] == "FAILURE" and "outside the folders this deployment reads sources from" in run["failure"]
    assert not MediaStore(deployment.storage).media_path(source.key, source.name).exists()

    code, data, err = cli(deployment.url, "submit", mine, "--wait")  # the CLI copies it in and says so
    assert code == 0 and data[0]["status"] == "SUCCESS", (data, err)
    assert f"copied {mine} into the deployment's store" in err


def latest_metadata(instance, asset: str, key: str) -> dict:
    [record] = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[key]),
                                               limit=1).records
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def test_a_supplied_transcript_and_diarization_are_the_partitions_own(standin, tmp_path):
    deployment, instance = standin
    path = tmp_path / "supplied.wav"
    sf.write(path, np.sin(np.arange(48_000) / 11).astype(np.float32) * 0.1, 16_000)
    (tmp_path / "notes.srt").write_text("1\n00:00:00,200 --> 00:00:01,200\n[Ann]: hello there friend\n\n"
                                        "2\n00:00:01,500 --> 00:00:02,800\ngood morning to you\n")
    (tmp_path / "turns.rttm").write_text("SPEAKER supplied 1 0.100 1.200 <NA> <NA> ann <NA> <NA>\n"
                                         "SPEAKER supplied 1 1.400 1.500 <NA> <NA> ben <NA> <NA>\n")
    code, data, err = cli(deployment.url, "submit", path, "--transcript", tmp_path / "notes.srt",
                          "--diarization", tmp_path / "turns.rttm", "--wait")
    assert code == 0 and data[0]["status"] == "SUCCESS", (data, err)
    key = data[0]["partition"]
    transcript = latest_metadata(instance, "transcript", key)
    assert (transcript["origin"], transcript["model"]) == ("supplied: notes.srt", "supplied:srt")
    diarization = latest_metadata(instance, "diarization", key)
    assert (diarization["origin"], diarization["speakers"]) == ("supplied: turns.rttm", 2)
    combined = pd.read_parquet(WhisperXClient(deployment.url).output_path("combined", key))
    assert list(combined["word"]) == "hello there friend good morning to you".split()
    assert list(combined["speaker"]) == ["ann"] * 3 + ["ben"] * 4

    # the partition keeps them: a later run of its transcript uses the supplied one again
    code, data, err = cli(deployment.url, "submit", path, "--stages", "transcript", "--wait")
    assert code == 0 and set(data[0]["steps"]) == {"transcript"}, (data, err)
    assert materializations(instance, "transcript", key) == 2
    assert latest_metadata(instance, "transcript", key)["origin"] == "supplied: notes.srt"

    # a file that cannot be read is refused before anything is launched, naming it and why
    (tmp_path / "bad.srt").write_text("1\n00:00:05,000 --> 00:00:04,000\nbackwards\n")
    runs = len(instance.get_run_records())
    code, data, err = cli(deployment.url, "submit", path, "--transcript", tmp_path / "bad.srt")
    assert code == 2 and "bad.srt: cue 1 ends before it starts" in data["error"], (data, err)
    assert len(instance.get_run_records()) == runs
