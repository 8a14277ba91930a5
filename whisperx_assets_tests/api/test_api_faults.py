"""Nothing lost, nothing doubled: the same file submitted twice at once gives one partition, one run and one
result; `submit --wait` rides out a webserver restart and follows Dagster's retry of a crashed run."""

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import requests
from dagster_graphql import DagsterGraphQLClientError

from whisperx_assets.api.cli import EXIT_UNREACHABLE, CliError, main, wait_for
from whisperx_assets.api.client import TERMINAL, WhisperXClient, leading_claim, options_hash, reusable_run
from whisperx_assets.evaluation.servers import REPO, graphql, restart_webserver

CLI = str(Path(sys.executable).parent / "whisperx-assets")

PARTITION_RUNS = """
query ($key: String!) {
  runsOrError(filter: {tags: [{key: "dagster/partition", value: $key}]}) { ... on Runs { results { runId status } } }
  assetNodeOrError(assetKey: {path: ["media"]}) { ... on AssetNode { partitionKeys } }
  assetOrError(assetKey: {path: ["combined"]}) { ... on Asset { assetMaterializations(partitions: [$key]) { runId } } }
}"""


def run_main(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(map(str, argv)))
    return code, out.getvalue(), err.getvalue()


def settle(client: WhisperXClient, run_id: str, timeout: float = 400) -> str:
    deadline = time.monotonic() + timeout
    while (status := client.run(run_id)["status"]) not in TERMINAL and time.monotonic() < deadline:
        time.sleep(1)
    return status


# --- against the real deployment ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def raced(deployment, dialogue, tmp_path_factory):
    """Two submissions of one file at the same moment, followed to the end."""
    url, *_ = deployment
    path = tmp_path_factory.mktemp("race") / "race.wav"
    shutil.copy(dialogue.path, path)
    gate = threading.Barrier(2)

    def submit():
        client = WhisperXClient(url)  # one HTTP session per thread
        gate.wait()
        return client.submit(str(path))

    with ThreadPoolExecutor(2) as pool:
        first, second = [f.result() for f in [pool.submit(submit), pool.submit(submit)]]
    client = WhisperXClient(url)
    return path, first, second, client, settle(client, first.run_id)


def test_simultaneous_submissions_share_one_partition_and_run(deployment, raced):
    url, inbox, storage, root = deployment
    path, first, second, client, status = raced
    assert status == "SUCCESS"
    assert first.run_id == second.run_id and sorted([first.existing, second.existing]) == [False, True]
    data = graphql(url, PARTITION_RUNS, {"key": first.partition_key})
    assert [k for k in data["assetNodeOrError"]["partitionKeys"] if k.startswith("race-")] == [first.partition_key]
    assert [r["runId"] for r in data["runsOrError"]["results"]] == [first.run_id]
    assert [m["runId"] for m in data["assetOrError"]["assetMaterializations"]] == [first.run_id]
    assert (storage / "combined" / f"{first.partition_key}.parquet").is_file()


def test_resubmitting_a_done_file_returns_its_run(deployment, raced):
    url, *_ = deployment
    path, first, _, client, _ = raced
    again = client.submit(str(path), grace=0)
    assert again.existing and again.run_id == first.run_id
    code, out, err = run_main("--url", url, "submit", path)
    assert code == 0 and out.split("\t")[1] == first.run_id and "(already submitted)" in out
    code, out, err = run_main("--url", url, "--json", "submit", path)
    [submission] = json.loads(out)
    assert submission["existing"] and submission["run_id"] == first.run_id
    assert len(client.partition_runs(first.partition_key)) == 1


@pytest.fixture(scope="module")
def forced(deployment, raced, tmp_path_factory):
    """`submit --force --wait` of the done file in a subprocess, once its new run is under way."""
    url, *_ = deployment
    path = raced[0]
    errors = tmp_path_factory.mktemp("forced") / "stderr"
    with errors.open("w") as stderr:
        waiting = subprocess.Popen([CLI, "--url", url, "--json", "submit", path, "--force", "--wait"],
                                   stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=REPO, env=os.environ)
    deadline = time.monotonic() + 120
    while " media: " not in errors.read_text() and waiting.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)  # until a step's progress shows: the run holds the `gpu` pool and is being followed
    yield waiting, errors
    waiting.kill()


def test_other_options_launch_a_new_run(deployment, raced, forced):
    url, *_ = deployment
    path, first, _, client, _ = raced
    code, out, err = run_main("--url", url, "--json", "submit", path, "--language", "en")
    [other] = json.loads(out)
    assert code == 0 and not other["existing"] and other["run_id"] != first.run_id
    assert client.run(other["run_id"])["tags"]["whisperx_assets/options"] == options_hash({"language": "en"})
    client.terminate_run(other["run_id"])  # still queued behind the forced run: it only shows a launch
    assert settle(client, other["run_id"]) == "CANCELED"


def test_force_launches_and_wait_survives_a_webserver_restart(deployment, raced, forced):
    url, *_ = deployment
    first, client = raced[1], raced[3]
    waiting, errors = forced
    restart_webserver(url, down_for=6)
    out, _ = waiting.communicate(timeout=500)
    err = errors.read_text()
    assert waiting.returncode == 0, err
    [result] = json.loads(out)
    assert result["status"] == "SUCCESS" and not result["existing"] and result["run_id"] != first.run_id
    assert "lost the connection" in err and "is back" in err
    assert len(client.partition_runs(first.partition_key)) == 3  # the first, the other options', the forced


# --- without a server ---------------------------------------------------------------------------------


def test_options_hash_is_stable_and_empty_for_defaults():
    assert options_hash(None) == options_hash({}) == ""
    assert options_hash({"language": "en", "beam_size": 3}) == options_hash({"beam_size": 3, "language": "en"})
    assert options_hash({"language": "en"}) != options_hash({"language": "fr"})


def run_of(run_id, status, **tags):
    return {"runId": run_id, "status": status, "tags": tags}


@pytest.mark.parametrize("runs, expected", [
    ([run_of("a", "SUCCESS")], "a"),  # no tag: the defaults (an inbox sensor run)
    ([run_of("b", "QUEUED", **{"whisperx_assets/options": ""}), run_of("a", "SUCCESS")], "b"),
    ([run_of("b", "FAILURE"), run_of("a", "SUCCESS")], None),  # the newest of these options failed: retry
    ([run_of("b", "CANCELED"), run_of("a", "SUCCESS")], None),
    ([run_of("b", "FAILURE", **{"dagster/will_retry": "true"})], "b"),  # its retry is coming
    ([run_of("b", "FAILURE", **{"whisperx_assets/options": "x"}), run_of("a", "STARTED")], "a"),
    ([run_of("b", "SUCCESS", **{"whisperx_assets/options": "x"}), run_of("a", "SUCCESS")], None),  # now x's results
    ([], None),
])
def test_reusable_run(runs, expected):
    assert reusable_run(runs, "") == expected


def test_the_first_recent_claim_for_the_same_launch_leads():
    def claim(seconds, token, options="", after=""):
        return {"timestamp": str(seconds * 1000),
                "description": json.dumps({"submission": token, "options": options, "after": after})}

    newest_first = [claim(112, "late"), claim(111, "other", options="x"), claim(110, "mine"),
                    {"timestamp": "109000", "description": "a user's note"}, claim(108, "prior", after="run-1"),
                    claim(105, "first"), claim(90, "stale")]  # "stale": a submitter that died before launching
    assert leading_claim(newest_first, "mine", grace=15) == leading_claim(newest_first, "late", grace=15) == "first"
    assert leading_claim(newest_first, "other", grace=15) == "other"
    assert leading_claim(newest_first, "prior", grace=15) == "prior"


def test_a_lost_unique_insert_counts_as_existing(monkeypatch):
    client = WhisperXClient("http://127.0.0.1:1")
    answer = {"__typename": "PythonError", "message": "sqlite3.IntegrityError: UNIQUE constraint failed"}
    monkeypatch.setattr(client, "query", lambda *a: {"addDynamicPartition": answer})
    assert client.add_partition("x-0123456789ab") is False
    answer = {"__typename": "PythonError", "message": "disk I/O error"}
    with pytest.raises(DagsterGraphQLClientError):
        client.add_partition("x-0123456789ab")


class ScriptedClient:
    """Answers `run(run_id)` from a script per run id (the last answer repeats); None = connection refused."""

    url = "http://fake"

    def __init__(self, script: dict[str, list]):
        self.script = script

    def run(self, run_id):
        answers = self.script[run_id]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if answer is None:
            try:
                raise requests.exceptions.ConnectionError("refused")
            except requests.exceptions.ConnectionError as exc:
                raise DagsterGraphQLClientError("Error when connecting") from exc
        status, tags = answer
        return {"run_id": run_id, "status": status, "partition": "p", "steps": {}, "failure": None, "tags": tags}


def test_wait_follows_an_automatic_retry(capsys):
    crashed = {"dagster/will_retry": "true"}
    retried = {**crashed, "dagster/auto_retry_run_id": "b"}
    c = ScriptedClient({"a": [("STARTED", {}), ("FAILURE", crashed), ("FAILURE", retried)],
                        "b": [("STARTED", {}), ("SUCCESS", {})]})
    run = wait_for(c, "a", poll=0)
    assert run["run_id"] == "b" and run["status"] == "SUCCESS"
    assert "run a crashed; following its retry b" in capsys.readouterr().err


def test_wait_ends_at_a_failure_without_retry():
    c = ScriptedClient({"a": [("FAILURE", {"dagster/will_retry": "false"})]})
    assert wait_for(c, "a", poll=0)["status"] == "FAILURE"
    c = ScriptedClient({"a": [("FAILURE", {"dagster/will_retry": "true"})]})  # the retry never comes
    assert wait_for(c, "a", poll=0.01, reconnect_timeout=0.05)["status"] == "FAILURE"


def test_wait_rides_out_a_lost_connection(capsys):
    c = ScriptedClient({"a": [("STARTED", {}), None, None, ("SUCCESS", {})]})
    assert wait_for(c, "a", poll=0)["status"] == "SUCCESS"
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "connection" in line] == [
        "lost the connection to http://fake; retrying for up to 300 s", "connection to http://fake is back"]
    c = ScriptedClient({"a": [None]})
    with pytest.raises(CliError) as raised:
        wait_for(c, "a", poll=0.01, reconnect_timeout=0.05)
    assert raised.value.code == EXIT_UNREACHABLE
