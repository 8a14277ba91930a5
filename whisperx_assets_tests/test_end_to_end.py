"""The real thing: dagster-webserver and dagster-daemon on a temporary DAGSTER_HOME; a file dropped into
the inbox becomes a partition whose `combined` asset gets materialized, seen through the GraphQL API."""

import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from whisperx_assets.partitions import partition_key_for
from whisperx_assets_tests.servers import REPO, graphql


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
    expected = partition_key_for(inbox / "standup.wav")
    deadline = time.monotonic() + 400
    materialized = []
    while time.monotonic() < deadline and not materialized:
        time.sleep(2)
        data = graphql(url, MATERIALIZATIONS, {"partitions": [expected]})
        materialized = (data["assetOrError"] or {}).get("assetMaterializations") or []
    if not materialized:
        pytest.fail("combined was not materialized in time; daemon log:\n" + (root / "daemon.log").read_text()[-4000:])
    elapsed = time.time() - landed
    key = materialized[0]["partition"]
    assert key == expected and key.startswith("standup-")
    assert (storage / "combined" / f"{key}.parquet").is_file()
    srt = storage / "subtitles" / key / f"{key}.srt"
    for _ in range(30):  # subtitles follow combined in the same run
        if srt.is_file():
            break
        time.sleep(1)
    assert srt.is_file()
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
