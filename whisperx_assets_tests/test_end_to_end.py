"""The real thing: dagster-webserver and dagster-daemon on a temporary DAGSTER_HOME; a file dropped into
the inbox becomes a partition whose `combined` asset gets materialized, seen through the GraphQL API."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    # A new session (process group) so the whole tree is stopped together; default signal handling restored
    # because a background shell may have left SIGINT/SIGTERM ignored.
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True,
                            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, []))


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("deployment")
    home, inbox, storage = root / "home", root / "inbox", root / "storage"
    for folder in (home, inbox, storage):
        folder.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "INBOX_DIR": str(inbox), "STORAGE_DIR": str(storage),
           "SENSOR_INTERVAL": "2", "SENSOR_SETTLE_SECONDS": "1", "PYANNOTE_METRICS_ENABLED": "0"}
    webserver = start([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
                      env, root / "webserver.log")
    daemon = start([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, root / "daemon.log")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or webserver.poll() is not None:
                    raise RuntimeError((root / "webserver.log").read_text()[-3000:])
                time.sleep(1)
        yield url, inbox, storage, root
    finally:
        stop(daemon)
        stop(webserver)


MATERIALIZATIONS = """
query ($partitions: [String!]) {
  assetOrError(assetKey: {path: ["combined"]}) {
    ... on Asset { assetMaterializations(partitions: $partitions) { partition runId } }
  }
}"""

STAGE_SECONDS = """
query ($partitions: [String!]) {
  assetNodes(assetKeys: [{path: ["transcript"]}, {path: ["alignment"]}, {path: ["diarization"]}, {path: ["combined"]}]) {
    assetKey { path }
    assetMaterializations(partitions: $partitions) {
      metadataEntries { label ... on FloatMetadataEntry { floatValue } }
    }
  }
}"""

RUN = """
query ($runId: ID!) { runOrError(runId: $runId) { ... on Run { status stats { ... on RunStatsSnapshot { startTime endTime } } } } }
"""


def test_dropped_file_is_processed_to_combined(deployment, dialogue):
    url, inbox, storage, root = deployment
    # Write under a hidden name, then rename: the sensor never sees a half-written file.
    partial = inbox / ".upload.wav"
    shutil.copy(dialogue.path, partial)
    landed = time.time()
    partial.rename(inbox / "standup.wav")
    deadline = time.monotonic() + 400
    materialized = []
    while time.monotonic() < deadline and not materialized:
        time.sleep(2)
        keys = [p.stem for p in (storage / "sources").glob("*.json")] if (storage / "sources").is_dir() else []
        if keys:
            data = graphql(url, MATERIALIZATIONS, {"partitions": keys})
            materialized = data["assetOrError"]["assetMaterializations"]
    if not materialized:
        pytest.fail("combined was not materialized in time; daemon log:\n" + (root / "daemon.log").read_text()[-4000:])
    elapsed = time.time() - landed
    key = materialized[0]["partition"]
    assert key.startswith("standup-")
    assert (storage / "combined" / f"{key}.parquet").is_file()
    assert (storage / "subtitles" / key / f"{key}.srt").is_file()
    run = graphql(url, RUN, {"runId": materialized[0]["runId"]})["runOrError"]
    assert run["status"] in ("SUCCESS", "STARTED")  # combined is done; subtitles may still be finishing
    stages = graphql(url, STAGE_SECONDS, {"partitions": [key]})["assetNodes"]
    model_work = {n["assetKey"]["path"][0]: next(e["floatValue"] for e in n["assetMaterializations"][0]["metadataEntries"]
                                                 if e["label"] == "wall_seconds") for n in stages}
    stats = run["stats"]
    print(f"file landing -> combined materialized: {elapsed:.1f} s; landing -> run start "
          f"{stats['startTime'] - landed:.1f} s; model work {sum(model_work.values()):.1f} s {model_work}")


def test_make_run_binds_to_loopback_by_default():
    recipe = subprocess.run(["make", "-n", "run"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml" in recipe


def test_webserver_not_reachable_from_other_interfaces(deployment):
    import socket

    url, *_ = deployment
    port = int(url.rsplit(":", 1)[1])
    addresses = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    others = [a for a in addresses if not a.startswith("127.") and ":" not in a]
    if not others:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with pytest.raises(OSError):
        socket.create_connection((others[0], port), timeout=3).close()
