"""Fault injection against a real webserver and daemon with the real models on short audio: processes are
killed with SIGKILL as a crash would, the store fills up, files vanish. Each test asserts recovery within
its bound, the final state of every file, and that nothing was lost or done twice (each asset of each file
materialized exactly once, finished files' outputs never rewritten). Recovery times are printed."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus, RunsFilter

from whisperx_assets.defs.assets import ASSET_NAMES
from whisperx_assets.defs.jobs import run_keys
from whisperx_assets.defs.launcher import worker_process
from whisperx_assets.defs.speakers import RELABEL_TAG
from whisperx_assets.inputs.sources import identify
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.evaluation.servers import Deployment, descendants, environment, graphql, running
from whisperx_assets.evaluation.stack import postgres_server, s3_server

pytestmark = pytest.mark.slow

DETECTION_BOUND_S = 120  # an interrupted run is marked failed within this of the deployment being up again


@contextlib.contextmanager
def fault_deployment(root: Path, env: dict | None = None):
    """(deployment, instance) with short retry waits."""
    with running(Deployment(root, env={"RETRY_INITIAL_INTERVAL": "1", **(env or {})})) as started:
        yield started


# The embedded default; the scale-out stack (runs, events and run monitoring in a real PostgreSQL server, the inbox
# and the store in buckets of a real S3-compatible server).
STACKS = ("sqlite-local", "postgres-s3")


@pytest.fixture(scope="module")
def faults(request, tmp_path_factory):
    """One deployment on one of the STACKS (the test's parameter; sqlite-local unless given), shared by the
    module's tests on that stack. Tests are grouped by stack, so one deployment runs at a time."""
    stack = getattr(request, "param", "sqlite-local")
    root = tmp_path_factory.mktemp(stack)
    if stack == "sqlite-local":
        with fault_deployment(root) as running:
            yield running
        return
    with postgres_server() as url, s3_server() as s3, environment(s3):
        env = {"DAGSTER_POSTGRES_URL": url, **s3, "INBOX_URL": "s3://faults/inbox", "STORAGE_URL": "s3://faults/store"}
        with fault_deployment(root, env) as running:
            instance = running[1]
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            yield running


# Crash recovery also on the scale-out stack: where the instance keeps its state and the store its files is
# what these two rely on most. The other tests name sqlite-local too, so that pytest groups them with these.
BOTH_STACKS = pytest.mark.parametrize("faults", list(STACKS), indirect=True)
SQLITE_LOCAL = pytest.mark.parametrize("faults", ["sqlite-local"], indirect=True)


def drop(deployment: Deployment, source: Path, name: str) -> str:
    """Put a file into the inbox whole; its partition key."""
    return deployment.drop((source, name))[0]


def wait_for(predicate, timeout: float, what: str, deployment: Deployment, poll: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"{what}: not within {timeout:.0f} s\n{deployment.log_tail()}")


def runs_for(instance: DagsterInstance, key: str) -> list:
    """Every run of the job that processes partition `key` (single or range), oldest first: not the runs that only
    re-name its speakers."""
    order = instance.get_dynamic_partitions(media_files.name)
    position = {k: i for i, k in enumerate(order)}
    return [run for run in instance.get_runs(filters=RunsFilter(job_name="process_media"))
            if key in run_keys(run.tags, order, position) and RELABEL_TAG not in run.tags][::-1]


def step_running(instance: DagsterInstance, key: str, step: str):
    """The run of `key` that is executing `step` now, if any."""
    for run in runs_for(instance, key):
        if run.status == DagsterRunStatus.STARTED and any(
                s.step_key == step and s.start_time and not s.end_time for s in instance.get_run_step_stats(run.run_id)):
            return run
    return None


def materializations(instance: DagsterInstance, asset: str, key: str) -> list:
    return instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[key]),
                                           limit=100).records


def combined_done(instance: DagsterInstance, keys: list[str]) -> bool:
    return all(materializations(instance, "subtitles", key) for key in keys)


def assert_done_once(instance: DagsterInstance, keys: list[str]) -> None:
    """Every asset of every file materialized exactly once by the runs that process files: nothing lost, nothing
    done twice. (`speakers_sensor` re-names files whose voice recurs in others: those runs re-materialize the
    naming assets on purpose, and are tagged so.)"""
    relabels: dict[str, bool] = {}

    def processing(record) -> bool:
        run_id = record.event_log_entry.run_id
        if run_id not in relabels:
            relabels[run_id] = RELABEL_TAG in instance.get_run_by_id(run_id).tags
        return not relabels[run_id]

    counts = {key: {asset: len([r for r in materializations(instance, asset, key) if processing(r)])
                    for asset in ASSET_NAMES} for key in keys}
    assert all(n == 1 for per_key in counts.values() for n in per_key.values()), counts


def retry_of(instance: DagsterInstance, run_id: str):
    runs = instance.get_runs(filters=RunsFilter(tags={"dagster/parent_run_id": run_id}))
    return runs[0] if runs else None


@BOTH_STACKS
def test_run_worker_killed_mid_stage(faults, short_dialogue):
    """SIGKILL the run process while it transcribes: the code server reports the run failed, Dagster's run
    retry re-executes it from the failed step; `media` is not redone."""
    deployment, instance = faults
    key = drop(deployment, short_dialogue.path, "worker-killed.wav")
    run = wait_for(lambda: step_running(instance, key, "transcript"), 180, "transcript started", deployment)
    time.sleep(1.0)
    pid, _ = worker_process(instance, run.run_id)
    os.kill(pid, 9)
    killed = time.monotonic()
    wait_for(lambda: instance.get_run_by_id(run.run_id).is_finished, 60, "crashed run marked failed", deployment)
    detected = time.monotonic() - killed
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    retry = wait_for(lambda: retry_of(instance, run.run_id), 60, "run retry created", deployment)
    wait_for(lambda: instance.get_run_by_id(retry.run_id).is_finished, 300, "retry finished", deployment)
    recovered = time.monotonic() - killed
    assert instance.get_run_by_id(retry.run_id).status == DagsterRunStatus.SUCCESS
    assert "media" not in {s.step_key for s in instance.get_run_step_stats(retry.run_id)}  # not redone
    assert_done_once(instance, [key])
    print(f"worker SIGKILL mid-transcript: marked failed after {detected:.1f} s, recovered (combined) after "
          f"{recovered:.1f} s; redone: the transcript step of this file")


@BOTH_STACKS
def test_whole_deployment_killed_mid_batch_then_restarted(faults, sample, short_dialogue):
    """SIGKILL every process (power loss) while a batch run transcribes its second file; start the deployment
    again. Run monitoring finds the run's worker gone and marks it failed, its `gpu` slot is freed, the run
    retry resumes it and keeps the first file's finished transcript; a file dropped after the restart runs."""
    deployment, instance = faults
    keys = deployment.drop((short_dialogue.path, "power-a.wav"), (sample.path, "power-b.wav"))
    first = deployment.storage / "transcript" / f"{keys[0]}.parquet"
    run = wait_for(lambda: first.exists() and step_running(instance, keys[1], "transcript"), 240,
                   "first file transcribed, second in progress", deployment, poll=0.1)
    finished_before = first.stat().st_mtime
    deployment.kill_all()
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED  # nobody left to say otherwise
    deployment.start()
    up = time.monotonic()
    late = drop(deployment, short_dialogue.path, "after-restart.wav")
    wait_for(lambda: instance.get_run_by_id(run.run_id).is_finished, DETECTION_BOUND_S, "interrupted run marked failed",
             deployment, poll=1)
    detected = time.monotonic() - up
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    wait_for(lambda: combined_done(instance, [*keys, late]), 400, "every file done after the restart", deployment,
             poll=1)
    recovered = time.monotonic() - up
    retry = retry_of(instance, run.run_id)
    assert retry is not None
    wait_for(lambda: instance.get_run_by_id(retry.run_id).is_finished, 60, "retry finished", deployment)
    assert instance.get_run_by_id(retry.run_id).status == DagsterRunStatus.SUCCESS
    assert first.stat().st_mtime == finished_before  # the first file's transcript was kept, not redone
    assert_done_once(instance, [*keys, late])
    print(f"whole deployment SIGKILL mid-batch: after restart, marked failed in {detected:.1f} s, every file "
          f"(and one dropped after the restart) done in {recovered:.1f} s; redone: the second file's transcript")


@SQLITE_LOCAL
def test_daemon_killed_while_files_are_pending(faults, short_dialogue):
    """SIGKILL the daemon alone while a run transcribes and before another file is picked up: the run goes on
    under its code server and is not mistaken for a crashed one; the restarted daemon picks up the new file."""
    deployment, instance = faults
    key = drop(deployment, short_dialogue.path, "daemon-killed.wav")
    run = wait_for(lambda: step_running(instance, key, "transcript"), 180, "transcript started", deployment)
    deployment.kill_daemon_process()
    pending = drop(deployment, short_dialogue.path, "while-daemon-down.wav")
    time.sleep(5)
    deployment.start_daemon()
    up = time.monotonic()
    wait_for(lambda: combined_done(instance, [key, pending]), 400, "both files done", deployment, poll=1)
    runs = {r.run_id: r for k in (key, pending) for r in runs_for(instance, k)}
    wait_for(lambda: all(instance.get_run_by_id(r).is_finished for r in runs), 60, "runs finished", deployment)
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS  # never marked failed
    assert {instance.get_run_by_id(r).status for r in runs} == {DagsterRunStatus.SUCCESS}, runs
    assert_done_once(instance, [key, pending])
    print(f"daemon SIGKILL with a run in progress and a file pending: both files done {time.monotonic() - up:.1f} s "
          "after the daemon restart; nothing redone")


@SQLITE_LOCAL
def test_code_server_killed_mid_stage(faults, dialogue, short_dialogue):
    """SIGKILL the daemon's code servers while a run transcribes: the run worker lives on and finishes (run
    monitoring sees it alive, so it is not failed or run twice); the daemon starts a new code server and the
    next file is processed."""
    deployment, instance = faults
    key = drop(deployment, dialogue.path, "code-server-killed.wav")
    run = wait_for(lambda: step_running(instance, key, "transcript"), 180, "transcript started", deployment)
    servers = [pid for pid in descendants(deployment.daemon.pid) if b"api\x00grpc" in cmdline(pid)]
    assert servers
    for pid in servers:
        os.kill(pid, 9)
    killed = time.monotonic()
    after = drop(deployment, short_dialogue.path, "after-code-server.wav")
    wait_for(lambda: combined_done(instance, [key, after]), 400, "both files done", deployment, poll=1)
    runs = {r.run_id for k in (key, after) for r in runs_for(instance, k)}
    wait_for(lambda: all(instance.get_run_by_id(r).is_finished for r in runs), 60, "runs finished", deployment)
    assert {instance.get_run_by_id(r).status for r in runs} == {DagsterRunStatus.SUCCESS}
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS
    assert_done_once(instance, [key, after])
    print(f"code server SIGKILL mid-transcript: the run finished on its own; both files done "
          f"{time.monotonic() - killed:.1f} s after the kill; nothing redone")


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@SQLITE_LOCAL
def test_file_vanishing_before_ingestion(faults, short_dialogue):
    """A file deleted from the inbox after the sensor registered it but before its run ingests it: that file
    fails once with a clear reason; the other file of the batch is done, keeping its finished `media`."""
    deployment, instance = faults
    staging = deployment.inbox / ".vanish"
    staging.mkdir()
    shutil.copy(short_dialogue.path, staging / "stays.wav")
    (staging / "vanishes.wav").write_bytes(short_dialogue.path.read_bytes()[:-4000])  # other bytes, another key
    for path in sorted(staging.iterdir()):
        path.rename(deployment.inbox / path.name)
    keys = [identify(deployment.inbox / n).key for n in ("stays.wav", "vanishes.wav")]
    wait_for(lambda: instance.has_dynamic_partition(media_files.name, keys[1]), 60, "partition added", deployment,
             poll=0.05)
    (deployment.inbox / "vanishes.wav").unlink()
    wait_for(lambda: combined_done(instance, keys[:1]), 300, "the other file done", deployment, poll=1)
    failed = wait_for(lambda: [r for r in runs_for(instance, keys[1]) if r.tags.get("dagster/partition") == keys[1]
                               and r.is_finished], 120, "the vanished file's own run", deployment)
    assert failed[0].status == DagsterRunStatus.FAILURE
    failure = client_failure(deployment, failed[0].run_id)
    assert "vanishes.wav" in failure and "moved or deleted before it was ingested" in failure
    assert not (deployment.storage / "inputs" / f"{keys[1]}.wav").exists()
    assert_done_once(instance, keys[:1])


def client_failure(deployment: Deployment, run_id: str) -> str:
    from whisperx_assets.api.client import WhisperXClient

    return WhisperXClient(deployment.url).run(run_id)["failure"] or ""


REEXECUTE = """
mutation ($parent: String!) {
  launchRunReexecution(reexecutionParams: {parentRunId: $parent, strategy: FROM_FAILURE}) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  }
}"""


@SQLITE_LOCAL
def test_store_full_then_freed(faults, short_dialogue):
    """The store's subtitles folder is a full tmpfs: the step retries, then fails naming the cause, with no
    partial file; once space is freed, re-executing the run from failure finishes the file without redoing
    the finished stages."""
    deployment, instance = faults
    folder = deployment.storage / "subtitles"
    folder.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        filler = folder / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
        key = drop(deployment, short_dialogue.path, "disk-full.wav")
        run = wait_for(lambda: next((r for r in runs_for(instance, key) if r.is_finished), None), 300,
                       "the run ended", deployment, poll=1)
        assert run.status == DagsterRunStatus.FAILURE
        failure = client_failure(deployment, run.run_id)
        assert failure.startswith("subtitles:") and "the store is full or read-only" in failure
        assert [p for p in folder.rglob("*") if p.is_file()] == [filler]  # no partial file
        filler.unlink()
        result = graphql(deployment.url, REEXECUTE, {"parent": run.run_id})["launchRunReexecution"]
        assert result["__typename"] == "LaunchRunSuccess", result
        retry = result["run"]["runId"]
        wait_for(lambda: instance.get_run_by_id(retry).is_finished, 300, "re-execution finished", deployment)
        assert instance.get_run_by_id(retry).status == DagsterRunStatus.SUCCESS
        assert {s.step_key for s in instance.get_run_step_stats(retry)} == {"subtitles"}
        assert (folder / key / f"{key}.srt").stat().st_size > 0
        assert_done_once(instance, [key])
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
