"""The real thing: dagster-webserver and dagster-daemon on a temporary DAGSTER_HOME; a file dropped into
the inbox becomes a partition whose `combined` asset gets materialized, seen through the GraphQL API."""

import shutil
import subprocess
import time

import pytest

from whisperx_assets.inputs.sources import identify
from whisperx_assets.evaluation.servers import REPO, graphql


MATERIALIZATIONS = """
query ($asset: [String!]!, $partitions: [String!]) {
  assetOrError(assetKey: {path: $asset}) {
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
    expected = identify(inbox / "standup.wav").key
    deadline = time.monotonic() + 400
    materialized = []
    while time.monotonic() < deadline and not materialized:
        time.sleep(2)
        data = graphql(url, MATERIALIZATIONS, {"asset": ["combined"], "partitions": [expected]})
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


RUNS = """
query ($runIds: [String!]) { runsOrError(filter: {runIds: $runIds}) { ... on Runs { results { runId status tags { key value } } } } }
"""


def test_files_arriving_together_share_a_run_and_a_bad_one_is_split_off(deployment, dialogue, sample, tmp_path):
    """Two good recordings and a corrupt file land together: one batch run, which fails at `media` naming the
    corrupt file; split_failed_batch_sensor re-runs the good two together (one run) and the bad one alone."""
    from whisperx_assets.api.client import WhisperXClient

    url, inbox, storage, root = deployment
    staging = inbox / ".staging"
    staging.mkdir()
    shutil.copy(dialogue.path, staging / "batch a.wav")
    shutil.copy(sample.path, staging / "batch b.wav")
    (staging / "batch z.mp3").write_bytes(b"\xff\xfb" + b"garbage" * 500)
    for path in sorted(staging.iterdir()):
        path.rename(inbox / path.name)
    keys = [identify(inbox / name).key for name in ("batch a.wav", "batch b.wav", "batch z.mp3")]
    client = WhisperXClient(url)
    deadline = time.monotonic() + 500
    materialized, bad_run = [], None
    while time.monotonic() < deadline and not (len(materialized) == 2 and bad_run and bad_run["status"] == "FAILURE"):
        time.sleep(2)
        # transcript: `combined` may be materialized again when speakers_sensor re-names a recurring voice
        data = graphql(url, MATERIALIZATIONS, {"asset": ["transcript"], "partitions": keys})
        materialized = (data["assetOrError"] or {}).get("assetMaterializations") or []
        bad_run = client.latest_run_for_partition(keys[2])
    if len(materialized) != 2:
        pytest.fail("the good files were not materialized; daemon log:\n" + (root / "daemon.log").read_text()[-4000:])
    assert {m["partition"] for m in materialized} == set(keys[:2])
    assert len({m["runId"] for m in materialized}) == 1  # the good files ran together
    [good_run] = graphql(url, RUNS, {"runIds": [materialized[0]["runId"]]})["runsOrError"]["results"]
    tags = {t["key"]: t["value"] for t in good_run["tags"]}
    first_batch = tags["whisperx_assets/split_from"]
    [first] = graphql(url, RUNS, {"runIds": [first_batch]})["runsOrError"]["results"]
    first_tags = {t["key"]: t["value"] for t in first["tags"]}
    assert first["status"] == "FAILURE" and first_tags["whisperx_assets/batch_size"] == "3"
    assert bad_run["status"] == "FAILURE" and bad_run["partition"] == keys[2]  # alone, with its own reason
    assert bad_run["failure"].startswith("media:") and "batch z.mp3" in bad_run["failure"]
    assert client.latest_run_for_partition(keys[0])["run_id"] == good_run["runId"]
    states, _ = client.partition_states()
    assert states[keys[0]]["combined"] == "materialized" and states[keys[2]]["media"] == "failed"
