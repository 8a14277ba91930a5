"""The scale-out stack for real: runs, events and schedules in a PostgreSQL server, the inbox and every input
and output in buckets of an S3-compatible server (SeaweedFS), a real webserver and daemon, two runs at once
in the `gpu` pool, and the CLI against it. (Crash recovery on this stack: `test_faults.py`.)"""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import DagsterRunStatus, RunsFilter

from whisperx_assets.defs.assets import ASSET_NAMES
from whisperx_assets.defs.assets.speech import GPU_POOL
from whisperx_assets.evaluation.servers import Deployment, environment, running
from whisperx_assets.evaluation.stack import postgres_server, s3_server
from whisperx_assets.inputs.sources import location
from whisperx_assets.inputs.store import MediaStore, copy_file
from whisperx_assets_tests.api.test_api import cli
from whisperx_assets_tests.test_faults import combined_done, runs_for, wait_for

pytestmark = pytest.mark.slow

GPU_SLOTS = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(deployment, instance): Postgres and S3 storage, one run per file, the `gpu` pool at GPU_SLOTS."""
    with postgres_server() as url, s3_server() as s3, environment(s3):
        env = {"DAGSTER_POSTGRES_URL": url, **s3, "INBOX_URL": "s3://media/inbox", "STORAGE_URL": "s3://media/store",
               "BATCH_MAX_FILES": "1"}
        with running(Deployment(tmp_path_factory.mktemp("scale-out"), env),
                     lambda instance: instance.event_log_storage.set_concurrency_slots(GPU_POOL, GPU_SLOTS)) as started:
            yield started


def test_bucket_inbox_to_combined_with_two_runs_at_once(stack, dialogue, short_dialogue):
    deployment, instance = stack
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    keys = deployment.drop((dialogue.path, "first.wav"), (short_dialogue.path, "second.wav"))
    wait_for(lambda: combined_done(instance, keys), 600, "both files through subtitles", deployment, poll=1)

    def finished_runs():
        runs = [run for key in keys for run in runs_for(instance, key)]
        return runs if runs and all(run.is_finished for run in runs) else None

    runs = wait_for(finished_runs, 120, "runs finished", deployment)
    assert len(runs) == 2 and {run.status for run in runs} == {DagsterRunStatus.SUCCESS}, runs
    stats = [instance.get_run_stats(run.run_id) for run in runs]
    overlap = min(s.end_time for s in stats) - max(s.launch_time for s in stats)
    assert overlap > 0, f"the two runs did not execute at the same time: {stats}"
    print(f"two runs at once on Postgres + S3: overlapped {overlap:.1f} s; walls "
          f"{', '.join(f'{s.end_time - s.launch_time:.1f} s' for s in stats)}")

    store = MediaStore(deployment.storage)
    for key in keys:
        assert store.media_path(key, "x.wav").is_file()
        for asset in ASSET_NAMES:
            assert store.output_path(asset, key).is_file(), (asset, key)
        assert (store.subtitles_dir(key) / f"{key}.srt").read_text().startswith("1\n")
        words = store.read_output("combined", key).frame
        assert words["speaker"].notna().all() and len(words) > 10
    assert not (deployment.root / "storage").exists() and not (deployment.root / "inbox").exists()


def test_cli_against_the_stack(stack, short_dialogue, tmp_path):
    """Submit an object that is not in the inbox, follow it, list it, fetch its subtitles from the bucket."""
    deployment, instance = stack
    upload = location("s3://media/uploads/from-cli.wav")
    copy_file(location(short_dialogue.path), upload)
    code, data, err = cli(deployment.url, "submit", str(upload), "--wait")
    assert code == 0, err
    [run] = data
    assert run["status"] == "SUCCESS"
    key = run["partition"]
    code, data, err = cli(deployment.url, "list")
    assert code == 0, err
    listed = {row["partition"]: row for row in data["partitions"]}
    assert listed[key]["combined"] == "materialized"
    code, data, err = cli(deployment.url, "result", key, "--format", "srt", "-o", tmp_path / "out.srt")
    assert code == 0, err
    assert (tmp_path / "out.srt").read_text() == (MediaStore(deployment.storage).subtitles_dir(key) / f"{key}.srt").read_text()
    code, data, err = cli(deployment.url, "result", key, "--format", "parquet", "-o", tmp_path / "out.parquet")
    assert code == 0, err
    assert len(pd.read_parquet(tmp_path / "out.parquet")) > 10
    source = MediaStore(deployment.storage).source(key)
    assert source.source == str(upload)
    assert not instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
