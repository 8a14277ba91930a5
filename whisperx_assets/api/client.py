"""Launch and follow work through Dagster's GraphQL API.

Built on `dagster_graphql.DagsterGraphQLClient` (job launch, run status); raw GraphQL for what it has no
call for (dynamic partitions, backfills, asset partition status, materialization metadata).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
from upath import UPath

from whisperx_assets.defs.assets import ASSET_NAMES, with_missing_upstream
from whisperx_assets.defs.jobs import RANGE_END, RANGE_START, process_media_job, run_keys
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.speakers import RELABEL_TAG
from whisperx_assets.inputs.sources import Source, identify, is_url, location, within
from whisperx_assets.inputs.store import MediaStore

LOCATION = "whisperx_assets"  # workspace.yaml's location_name
REPOSITORY = "__repository__"
JOB = process_media_job.name
DELETE_JOB = "delete_media"  # defs/deletion.py (not imported here: the client stays light)
# The names the GraphQL documents take as variables ($job, $partitions, $first: the asset every file's
# partition starts with, where partition keys and submission claims are read).
NAMES = {"job": JOB, "partitions": media_files.name, "first": {"path": [ASSET_NAMES[0]]}}
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
# A run that has left, or will leave, its partition's results: a submission of the same file and options
# needs no other run while one of these stands.
STANDING = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "SUCCESS"}
OPTIONS_TAG, SUBMISSION_TAG = "whisperx_assets/options", "whisperx_assets/submission"
WILL_RETRY, RETRY_RUN = "dagster/will_retry", "dagster/auto_retry_run_id"

ADD_PARTITION = """
mutation ($selector: RepositorySelector!, $key: String!, $partitions: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $partitions, partitionKey: $key) {
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
}"""

# A run's event log a page at a time, step failures only: a batch run's failure comes after thousands of events
# (the runs of its files' assets are planned first), too far into the log for one page.
STEP_FAILURES = """
query ($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    ... on EventConnection {
      cursor hasMore events { __typename ... on ExecutionStepFailureEvent { stepKey error { message } } }
    }
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

# Dagster's partition statuses, but only their short lists: listing every materialized partition of every
# asset would grow with the partitions (`list` reads the materializations of a page's partitions instead).
FAILED_AND_IN_PROGRESS = """
query {
  assetNodes {
    assetKey { path }
    assetPartitionStatuses { ... on DefaultPartitionStatuses { failedPartitions materializingPartitions } }
  }
}"""

# One page of partitions, newest first, from Dagster's paginated partition keys.
PARTITION_PAGE = """
query ($first: AssetKeyInput!, $limit: Int!, $cursor: String) {
  assetNodeOrError(assetKey: $first) {
    ... on AssetNode {
      partitionKeyConnection(limit: $limit, ascending: false, cursor: $cursor) { results cursor hasMore }
    }
  }
}"""

MATERIALIZED = """
query ($keys: [String!]!) {
  assetNodes { assetKey { path } latestMaterializationByPartition(partitions: $keys) { partition } }
}"""

ALL_PARTITIONS = """
query ($first: AssetKeyInput!) { assetNodeOrError(assetKey: $first) { ... on AssetNode { partitionKeys } } }"""

# A partition's own runs (all of them) and the recent runs, among which the batch runs over a range of
# partitions (they have no per-partition tag to filter on).
PARTITION_RUNS = """
query ($key: String!, $limit: Int!, $job: String!, $first: AssetKeyInput!) {
  tagged: runsOrError(filter: {tags: [{key: "dagster/partition", value: $key}]}, limit: $limit) { ...runs }
  recent: runsOrError(filter: {pipelineName: $job}, limit: $limit) { ...runs }
  assetNodeOrError(assetKey: $first) { ... on AssetNode { partitionKeys } }
}
fragment runs on RunsOrError { ... on Runs { results { runId status creationTime tags { key value } } } }"""

# Dagster's partition add is no lock: two adds at once can both report success. Submitters that mean to
# launch record a claim instead, as an observation of the partition's `media`: the event log orders claims.
CLAIM = """
mutation ($key: String!, $claim: String!, $first: AssetKeyInput!) {
  reportRunlessAssetEvents(eventParams: {eventType: ASSET_OBSERVATION, assetKey: $first,
                                         partitionKeys: [$key], description: $claim}) {
    __typename ... on Error { message }
  }
}"""

CLAIMS = """
query ($key: String!, $first: AssetKeyInput!) {
  assetOrError(assetKey: $first) {
    ... on Asset { assetObservations(partitions: [$key], limit: 100) { timestamp description } }
  }
}"""

TAGGED_RUNS = """
query ($tag: ExecutionTag!) { runsOrError(filter: {tags: [$tag]}) { ... on Runs { results { runId } } } }"""

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

OUTPUT_JSON = """
query ($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection { events { __typename
  ... on ExecutionStepOutputEvent { metadataEntries { label ... on JsonMetadataEntry { jsonString } } } } } } }"""

INTAKE = """
query ($first: AssetKeyInput!) { assetNodeOrError(assetKey: $first) { ... on AssetNode {
  metadataEntries { label ... on JsonMetadataEntry { jsonString } } } } }"""

STALE = """
query ($assets: [AssetKeyInput!], $keys: [String!]!) {
  assetNodes(assetKeys: $assets) { assetKey { path } staleStatusByPartition(partitions: $keys) }
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


def media_config(source: Source) -> dict:
    """The `media` asset's run config that names a one-file run's input."""
    return {"source": source.source, "name": source.name, "sha256": source.sha256 or ""}


def supplied_config(paths: dict[str, str | Path]) -> dict[str, dict]:
    """{asset: its run config} for result files the user supplies ({"transcript" or "diarization": path}), read
    and checked here so that a bad one is refused before anything is launched (ValueError naming the file)."""
    from whisperx_assets.speech.supplied import check_size, read_rttm, read_transcript

    readers = {"transcript": read_transcript, "diarization": read_rttm}
    config = {}
    for asset, path in paths.items():
        path = Path(path)
        data = path.read_bytes()
        check_size(data, path.name)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not UTF-8 text") from None
        readers[asset](text, path.name)
        config[asset] = {"text": text, "name": path.name}
    return config


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Submission:
    source: str
    partition_key: str
    run_id: str
    existing: bool = False  # an earlier submission's run, not launched by this one
    copied_to: str | None = None  # the store's input copy, made here: the deployment may not read the source


class Unreadable(ValueError):
    """A place of the deployment's (its store, its SOURCE_ROOTS, SPEAKERS_DIR) that cannot be reached from here."""


def reachable(url: str, what: str, instead: str) -> UPath:
    """The deployment's folder or object prefix `url`, if this machine reaches it; else `Unreadable`, saying
    `what` is not reachable and what to do `instead`. A local path that is not a folder here is another
    machine's (an object store is tried when it is used)."""
    root = location(url)
    if isinstance(root, Path) and not root.is_dir():
        raise Unreadable(f"{what} is not reachable from here: {instead}")
    return root


def options_hash(resource_config: dict | None, stages: list[str] | None = None, supplied: dict | None = None) -> str:
    """A run's options, the stages asked for when not all, and the results supplied, as a short stable id; ""
    for the defaults (what runs without the tag, such as the inbox sensor's, mean)."""
    options = resource_config or None
    if stages and set(stages) != set(ASSET_NAMES) or supplied:
        options = {"resources": resource_config or {}, "stages": sorted(stages or ASSET_NAMES),
                   "supplied": supplied or {}}
    if not options:
        return ""
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]


def tag_dict(tags: list[dict]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in tags}


def reusable_run(runs: list[dict], options: str) -> str | None:
    """The run that a submission with `options` can stand on, given its partition's runs newest first.

    The newest run that stands (queued, running, succeeded, or crashed with an automatic retry coming) decides
    what the partition's results will be: it counts only if it has these options. Failed and canceled runs
    of other options are passed over; the newest of these options having failed means "retry it" (None)."""
    for run in runs:
        same = run["tags"].get(OPTIONS_TAG, "") == options
        stands = run["status"] in STANDING or run["tags"].get(WILL_RETRY) == "true"
        if same and stands:
            return run["runId"]
        if same or stands:
            return None
    return None


def leading_claim(observations: list[dict], token: str, grace: float) -> str:
    """The claim that launches: the first of those for the same launch as `token`'s (same options, after the same
    run) made at most `grace` seconds before it (older ones are a crashed submitter's). Observations newest
    first, as Dagster lists them."""
    claims = []
    for event in reversed(observations):
        with contextlib.suppress(ValueError, TypeError, KeyError):  # not a claim
            claim = json.loads(event["description"])
            claims.append((float(event["timestamp"]) / 1000, claim["submission"], claim["options"], claim["after"]))
    mine = next((c for c in claims if c[1] == token), None)
    if mine is None:  # beyond the observations read: only many more claims since could do that
        return token
    return next(c[1] for c in claims if c[0] >= mine[0] - grace and c[2:] == mine[2:])


class WhisperXClient(DagsterGraphQLClient):
    """`WhisperXClient("http://127.0.0.1:3000")`: the pipeline's operations over GraphQL."""

    def __init__(self, url: str, timeout: int = 60):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        super().__init__(parts.hostname or "127.0.0.1", port_number=parts.port, use_https=parts.scheme == "https",
                         timeout=timeout, path_prefix=parts.path.rstrip("/"))
        self.selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path}"
        self._intake: dict | None = None

    def query(self, document: str, variables: dict | None = None) -> dict:
        """Run a GraphQL document; the `NAMES` it declares as variables are filled in."""
        names = {k: v for k, v in NAMES.items() if f"${k}:" in document}
        return self._execute(document, {**names, **(variables or {})})

    def add_partition(self, key: str) -> bool:
        """True if added, False if it already existed."""
        result = self.query(ADD_PARTITION, {"selector": self.selector, "key": key})["addDynamicPartition"]
        kind = result["__typename"]
        if kind == "AddDynamicPartitionSuccess":
            return True
        # Two adds at once can both pass Dagster's existence check; the loser's insert then fails on the unique
        # index, or finds the row, adds nothing and reports success (hence the claims in `submit`).
        if kind == "DuplicateDynamicPartitionError" or (
                kind == "PythonError" and any(s in result["message"] for s in ("UNIQUE", "IntegrityError"))):
            return False
        raise DagsterGraphQLClientError(kind, result.get("message", ""))

    def submit(self, source: str, resource_config: dict | None = None, force: bool = False,
               grace: float = 15.0, callback_url: str | None = None,
               stages: list[str] | None = None, supplied: dict[str, str | Path] | None = None) -> Submission:
        """Add `source`'s partition and launch `process_media` for it, unless the same submission is already
        under way or done: then the run `reusable_run` finds stands for this one (`existing`). `force` always
        launches.

        A partition that existed with no run yet may be between its add and its launch (the inbox sensor's,
        another submitter's): wait up to `grace` seconds for its run. Submitters that would launch the same
        run at once all claim it; the first claim launches and the others wait up to `grace` for its run.

        `callback_url`: when the launched run ends, its summary is POSTed there (`defs.callbacks`); it is checked
        first like a URL input (MediaError if refused). A run that stands for this submission keeps its own tags:
        it calls back only if its own submitter asked for it.

        `stages`: run only these assets, and those they need that the partition lacks (a new file's `media`);
        the partition's other assets stay as they are.

        `supplied`: {"transcript" or "diarization": path} result files to use instead of computing them (a
        transcript is force-aligned; see `supplied_config`); their assets run, with the stages asked for."""
        from whisperx_assets.defs.callbacks import CALLBACK_TAG
        from whisperx_assets.inputs.fetch import check_url

        if callback_url:
            check_url(callback_url)
        supplied = supplied_config(supplied or {})
        if stages:
            stages = [name for name in ASSET_NAMES if name in {*stages, *supplied}]
        identified = identify(source)
        key = identified.key
        copied_to = None if is_url(source) else self.copy_in(identified)
        digests = {asset: hashlib.sha256(c["text"].encode()).hexdigest() for asset, c in supplied.items()}
        options, token = options_hash(resource_config, stages, digests), uuid.uuid4().hex
        existed = not self.add_partition(key)
        if not force and (run_id := self._standing_run(key, options, token, existed, grace)):
            return Submission(source, key, run_id, existing=True, copied_to=copied_to)
        selection = with_missing_upstream(stages, self.materialized(key)) if stages else list(ASSET_NAMES)
        # config only for the ops the run has: Dagster refuses config for ops outside the selection
        ops = {"media": media_config(identified), **supplied}
        run_config = {"ops": {op: {"config": c} for op, c in ops.items() if op in selection}}
        if resource_config:
            run_config["resources"] = {"whisperx": {"config": resource_config}}
        run_id = self.submit_job_execution(JOB, repository_location_name=LOCATION, repository_name=REPOSITORY,
                                           asset_selection=None if len(selection) == len(ASSET_NAMES) else selection,
                                           run_config=run_config, tags={"dagster/partition": key, OPTIONS_TAG: options,
                                                                        SUBMISSION_TAG: token,
                                                                        "whisperx_assets/source": source,
                                                                        **({CALLBACK_TAG: callback_url}
                                                                           if callback_url else {})})
        return Submission(source, key, run_id, copied_to=copied_to)

    def intake(self) -> dict:
        """Where the deployment reads sources from and stores inputs (the `media` asset's `intake` metadata); asked
        once per client, as a command submitting many files would otherwise ask per file."""
        if self._intake is None:
            entries = self.query(INTAKE)["assetNodeOrError"].get("metadataEntries") or []
            self._intake = next(json.loads(e["jsonString"]) for e in entries if e["label"] == "intake")
        return self._intake

    def speakers_dir(self) -> UPath:
        """The deployment's SPEAKERS_DIR, when this machine reaches its store (`Unreadable` if not)."""
        intake = self.intake()
        reachable(intake["storage_url"], f"the deployment's store {intake['storage_url']}",
                  f"enroll on the machine that holds {intake['speakers_dir']} (one folder per person, holding clips)")
        return location(intake["speakers_dir"])

    def speakers(self) -> tuple[list[dict], list[dict]]:
        """(the enrolled people, the voices heard in more than one file or named), from the latest `voiceprints` and
        `voices` tables in the deployment's store."""
        store_url = self.intake()["storage_url"]
        store = MediaStore(reachable(store_url, f"the deployment's store {store_url}", "run this where it is"))
        prints, members = store.read_collection("voiceprints"), store.read_collection("voices")
        people = [] if prints is None else [
            {"name": r.name, "clips": int(r.clips), "seconds": round(float(r.seconds), 1),
             "voices": r.voice_ids.split(",") if r.voice_ids else []} for r in prints.itertuples()]
        named = {v: p["name"] for p in people for v in p["voices"]}
        voices = []
        if members is not None and len(members):
            for voice, group in members.groupby("voice_id", sort=True):
                if group["partition"].nunique() > 1 or voice in named:
                    voices.append({"voice_id": voice, "name": named.get(voice), "files": int(group["partition"].nunique()),
                                   "partitions": sorted(group["partition"].unique())})
        return people, voices

    def copy_in(self, source: Source) -> str | None:
        """Copy the file `source` into the deployment's store as its partition's input, unless the deployment
        reads it where it is (inside its SOURCE_ROOTS); where the copy is. `Unreadable` if the store cannot be
        reached from here."""
        intake = self.intake()
        if within(source.source, intake["source_roots"]):
            return None
        store_url = intake["storage_url"]
        reachable(store_url, f"{source.source} is outside the folders the deployment reads sources from "
                             f"(SOURCE_ROOTS: {', '.join(intake['source_roots'])}) and its store {store_url}",
                  "put it in the inbox, or add its folder to SOURCE_ROOTS where the deployment runs")
        return str(MediaStore(store_url).ingest(source.key, location(source.source), source.name, source.sha256))

    def _standing_run(self, key: str, options: str, token: str, existed: bool, grace: float) -> str | None:
        """The run that stands for this submission (see `submit`), or None: this one launches."""
        runs, deadline = self.partition_runs(key), time.monotonic() + grace
        while existed and not runs and time.monotonic() < deadline:
            time.sleep(0.5)
            runs = self.partition_runs(key)
        if run_id := reusable_run(runs, options):
            return run_id
        leader = self.claim(key, token, options, runs[0]["runId"] if runs else "", grace)
        deadline = time.monotonic() + grace
        while leader != token and time.monotonic() < deadline:
            if run_id := self.tagged_run(SUBMISSION_TAG, leader):
                return run_id
            time.sleep(0.5)
        return None

    def materialized(self, key: str) -> list[str]:
        """The assets materialized for partition `key`, in stage order."""
        done = {node["assetKey"]["path"][-1] for node in self.query(MATERIALIZED, {"keys": [key]})["assetNodes"]
                if any(node["latestMaterializationByPartition"])}
        return [name for name in ASSET_NAMES if name in done]

    def claim(self, key: str, token: str, options: str, after: str, grace: float) -> str:
        """Record the claim to launch a run with `options` for partition `key` after run `after` (or none);
        returns the token of the claim that launches."""
        claim = json.dumps({"submission": token, "options": options, "after": after})
        result = self.query(CLAIM, {"key": key, "claim": claim})["reportRunlessAssetEvents"]
        if result["__typename"] != "ReportRunlessAssetEventsSuccess":
            raise DagsterGraphQLClientError(result["__typename"], result.get("message", ""))
        observations = self.query(CLAIMS, {"key": key})["assetOrError"].get("assetObservations") or []
        return leading_claim(observations, token, grace)

    def tagged_run(self, key: str, value: str) -> str | None:
        runs = self.query(TAGGED_RUNS, {"tag": {"key": key, "value": value}})["runsOrError"].get("results") or []
        return runs[0]["runId"] if runs else None

    def run(self, run_id: str) -> dict:
        run = self.query(RUN_DETAILS, {"runId": run_id})["runOrError"]
        if run["__typename"] != "Run":
            raise NotFound(f"no run {run_id}")
        failures = self.step_failures(run_id) if any(s["status"] == "FAILURE" for s in run["stepStats"]) else []
        tags = tag_dict(run["tags"])
        partition = tags.get("dagster/partition") or (f"{tags[RANGE_START]}..{tags[RANGE_END]}" if RANGE_START in tags
                                                       else None)
        return {"run_id": run["runId"], "status": run["status"], "partition": partition,
                "steps": {s["stepKey"]: s["status"] for s in run["stepStats"]},
                "start_time": run["stats"].get("startTime"), "end_time": run["stats"].get("endTime"),
                "failure": failures[-1] if failures else None, "tags": tags}

    def step_failures(self, run_id: str) -> list[str]:
        """The run's step failures in order, as "step: message"."""
        failures, cursor = [], None
        while True:
            page = self.query(STEP_FAILURES, {"runId": run_id, "cursor": cursor})["logsForRun"]
            failures += [f"{e['stepKey']}: {e['error']['message'].strip()}" for e in page.get("events") or []
                         if e.get("__typename") == "ExecutionStepFailureEvent"]
            if not page.get("hasMore"):
                return failures
            cursor = page["cursor"]

    def latest_run_for_partition(self, key: str) -> dict | None:
        """The latest run that processed partition `key` (a batch run too); a run that only re-named its speakers
        when no other is left."""
        runs = {node["latestRunForPartition"]["runId"]: node["latestRunForPartition"]["creationTime"]
                for node in self.query(LATEST_RUN_FOR_PARTITION, {"key": key})["assetNodes"]
                if node["latestRunForPartition"]}
        newest = None
        for run_id in sorted(runs, key=runs.get, reverse=True):  # read one at a time: usually the first will do
            run = self.run(run_id)
            if RELABEL_TAG not in run["tags"]:
                return run
            newest = newest or run
        return newest

    def partition_runs(self, key: str, limit: int = 1000) -> list[dict]:
        """Runs processing partition `key`, newest first, tags as a dict: all of its own, and the batch runs over
        it among the latest `limit` runs (not the runs that only re-name its speakers)."""
        data = self.query(PARTITION_RUNS, {"key": key, "limit": limit})
        order = (data.get("assetNodeOrError") or {}).get("partitionKeys") or []
        position = {k: i for i, k in enumerate(order)}
        runs = {}
        for run in (data["tagged"].get("results") or []) + (data["recent"].get("results") or []):
            tags = tag_dict(run["tags"])
            if key in run_keys(tags, order, position) and RELABEL_TAG not in tags:
                runs[run["runId"]] = {**run, "tags": tags}
        return sorted(runs.values(), key=lambda r: r["creationTime"], reverse=True)

    def partition_states(self, limit: int = 100,
                         cursor: str | None = None) -> tuple[dict[str, dict[str, str]], str | None]:
        """One page of partitions, newest first: ({partition key: {asset: materialized|failed|materializing|missing}},
        the cursor of the next page, None after the last). Failed and in progress are Dagster's partition statuses
        (a run that failed fails every asset it planned and did not materialize)."""
        page = self.query(PARTITION_PAGE, {"limit": limit, "cursor": cursor})
        page = page["assetNodeOrError"]["partitionKeyConnection"]
        keys = page["results"]
        states: dict[str, dict[str, str]] = {key: {} for key in keys}
        if keys:
            for node in self.query(MATERIALIZED, {"keys": keys})["assetNodes"]:
                asset = node["assetKey"]["path"][-1]
                done = {m["partition"] for m in node["latestMaterializationByPartition"] if m}
                for key in keys:
                    states[key][asset] = "materialized" if key in done else "missing"
            for asset, state, found in self._failed_and_in_progress():
                for key in found & states.keys():
                    states[key][asset] = state
        return states, page["cursor"] if page["hasMore"] else None

    def _failed_and_in_progress(self) -> list[tuple[str, str, set[str]]]:
        """(asset, failed|materializing, the partitions in that state), from Dagster's partition statuses."""
        found = []
        for node in self.query(FAILED_AND_IN_PROGRESS)["assetNodes"]:
            asset, statuses = node["assetKey"]["path"][-1], node["assetPartitionStatuses"] or {}
            found += [(asset, "failed", set(statuses.get("failedPartitions") or [])),
                      (asset, "materializing", set(statuses.get("materializingPartitions") or []))]
        return found

    def failed_partitions(self) -> list[str]:
        """Every partition with an asset failed, in no particular order."""
        return list(set().union(*(keys for _, state, keys in self._failed_and_in_progress() if state == "failed")))

    def partition_keys(self) -> list[str]:
        return self.query(ALL_PARTITIONS)["assetNodeOrError"]["partitionKeys"]

    def failures(self, failed_assets: dict[str, str]) -> dict[str, str | None]:
        """{partition key: the failure of the latest run that planned its asset} for {partition key: failed asset}
        (one query for all of them, then one per run: a batch's partitions share theirs)."""
        if not failed_assets:
            return {}
        keys = list(failed_assets)
        declared = ", ".join(f"$k{i}: String!, $a{i}: AssetKeyInput!" for i in range(len(keys)))
        fields = " ".join(f"r{i}: assetNodeOrError(assetKey: $a{i}) "
                          f"{{ ... on AssetNode {{ latestRunForPartition(partition: $k{i}) {{ runId }} }} }}"
                          for i in range(len(keys)))
        variables = {}
        for i, key in enumerate(keys):
            variables.update({f"k{i}": key, f"a{i}": {"path": [failed_assets[key]]}})
        data = self.query(f"query ({declared}) {{ {fields} }}", variables)
        run_ids = {key: ((data[f"r{i}"] or {}).get("latestRunForPartition") or {}).get("runId")
                   for i, key in enumerate(keys)}
        reasons = {run_id: self.run(run_id)["failure"] for run_id in set(run_ids.values()) if run_id}
        return {key: reasons.get(run_id) for key, run_id in run_ids.items()}

    def output_path(self, asset: str, key: str, label: str = "path") -> UPath:
        """Where the latest materialization of `asset` for partition `key` stored its output."""
        result = self.query(MATERIALIZATION, {"asset": [asset], "key": key})["assetOrError"]
        materializations = result.get("assetMaterializations") or []
        if not materializations:
            raise NotFound(f"{asset} is not materialized for partition {key}")
        for entry in materializations[0]["metadataEntries"]:
            if entry["label"] == label and entry.get("path"):
                return location(entry["path"])
        raise NotFound(f"{asset} for {key} recorded no {label}")

    def delete(self, keys: list[str]) -> str:
        """Launch `delete_media` for the partitions `keys`; its run id."""
        return self.submit_job_execution(DELETE_JOB, repository_location_name=LOCATION, repository_name=REPOSITORY,
                                         run_config={"ops": {"delete_partitions": {"config": {"partitions": keys}}}})

    def output_json(self, run_id: str, label: str):
        """The JSON metadata entry `label` of the run's step outputs (None if there is none)."""
        events = self.query(OUTPUT_JSON, {"runId": run_id})["logsForRun"].get("events") or []
        for event in events:
            for entry in event.get("metadataEntries") or []:
                if entry["label"] == label and "jsonString" in entry:
                    return json.loads(entry["jsonString"])
        return None

    def stale_partitions(self, chunk: int = 500) -> dict[str, list[str]]:
        """{partition key: its stale assets, in stage order}: made with other options or models than the code
        location's now (code versions), or from upstream results that changed since."""
        keys, stale = self.partition_keys(), {}
        for i in range(0, len(keys), chunk):
            page = keys[i:i + chunk]
            nodes = self.query(STALE, {"assets": [{"path": [a]} for a in ASSET_NAMES], "keys": page})["assetNodes"]
            by_asset = {node["assetKey"]["path"][-1]: node["staleStatusByPartition"] for node in nodes}
            for j, key in enumerate(page):
                if assets := [a for a in ASSET_NAMES if by_asset.get(a, [None] * len(page))[j] == "STALE"]:
                    stale[key] = assets
        return stale

    def backfill(self, keys: list[str], assets: tuple[str, ...] | list[str] = ASSET_NAMES) -> str:
        """A backfill of `assets` (default: all) over the partitions `keys`, in runs of batches (BATCHES)."""
        result = self.query(BACKFILL, {"names": keys, "assets": [{"path": [a]} for a in assets]})
        result = result["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise DagsterGraphQLClientError(result["__typename"], str(result))
        return result["backfillId"]


