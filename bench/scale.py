"""Scale benchmark: the inbox sensor, `whisperx-assets list` and the UI's asset and partition pages at 10,000 and
100,000 partitions.

    uv run python -m bench.scale [N ...]      # default 10000 100000; BENCH_OUT=folder for the report

For each N: a real Dagster instance (SQLite under a temporary DAGSTER_HOME, `dagster.yaml` as `make run` uses it)
and an inbox of N small files. The inbox sensor handles them as under the daemon (its partition adds applied, the
runs it requests created, RUN_FILES files each), and each run is then recorded as done: its steps, a
materialization of every asset for each of its files, success; one run in a hundred fails at `transcript`
instead. Dagster's SQLite event log writes each event in transactions of its own (about 3 ms an event here, hours
for the millions of events of 100,000 files), so these events are written in batches, a transaction per shard,
as `store_event` writes them.
Then, with a real webserver on that instance:
- the sensor: an idle tick (nothing new; median of 5) and a tick with one new file, wall time in this process
  (where the code server evaluates it), and the size of the cursor the daemon stores with every tick;
- `whisperx-assets list`: the first page and the next, wall time of the CLI process (Python start included),
  the first page's GraphQL alone (`WhisperXClient.partition_states`, median of 3), and reading the failures of
  a page of 100 failed partitions (`WhisperXClient.failures`);
- the GraphQL queries the UI's asset page and partition page send (dagster-webui 1.13's, trimmed to their
  fields that read partitions), each timed cold (first) and warm (median of 3).
Writes bench/results/scale-<date>.json and prints a Markdown table (see bench/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("BENCH_OUT") or ROOT / "bench" / "results")
FAILING_RUN_EVERY = 100  # one seeded run in this many fails
RUN_FILES = 500  # files per seeded run: every run has a SQLite shard of its own, 0.4 s to create here

# What the UI sends on an asset's page (definition, partition health bar, latest partitions) and when a partition
# is selected on it (dagster-webui 1.13: AssetViewDefinitionQuery, PartitionHealthQuery, LatestAssetPartitionsQuery
# with AssetPartitionEventsQuery, AssetPartitionDetailQuery; fragments cut to the fields that touch partitions).
UI_QUERIES = {
    "asset page: definition": """query ($assetKey: AssetKeyInput!) { assetOrError(assetKey: $assetKey) { ... on Asset {
        id key { path } assetMaterializations(limit: 1) { timestamp runId }
        definition { id partitionDefinition { description dimensionTypes { type dynamicPartitionsDefinitionName } }
                     partitionKeysByDimension { name } backfillPolicy { description } } } } }""",
    "asset page: partition health": """query ($assetKey: AssetKeyInput!) { assetNodeOrError(assetKey: $assetKey) {
        ... on AssetNode { id partitionKeysByDimension { name type partitionKeys }
          assetPartitionStatuses { ... on DefaultPartitionStatuses {
            materializedPartitions materializingPartitions failedPartitions } } } } }""",
    "asset page: latest partitions": """query ($assetKey: AssetKeyInput!) { assetNodeOrError(assetKey: $assetKey) {
        ... on AssetNode { id partitionKeyConnection(limit: 50, ascending: false) { results } } } }""",
    "asset page: latest partitions' events": """query ($assetKey: AssetKeyInput!, $partitions: [String!]!) {
        assetNodeOrError(assetKey: $assetKey) { ... on AssetNode { id
          latestMaterializationByPartition(partitions: $partitions) { runId timestamp partition } } } }""",
    "partition page": """query ($assetKey: AssetKeyInput!, $partitionKey: String!) { assetOrError(assetKey: $assetKey) {
        ... on Asset { id
          definition { id opNames latestRunForPartition(partition: $partitionKey) { id status endTime } }
          assetEventHistory(partitions: [$partitionKey], limit: 1000,
                            eventTypeSelectors: [MATERIALIZATION, OBSERVATION, FAILED_TO_MATERIALIZE]) {
            results { ... on MaterializationEvent { runId timestamp } ... on ObservationEvent { runId timestamp }
                      ... on FailedToMaterializeEvent { runId timestamp } } } } } }""",
}


def make_inbox(inbox: Path, count: int) -> None:
    """`count` small distinct files, a thousand per folder, written an hour ago (settled)."""
    past = time.time() - 3600
    for i in range(count):
        folder = inbox / f"day{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"call {i:06d}.wav"
        path.write_bytes(b"RIFF" + i.to_bytes(8, "little"))
        os.utime(path, (past, past))


def write_events(storage, events: list) -> None:
    """What `SqliteEventLogStorage.store_event` writes for each of `events`, in one transaction per shard: the event
    in its run's shard, asset and run status events in the index shard too, and each asset's record updated once,
    with its latest event (the seeded events carry no tags)."""
    from dagster._core.events import ASSET_EVENTS, EVENT_TYPE_TO_PIPELINE_RUN_STATUS
    from dagster._core.storage.event_log.schema import SqlEventLogStorageTable

    rows = [storage._event_to_row(event) for event in events]
    by_run = defaultdict(list)
    for row in rows:
        by_run[row["run_id"]].append(row)
    for run_id, run_rows in by_run.items():
        with storage.run_connection(run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), run_rows)
    indexed = [(event, row) for event, row in zip(events, rows) if event.is_dagster_event and event.dagster_event_type
               in ASSET_EVENTS | set(EVENT_TYPE_TO_PIPELINE_RUN_STATUS)]
    latest = {(event.dagster_event.asset_key, event.dagster_event_type): i for i, (event, _) in enumerate(indexed)
              if event.dagster_event_type in ASSET_EVENTS}
    with storage.index_transaction() as conn:
        for i, (event, row) in enumerate(indexed):  # in order, so storage ids follow the events
            if i in latest.values():
                event_id = conn.execute(SqlEventLogStorageTable.insert().values(**row)).inserted_primary_key[0]
                storage._store_asset_event(conn, event, event_id)
            else:
                conn.execute(SqlEventLogStorageTable.insert(), [row])


@contextlib.contextmanager
def batched_event_writes(instance):
    """Events stored inside the block are written at its end, in batches (`write_events`)."""
    storage, events = instance.event_log_storage, []
    storage.store_event = events.append
    storage.store_event_batch = events.extend
    try:
        yield
    finally:
        del storage.store_event, storage.store_event_batch
        write_events(storage, events)


def record_run_done(instance, run, keys: list[str], failed: bool) -> None:
    """The events of `run` over `keys` finishing: each step started and succeeded, with a materialization per file,
    or the run failing at `transcript` (nothing of it materialized)."""
    from dagster import AssetKey, AssetMaterialization, DagsterEvent, DagsterEventType
    from dagster._core.events import StepFailureData, StepMaterializationData, StepSuccessData
    from dagster._utils.error import SerializableErrorInfo

    from whisperx_assets.defs.assets import ASSET_NAMES

    def report(kind, step=None, data=None):
        instance.report_dagster_event(DagsterEvent(kind.value, job_name=run.job_name, step_key=step,
                                                   event_specific_data=data), run_id=run.run_id)

    report(DagsterEventType.RUN_START)
    for asset in ASSET_NAMES:
        report(DagsterEventType.STEP_START, asset)
        if failed and asset == "transcript":
            error = SerializableErrorInfo("RuntimeError: stand-in failure\n", [], "RuntimeError")
            report(DagsterEventType.STEP_FAILURE, asset, StepFailureData(error=error, user_failure_data=None))
            report(DagsterEventType.RUN_FAILURE)
            return
        for key in keys:
            report(DagsterEventType.ASSET_MATERIALIZATION, asset,
                   StepMaterializationData(AssetMaterialization(AssetKey(asset), partition=key)))
        report(DagsterEventType.STEP_SUCCESS, asset, StepSuccessData(duration_ms=1000.0))
    report(DagsterEventType.RUN_SUCCESS)


def evaluate_sensor(instance, storage: Path, cursor: str | None):
    from dagster import build_sensor_context

    from whisperx_assets.defs.resources import MediaStoreResource
    from whisperx_assets.defs.sensors import media_inbox_sensor

    context = build_sensor_context(instance=instance, cursor=cursor,
                                   resources={"storage": MediaStoreResource(root=str(storage))})
    return media_inbox_sensor(context)


def seed(instance, storage: Path, count: int) -> str:
    """Let the sensor handle the whole inbox, each tick applied as the daemon applies it and each run recorded done;
    returns the cursor. Ticks take all files at once, in runs of RUN_FILES files, without probing (the stand-in files
    are not media)."""
    from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

    from whisperx_assets.definitions import defs
    from whisperx_assets.defs.jobs import process_media_job, run_keys
    from whisperx_assets.defs.partitions import media_files

    settings = {"SENSOR_MAX_FILES_PER_TICK": str(count), "BATCH_MAX_AUDIO_SECONDS": "0",
                "BATCH_MAX_FILES": str(RUN_FILES)}
    os.environ.update(settings)
    job, cursor, runs = defs.resolve_job_def(process_media_job.name), None, 0
    while (result := evaluate_sensor(instance, storage, cursor)).run_requests:
        cursor = result.cursor
        keys = list(result.dynamic_partitions_requests[0].partition_keys)
        for i in range(0, len(keys), 10_000):  # one call for all would pass SQLite too many variables
            instance.add_dynamic_partitions(media_files.name, keys[i:i + 10_000])
        order = instance.get_dynamic_partitions(media_files.name)
        position = {key: i for i, key in enumerate(order)}
        for start in range(0, len(result.run_requests), 10):
            with batched_event_writes(instance):
                for request in result.run_requests[start:start + 10]:
                    tags = {**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: "media_inbox_sensor"}
                    run = instance.create_run_for_job(job_def=job, tags=tags)
                    record_run_done(instance, run, run_keys(tags, order, position), runs % FAILING_RUN_EVERY == 1)
                    runs += 1
    for name in settings:
        del os.environ[name]
    return result.cursor


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    """(median wall seconds over `repeat` calls, the last result)."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def graphql_seconds(url: str, query: str, variables: dict) -> float:
    """Wall seconds of one GraphQL request, with the variables `query` declares."""
    used = {name: value for name, value in variables.items() if f"${name}:" in query}
    body = json.dumps({"query": query, "variables": used}).encode()
    request = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise RuntimeError(answer["errors"])
    return time.perf_counter() - started


def cli_list(url: str, bytecode: Path, *args: str) -> tuple[float, dict]:
    """(wall seconds, JSON answer) of `whisperx-assets list` in a process of its own. Its compiled bytecode is cached
    in `bytecode`, as an installed CLI's is, even where PYTHONDONTWRITEBYTECODE is set."""
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "PYTHONPYCACHEPREFIX": str(bytecode)}
    started = time.perf_counter()
    run = subprocess.run([str(Path(sys.executable).parent / "whisperx-assets"), "--url", url, "--json", "list", *args],
                         capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    if run.returncode:
        raise RuntimeError(run.stderr[-2000:])
    return time.perf_counter() - started, json.loads(run.stdout)


def measure(count: int, workdir: Path) -> dict:
    from dagster import DagsterInstance

    from whisperx_assets.evaluation.servers import Deployment

    deployment = Deployment(workdir / f"n{count}")
    os.environ.update(DAGSTER_HOME=str(deployment.home), INBOX_URL=str(deployment.inbox),
                      STORAGE_URL=str(deployment.storage))
    row: dict = {"partitions": count}
    started = time.perf_counter()
    make_inbox(deployment.inbox, count)
    with DagsterInstance.get() as instance:
        cursor = seed(instance, deployment.storage, count)
        row["seed_seconds"] = time.perf_counter() - started
        row["idle_tick_seconds"], idle = timed(lambda: evaluate_sensor(instance, deployment.storage, cursor), 5)
        assert idle.cursor == cursor and not idle.run_requests
        row["cursor_bytes"] = len(cursor.encode())
        state = deployment.storage / "inbox-state" / f"{json.loads(cursor)['state']}.json"
        row["state_bytes"] = state.stat().st_size
        late = deployment.inbox / "late" / "late call.wav"
        late.parent.mkdir()
        late.write_bytes(b"late")
        os.utime(late, (time.time() - 60,) * 2)
        row["new_file_tick_seconds"], busy = timed(lambda: evaluate_sensor(instance, deployment.storage, cursor))
        assert len(busy.run_requests) == 1
        keys = instance.get_dynamic_partitions("media_files")
    deployment.start_webserver()
    try:
        from whisperx_assets.api.client import WhisperXClient

        bytecode = workdir / "bytecode"
        cli_list(deployment.url, bytecode, "--limit", "1")  # compiles and caches the CLI's modules
        row["list_first_page_seconds"], page = cli_list(deployment.url, bytecode)
        row["list_next_page_seconds"], _ = cli_list(deployment.url, bytecode, "--cursor", page["cursor"])
        row["list_first_page_answer_seconds"], _ = timed(WhisperXClient(deployment.url).partition_states, 3)
        row["list_page_rows"] = len(page["partitions"])
        # a page of failed partitions also reads their failures (one run's for all of a batch)
        client = WhisperXClient(deployment.url)
        failed = dict.fromkeys(sorted(client.failed_partitions())[:100], "transcript")
        row["list_failures_of_100_seconds"], reasons = timed(lambda: client.failures(failed))
        assert all(reasons.values()), "a failed partition without its failure"
        for asset in ("media", "combined"):
            variables = {"assetKey": {"path": [asset]}, "partitionKey": keys[count // 2], "partitions": keys[-50:]}
            for name, query in UI_QUERIES.items():
                cold = graphql_seconds(deployment.url, query, variables)
                warm = statistics.median(graphql_seconds(deployment.url, query, variables) for _ in range(3))
                row[f"ui {name} ({asset})"] = {"cold_seconds": cold, "warm_seconds": warm}
    finally:
        deployment.stop()
    return row


def tables(rows: list[dict]) -> str:
    """The sensor and `list` figures, then the UI's queries, one column per partition count."""
    lines = ["| partitions | idle tick s | cursor bytes | handled-files state bytes | tick with 1 new file s | "
             "`list` first page s (its GraphQL) | `list` next page s | failures of 100 failed partitions s |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['partitions']:,} | {r['idle_tick_seconds']:.2f} | {r['cursor_bytes']} | {r['state_bytes']:,} | "
              f"{r['new_file_tick_seconds']:.2f} | {r['list_first_page_seconds']:.1f} "
              f"({r['list_first_page_answer_seconds']:.2f}) | {r['list_next_page_seconds']:.1f} | "
              f"{r['list_failures_of_100_seconds']:.2f} |" for r in rows]
    lines += ["", "| UI query (asset), cold / warm s | " + " | ".join(f"{r['partitions']:,}" for r in rows) + " |",
              "|---|" + "---|" * len(rows)]
    for name in (k for k in rows[0] if k.startswith("ui ")):
        lines.append(f"| {name[3:]} | " + " | ".join(f"{r[name]['cold_seconds']:.2f} / {r[name]['warm_seconds']:.2f}"
                                                    for r in rows) + " |")
    return "\n".join(lines)


def main() -> None:
    counts = [int(n) for n in sys.argv[1:]] or [10_000, 100_000]
    rows = []
    with tempfile.TemporaryDirectory(prefix="whisperx-scale-") as tmp:
        for count in counts:
            print(f"{count} partitions ...", file=sys.stderr, flush=True)
            rows.append(measure(count, Path(tmp)))
            print(json.dumps(rows[-1], indent=2), file=sys.stderr, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}
    (RESULTS / f"scale-{time.strftime('%Y%m%d')}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(tables(rows))


if __name__ == "__main__":
    main()
