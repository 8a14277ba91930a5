"""Launch and follow work through Dagster's GraphQL API.

Built on `dagster_graphql.DagsterGraphQLClient` (job launch, run status); raw GraphQL for what it has no
call for (dynamic partitions, backfills, asset partition status, materialization metadata).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from whisperx_assets.jobs import RANGE_END, RANGE_START, keys_in_range
from whisperx_assets.partitions import content_hash, is_url, partition_key, url_partition_key
from whisperx_assets.speech.media import SUPPORTED_EXTENSIONS

LOCATION = "whisperx_assets"
REPOSITORY = "__repository__"
JOB = "process_media"
ASSETS = ("media", "transcript", "alignment", "diarization", "combined", "subtitles")
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

ADD_PARTITION = """
mutation ($selector: RepositorySelector!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: "media_files", partitionKey: $key) {
    __typename
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}"""

RUN_DETAILS = """
query ($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      runId status tags { key value }
      stats { ... on RunStatsSnapshot { startTime endTime } }
      stepStats { stepKey status startTime endTime }
    }
  }
  logsForRun(runId: $runId, limit: 200) {
    ... on EventConnection { events { __typename ... on ExecutionStepFailureEvent { stepKey error { message } } } }
  }
}"""

# A partition's runs include batch runs over a range of partitions, which carry no per-partition tag: ask
# each asset for the latest run that planned it.
LATEST_RUN_FOR_PARTITION = """
query ($key: String!) {
  assetNodes {
    latestRunForPartition(partition: $key) { runId creationTime }
  }
}"""

PARTITION_STATUSES = """
query {
  assetNodes {
    assetKey { path }
    assetPartitionStatuses {
      ... on DefaultPartitionStatuses {
        materializedPartitions failedPartitions materializingPartitions unmaterializedPartitions
      }
    }
  }
}"""

RECENT_RUNS = """
query ($limit: Int!) {
  runsOrError(filter: {pipelineName: "process_media"}, limit: $limit) {
    ... on Runs { results { runId status tags { key value } stepStats { stepKey status } } }
  }
  assetNodeOrError(assetKey: {path: ["media"]}) { ... on AssetNode { partitionKeys } }
}"""

MATERIALIZATION = """
query ($asset: [String!]!, $key: String!) {
  assetOrError(assetKey: {path: $asset}) {
    __typename
    ... on Asset {
      assetMaterializations(partitions: [$key], limit: 1) {
        runId timestamp
        metadataEntries { label ... on PathMetadataEntry { path } }
      }
    }
  }
}"""

BACKFILL = """
mutation ($names: [String!]!, $assets: [AssetKeyInput!]!) {
  launchPartitionBackfill(backfillParams: {partitionNames: $names, assetSelection: $assets}) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on UnauthorizedError { message }
  }
}"""


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Submission:
    source: str
    partition_key: str
    run_id: str


def key_for_source(source: str) -> tuple[str, str, str]:
    """(partition key, absolute source, sha256 or '') as the inbox sensor would compute them."""
    if is_url(source):
        scheme = urlsplit(source).scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"{source}: only http and https URLs are supported")
        return url_partition_key(source), source, ""
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise ValueError(f"{source}: unsupported extension {path.suffix or '(none)'!r}; supported: "
                         f"{' '.join(sorted(SUPPORTED_EXTENSIONS))}")
    sha256 = content_hash(path)
    return partition_key(path.name, sha256), str(path), sha256


class WhisperXClient(DagsterGraphQLClient):
    """`WhisperXClient("http://127.0.0.1:3000")`: the pipeline's operations over GraphQL."""

    def __init__(self, url: str, timeout: int = 60):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        super().__init__(parts.hostname or "127.0.0.1", port_number=parts.port, use_https=parts.scheme == "https",
                         timeout=timeout, path_prefix=parts.path.rstrip("/"))
        self.selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path}"

    def query(self, document: str, variables: dict | None = None) -> dict:
        return self._execute(document, variables)

    def add_partition(self, key: str) -> bool:
        """True if added, False if it already existed."""
        result = self.query(ADD_PARTITION, {"selector": self.selector, "key": key})["addDynamicPartition"]
        kind = result["__typename"]
        if kind == "AddDynamicPartitionSuccess":
            return True
        if kind == "DuplicateDynamicPartitionError":
            return False
        raise DagsterGraphQLClientError(kind, result.get("message", ""))

    def submit(self, source: str, resource_config: dict | None = None) -> Submission:
        key, absolute, sha256 = key_for_source(source)
        self.add_partition(key)
        name = Path(urlsplit(absolute).path).name if is_url(absolute) else Path(absolute).name
        run_config = {"ops": {"media": {"config": {"source": absolute, "name": name, "sha256": sha256}}}}
        if resource_config:
            run_config["resources"] = {"whisperx": {"config": resource_config}}
        run_id = self.submit_job_execution(JOB, repository_location_name=LOCATION, repository_name=REPOSITORY,
                                           run_config=run_config, tags={"dagster/partition": key,
                                                                        "whisperx_assets/source": source})
        return Submission(source, key, run_id)

    def run(self, run_id: str) -> dict:
        data = self.query(RUN_DETAILS, {"runId": run_id})
        run = data["runOrError"]
        if run["__typename"] != "Run":
            raise NotFound(f"no run {run_id}")
        events = (data.get("logsForRun") or {}).get("events") or []
        failures = [f"{e['stepKey']}: {e['error']['message'].strip()}" for e in events
                    if e.get("__typename") == "ExecutionStepFailureEvent"]
        tags = {t["key"]: t["value"] for t in run["tags"]}
        partition = tags.get("dagster/partition") or (f"{tags[RANGE_START]}..{tags[RANGE_END]}" if RANGE_START in tags
                                                       else None)
        return {"run_id": run["runId"], "status": run["status"], "partition": partition,
                "steps": {s["stepKey"]: s["status"] for s in run["stepStats"]},
                "start_time": run["stats"].get("startTime"), "end_time": run["stats"].get("endTime"),
                "failure": failures[-1] if failures else None}

    def latest_run_for_partition(self, key: str) -> dict | None:
        runs = [node["latestRunForPartition"] for node in self.query(LATEST_RUN_FOR_PARTITION, {"key": key})["assetNodes"]
                if node["latestRunForPartition"]]
        return self.run(max(runs, key=lambda r: r["creationTime"])["runId"]) if runs else None

    def partitions(self, recent_runs: int = 1000) -> dict[str, dict[str, str]]:
        """{partition key: {asset: materialized|failed|materializing|missing}}.

        Dagster's partition statuses give materialized / in progress; a step that failed in a partition's
        latest run marks that asset failed."""
        states: dict[str, dict[str, str]] = {}
        for node in self.query(PARTITION_STATUSES)["assetNodes"]:
            asset = node["assetKey"]["path"][-1]
            statuses = node["assetPartitionStatuses"] or {}
            for field, state in (("materializedPartitions", "materialized"), ("failedPartitions", "failed"),
                                 ("materializingPartitions", "materializing"), ("unmaterializedPartitions", "missing")):
                for key in statuses.get(field) or []:
                    states.setdefault(key, {})[asset] = state
        data = self.query(RECENT_RUNS, {"limit": recent_runs})
        order = (data.get("assetNodeOrError") or {}).get("partitionKeys") or []
        position = {key: i for i, key in enumerate(order)}
        latest: dict[str, dict] = {}
        for run in data["runsOrError"].get("results") or []:  # newest first
            tags = {t["key"]: t["value"] for t in run["tags"]}
            if "dagster/partition" in tags:
                keys = [tags["dagster/partition"]]
            else:
                keys = keys_in_range(order, tags.get(RANGE_START), tags.get(RANGE_END), position)
            for key in keys:
                latest.setdefault(key, run)
        for key, run in latest.items():
            for step in run["stepStats"]:
                if step["status"] == "FAILURE" and step["stepKey"] in ASSETS:
                    states.setdefault(key, {})[step["stepKey"]] = "failed"
        return states

    def output_path(self, asset: str, key: str, label: str = "path") -> Path:
        """Where the latest materialization of `asset` for partition `key` stored its output."""
        result = self.query(MATERIALIZATION, {"asset": [asset], "key": key})["assetOrError"]
        materializations = result.get("assetMaterializations") or []
        if not materializations:
            raise NotFound(f"{asset} is not materialized for partition {key}")
        for entry in materializations[0]["metadataEntries"]:
            if entry["label"] == label and entry.get("path"):
                return Path(entry["path"])
        raise NotFound(f"{asset} for {key} recorded no {label}")

    def backfill(self, keys: list[str]) -> str:
        result = self.query(BACKFILL, {"names": keys, "assets": [{"path": [a]} for a in ASSETS]})
        result = result["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise DagsterGraphQLClientError(result["__typename"], str(result))
        return result["backfillId"]


