"""Launching and following work from outside: the `whisperx-assets` CLI and raw GraphQL against a real
webserver and daemon (the shared `deployment`), URL inputs, and the failure paths."""

import http.server
import json
import re
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from whisperx_assets.evaluation.servers import REPO, free_port, graphql

CLI = str(Path(sys.executable).parent / "whisperx-assets")


def cli(url, *args, env=None, timeout=600):
    run = subprocess.run([CLI, "--url", url, "--json", *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO)
    try:
        data = json.loads(run.stdout) if run.stdout.strip() else None
    except json.JSONDecodeError:
        data = run.stdout
    return run.returncode, data, run.stderr


@pytest.fixture(scope="module")
def submitted(deployment, dialogue, tmp_path_factory):
    url, inbox, storage, root = deployment
    # a name whose key has a run id's length and dashes (36 characters, 4 dashes): `status` must still read
    # it as a partition
    path = tmp_path_factory.mktemp("submit") / "team-meeting-q3-notes12.wav"
    shutil.copy(dialogue.path, path)
    code, data, err = cli(url, "submit", path, "--wait", "--language", "en", "--num-speakers", "2")
    return code, data, err


def test_submit_and_wait(deployment, submitted):
    url, inbox, storage, root = deployment
    code, data, err = submitted
    assert code == 0, err
    [run] = data
    assert run["status"] == "SUCCESS" and run["partition"].startswith("team-meeting-q3-notes12-")
    words = pd.read_parquet(storage / "combined" / f"{run['partition']}.parquet")
    # two speakers, by their diarized labels, or by voice ids once other files of the session share their voices
    speakers = set(words["speaker"].dropna())
    assert len(speakers) == 2 and all(re.fullmatch(r"SPEAKER_\d\d|VOICE_\d{4}", s) for s in speakers), speakers
    assert "transcript: success" in err  # per-stage progress lines


def test_result_formats(deployment, submitted, tmp_path):
    url, *_ = deployment
    key = submitted[1][0]["partition"]
    code, data, err = cli(url, "result", key, "--format", "vtt", "-o", tmp_path / "out.vtt")
    assert code == 0, err
    assert (tmp_path / "out.vtt").read_text().startswith("WEBVTT")
    code, data, err = cli(url, "result", key, "--format", "parquet", "-o", tmp_path / "out.parquet")
    assert code == 0 and len(pd.read_parquet(tmp_path / "out.parquet")) > 50


def test_status_and_list(deployment, submitted):
    url, *_ = deployment
    run = submitted[1][0]
    code, data, err = cli(url, "status", run["run_id"])
    assert code == 0 and data["status"] == "SUCCESS" and data["steps"]["combined"] == "SUCCESS"
    assert len(run["partition"]) == len(run["run_id"]) and run["partition"].count("-") == run["run_id"].count("-")
    code, data, err = cli(url, "status", run["partition"])
    assert code == 0 and data["run_id"] == run["run_id"], (data, err)
    code, data, err = cli(url, "list")
    row = next(r for r in data["partitions"] if r["partition"] == run["partition"])
    assert row["combined"] == "materialized" and row["media"] == "materialized"


LAUNCH = """
mutation ($selector: JobOrPipelineSelector!, $runConfig: RunConfigData, $tags: [ExecutionTag!]) {
  launchRun(executionParams: {selector: $selector, runConfigData: $runConfig, executionMetadata: {tags: $tags}}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

ADD = """
mutation ($key: String!) {
  addDynamicPartition(repositorySelector: {repositoryLocationName: "whisperx_assets", repositoryName: "__repository__"},
                      partitionsDefName: "media_files", partitionKey: $key) { __typename }
}"""


def test_raw_graphql(deployment, sample):
    """What the README's curl examples do: add a partition, launch the job for it (naming a file in a folder of
    SOURCE_ROOTS), poll its status."""
    url, inbox, storage, root = deployment
    from whisperx_assets.inputs.sources import identify

    shutil.copy(sample.path, root / "library" / "sample.wav")
    source = identify(root / "library" / "sample.wav")
    key = source.key
    assert graphql(url, ADD, {"key": key})["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess"
    assert graphql(url, ADD, {"key": key})["addDynamicPartition"]["__typename"] == "DuplicateDynamicPartitionError"
    launched = graphql(url, LAUNCH, {
        "selector": {"repositoryLocationName": "whisperx_assets", "repositoryName": "__repository__",
                     "jobName": "process_media"},
        "runConfig": {"ops": {"media": {"config": {"source": source.source, "sha256": source.sha256}}}},
        "tags": [{"key": "dagster/partition", "value": key}]})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 300
    status = None
    while time.monotonic() < deadline and status not in ("SUCCESS", "FAILURE"):
        time.sleep(2)
        status = graphql(url, "query ($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                         {"id": run_id})["runOrError"]["status"]
    assert status == "SUCCESS"
    assert (storage / "subtitles" / key / f"{key}.srt").is_file()


def test_invalid_run_config_is_rejected_before_the_run(deployment):
    url, *_ = deployment
    launched = graphql(url, LAUNCH, {
        "selector": {"repositoryLocationName": "whisperx_assets", "repositoryName": "__repository__",
                     "jobName": "process_media"},
        "runConfig": {"resources": {"whisperx": {"config": {"beam_size": "five"}}}},
        "tags": [{"key": "dagster/partition", "value": "x-0123456789ab"}]})["launchRun"]
    assert launched["__typename"] == "RunConfigValidationInvalid"


def test_invalid_option_is_rejected_by_the_cli(deployment, dialogue):
    url, *_ = deployment
    code, data, err = cli(url, "submit", dialogue.path, "--vad-onset", "1.5")
    assert code == 2 and "vad_onset must be in (0, 1)" in data["error"]


def test_bad_file_fails_with_reason(deployment, tmp_path):
    url, *_ = deployment
    bad = tmp_path / "corrupt.mp3"
    bad.write_bytes(b"\xff\xfb" + os.urandom(2000))
    code, data, err = cli(url, "submit", bad, "--wait")
    assert code == 1
    key = data[0]["partition"]
    code, status, err = cli(url, "status", key)
    assert code == 1 and status["status"] == "FAILURE"
    assert status["failure"].startswith("media:") and "corrupt.mp3" in status["failure"]
    code, data, err = cli(url, "list")
    row = next(r for r in data["partitions"] if r["partition"] == key)
    assert row["media"] == "failed" and "corrupt.mp3" in row["failure"]
    code, data, err = cli(url, "backfill", "--failed")
    assert code == 0 and key in data["partitions"] and data["backfill_id"]


def test_unknown_run_and_partition(deployment):
    url, *_ = deployment
    assert cli(url, "status", "nothing-0123456789ab")[0] == 4
    assert cli(url, "status", "00000000-0000-0000-0000-000000000000")[0] == 4
    assert cli(url, "result", "nothing-0123456789ab")[0] == 4


@pytest.fixture(scope="module")
def many_partitions(tmp_path_factory):
    """(url, partition keys in the order added) of a webserver over 250 partitions: the newest three with
    `media` materialized, the 200 before them in a run that failed at `transcript` (its failure comes after more
    than a thousand events: the planned assets of its files first)."""
    from dagster import AssetKey, AssetMaterialization, DagsterInstance

    from bench.scale import batched_event_writes, record_run_done
    from whisperx_assets.definitions import defs
    from whisperx_assets.defs.jobs import RANGE_END, RANGE_START, process_media_job
    from whisperx_assets.evaluation.servers import Deployment

    deployment = Deployment(tmp_path_factory.mktemp("many-partitions"))
    keys = [f"call-{i:03d}-0123456789ab" for i in range(250)]
    with DagsterInstance.from_config(str(deployment.home)) as instance:
        instance.add_dynamic_partitions("media_files", keys)
        for key in keys[-3:]:
            instance.report_runless_asset_event(AssetMaterialization(AssetKey("media"), partition=key))
        job = defs.resolve_job_def(process_media_job.name)
        with batched_event_writes(instance):
            run = instance.create_run_for_job(job_def=job, tags={RANGE_START: keys[-203], RANGE_END: keys[-4]})
            record_run_done(instance, run, keys[-203:-3], failed=True)
    deployment.start_webserver()
    try:
        yield deployment.url, keys
    finally:
        deployment.stop()


@pytest.mark.slow
def test_list_pages_through_the_partitions_newest_first(many_partitions):
    url, keys = many_partitions
    pages, cursor = [], None
    while True:
        code, data, err = cli(url, "list", "--limit", "100", *(["--cursor", cursor] if cursor else []))
        assert code == 0, err
        pages.append(data["partitions"])
        if not (cursor := data["cursor"]):
            break
    assert [len(page) for page in pages] == [100, 100, 50]
    assert [row["partition"] for page in pages for row in page] == keys[::-1]
    rows = {row["partition"]: row for page in pages for row in page}
    assert rows[keys[-1]]["media"] == "materialized" and rows[keys[-1]]["combined"] == "missing"
    for failed in (rows[key] for key in keys[-203:-3]):
        assert failed["media"] == "materialized" and failed["transcript"] == failed["combined"] == "failed"
        assert failed["failure"] == "transcript: RuntimeError: stand-in failure"
    assert rows[keys[-204]]["media"] == "missing" and "failure" not in rows[keys[-204]]
    code, data, err = cli(url, "list", "--limit", "0")
    assert code == 2


@pytest.mark.slow
def test_failed_partitions_and_all_partitions_for_backfills(many_partitions):
    from whisperx_assets.api.client import WhisperXClient

    url, keys = many_partitions
    client = WhisperXClient(url)
    assert sorted(client.failed_partitions()) == sorted(keys[-203:-3])
    assert client.partition_keys() == keys


def test_server_not_running():
    code, data, err = cli(f"http://127.0.0.1:{free_port()}", "list")
    assert code == 3 and "cannot reach the Dagster webserver" in data["error"]


class MediaHandler(http.server.BaseHTTPRequestHandler):
    payload = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def media_server(dialogue):
    MediaHandler.payload = Path(dialogue.path).read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MediaHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_to_loopback_is_blocked(deployment, media_server):
    url, *_ = deployment
    code, data, err = cli(url, "submit", f"{media_server}/talk.wav", "--wait")
    assert code == 1
    assert "talk.wav" in data[0]["failure"] and "loopback" in data[0]["failure"].lower()


def test_oversized_download_is_refused(media_server, tmp_path):
    """One-shot processing with loopback allowed but a 10 kB limit: the download is refused, nothing kept."""
    env = {"FETCH_ALLOW_PRIVATE_ADDRESSES": "1", "FETCH_MAX_BYTES": "10000", "STORAGE_URL": str(tmp_path / "s")}
    code, data, err = cli("http://unused", "process", f"{media_server}/big.wav", "--out", tmp_path / "out", env=env)
    assert code == 1
    assert "big.wav" in data[0]["failure"] and "10000" in data[0]["failure"]
    store = tmp_path / "s"
    assert (store / "sources").is_dir()  # the run used this store: the refusal kept nothing in it
    assert [p.relative_to(store).parts[0] for p in store.rglob("*") if p.is_file()] == ["sources"]


def test_process_one_shot(dialogue, tmp_path, speech_config):
    env = {"WHISPERX_ASSETS_CACHE": str(speech_config.cache_dir)}
    code, data, err = cli("http://unused", "process", dialogue.path, "--out", tmp_path / "out", "--num-speakers", "2",
                          env=env)
    assert code == 0, err
    [summary] = data
    assert summary["status"] == "SUCCESS" and summary["speakers"] == 2 and summary["language"] == "en"
    assert {p.name for p in (tmp_path / "out").iterdir()} == {f"dialogue.{e}" for e in
                                                              ("srt", "vtt", "txt", "tsv", "json", "aud", "parquet")}
    # progress per file and stage on stderr, not Dagster's debug log
    progress = [line for line in err.splitlines() if line.startswith("dialogue.wav: ")]
    steps = [line.split(": ")[1].split(" ")[0] for line in progress]
    assert steps[:1] == ["media"] and {"transcript", "alignment", "diarization", "combined", "subtitles"} <= set(steps)
    assert all(" done (" in line and line.endswith(" s)") for line in progress), err[-3000:]
    assert steps.index("transcript") < steps.index("combined") < steps.index("subtitles")
    assert " - DEBUG - " not in err and "STEP_START" not in err
