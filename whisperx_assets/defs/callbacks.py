"""Callbacks: when a run that its submitter asked to be told about ends, POST a JSON summary to their URL.

`whisperx-assets submit --callback-url URL` (or any launch of `process_media` with the run tag
`whisperx_assets/callback_url`) tags the run; three run status sensors (`callback_on_success`, `callback_on_failure`, `callback_on_canceled`)
see it end and POST

    {"status": "SUCCESS" | "FAILURE" | "CANCELED", "partition": key (a list for a batch run), "run_id": ...,
     "source": the submitted path or URL, "results": {"combined": Parquet path, "subtitles": folder} (a batch run:
     {key: {...}}) or null, "failure": "step: reason" or null, "dagster_url": ... (with CALLBACK_DAGSTER_URL)}

The URL passes the checks of URL inputs (`inputs.fetch`: scheme, no credentials, and every address it
resolves to public unless FETCH_ALLOW_PRIVATE_ADDRESSES=1; the connection goes to a checked address), when it
is submitted and again at each POST. Redirects are not followed. Connection errors and HTTP 5xx are retried
with exponential backoff (CALLBACK_MAX_ATTEMPTS tries, CALLBACK_INITIAL_INTERVAL seconds doubling, each try at
most CALLBACK_TIMEOUT seconds); a 4xx, a redirect or a refused address is final. Giving up is logged as an
error on the sensor's tick; nothing is retried later.

One callback per submission: a run that failed and that Dagster will retry (`dagster/will_retry`) sends none;
its retry inherits the tag and sends the final one. A run whose process died after its last step is recorded
successful by `split_failed_batch_sensor`, and reported as such, not as failed. A tick delivers one callback
at most (and returns a SkipReason saying what became of it), so a tick lasts at most DELIVERY_BUDGET_S;
runs without the tag cost a tag lookup.

Not handled: a run that ends before the sensors' first tick ever (a run status sensor starts at the latest
event); a failed run marked for retry whose retry then cannot be launched (the daemon turns `will_retry` to
false after the failure was seen: no callback); URLs are checked in the code server's environment.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from dagster import (AssetKey, AssetRecordsFilter, DagsterEventType, DagsterRunStatus, DefaultSensorStatus,
                     RunStatusSensorContext, SkipReason, run_status_sensor)
from dagster._core.storage.tags import WILL_RETRY_TAG

from whisperx_assets.defs.jobs import process_media_job, run_keys
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.sensors import step_progress
from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.defs.stage_guard import backoff
from whisperx_assets.inputs.fetch import FetchError, FetchPolicy, post_json, redact
from whisperx_assets.speech.errors import MediaError

log = logging.getLogger(__name__)

CALLBACK_TAG = "whisperx_assets/callback_url"
SOURCE_TAG = "whisperx_assets/source"
DELIVERY_BUDGET_S = 45.0  # one delivery, all tries and waits: well inside the default 60 s sensor timeout


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    attempts: int
    outcome: str  # "HTTP 200", or the last error


def deliver(url: str, payload: dict, max_attempts: int = 5, initial_interval: float = 1.0, timeout: float = 5.0,
            budget: float = DELIVERY_BUDGET_S, policy: FetchPolicy | None = None,
            sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """POST `payload` to `url`, retrying connection errors and HTTP 5xx after `initial_interval` seconds, doubling,
    up to `max_attempts` tries and no later than `budget` seconds after the start (a try that could not end
    within it is not begun). 2xx delivers; 4xx, 3xx and refusals are final."""
    start = time.monotonic()
    for attempt in range(1, max_attempts + 1):
        try:
            status = post_json(url, payload, min(timeout, budget), policy)
        except MediaError as exc:
            return Delivery(False, attempt, exc.reason)
        except FetchError as exc:
            outcome, retry = exc.reason, True
        else:
            outcome, retry = f"HTTP {status}", status >= 500
            if 200 <= status < 300:
                return Delivery(True, attempt, outcome)
        if not retry or attempt == max_attempts:
            return Delivery(False, attempt, outcome)
        delay = backoff(initial_interval, 2, attempt - 1)
        if time.monotonic() - start + delay + timeout > budget:
            return Delivery(False, attempt, f"{outcome} (no time left for another try in {budget:g} s)")
        log.info("callback to %s: %s; trying again in %g s", redact(url), outcome, delay)
        sleep(delay)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------------------
# The summary of a run


def run_partitions(instance, run) -> str | list[str] | None:
    """The run's partition, or the keys of its range (a batch run)."""
    if "dagster/partition" in run.tags:
        return run.tags["dagster/partition"]
    keys = run_keys(run.tags, instance.get_dynamic_partitions(media_files.name))
    return keys or None


def _latest_metadata(instance, asset: str, key: str, label: str) -> str | None:
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[key]),
                                              limit=1).records
    entry = records[0].asset_materialization.metadata.get(label) if records and records[0].asset_materialization \
        else None
    return None if entry is None else str(entry.value)


def results(instance, key: str) -> dict | None:
    """Where partition `key`'s results are: the combined Parquet file and the subtitles folder."""
    found = {"combined": _latest_metadata(instance, "combined", key, "path"),
             "subtitles": _latest_metadata(instance, "subtitles", key, "folder")}
    return found if any(found.values()) else None


def failure_reason(instance, run) -> str | None:
    """The run's last step failure as "step: message", else its run failure or cancellation message."""
    steps = instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)
    for entry in reversed(steps):
        event = entry.dagster_event
        error = event.step_failure_data.error if event and event.step_failure_data else None
        if error is not None:
            return f"{event.step_key}: {error.message.strip()}"
    ends = instance.all_logs(run.run_id, of_type={DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED})
    return (ends[-1].dagster_event.message or ends[-1].message) if ends and ends[-1].dagster_event else None


def summary(instance, run, status: str, dagster_url: str | None = None) -> dict:
    """The JSON body of `run`'s callback."""
    partition = run_partitions(instance, run)
    found = None
    if status == "SUCCESS":
        found = results(instance, partition) if isinstance(partition, str) else \
            {key: results(instance, key) for key in partition or []} or None
    body = {"status": status, "partition": partition, "run_id": run.run_id, "source": run.tags.get(SOURCE_TAG),
            "results": found, "failure": None if status == "SUCCESS" else failure_reason(instance, run)}
    if dagster_url:
        body["dagster_url"] = f"{dagster_url.rstrip('/')}/runs/{run.run_id}"
    return body


def final_failure(instance, run) -> str | None:
    """Why a failed run is not (yet) its submission's end, or None: it is."""
    run = instance.get_run_by_id(run.run_id) or run  # the will-retry tag is added just after the failure event
    if run.tags.get(WILL_RETRY_TAG) == "true":
        return "Dagster will retry it; the retry sends the callback"
    planned, succeeded = step_progress(instance, run)
    if planned and succeeded.issuperset(planned):
        return "it had finished every step: it is recorded successful, and the success callback follows"
    return None


def notify(instance, run, status: str, logger, settings: PipelineSettings | None = None) -> SkipReason | None:
    """The callback of `run`, ended with `status`, if it has one: None for a run without (the sensor goes on
    to the next run), else a SkipReason saying what became of it (the tick ends)."""
    url = run.tags.get(CALLBACK_TAG)
    if not url or run.job_name != process_media_job.name:
        return None
    if status == "FAILURE" and (why := final_failure(instance, run)):
        return SkipReason(f"run {run.run_id} failed, no callback yet: {why}")
    settings = settings or PipelineSettings()
    delivery = deliver(url, summary(instance, run, status, settings.callback_dagster_url),
                       settings.callback_max_attempts, settings.callback_initial_interval, settings.callback_timeout)
    message = (f"callback for run {run.run_id} ({status}) to {redact(url)}: "
               f"{'delivered' if delivery.delivered else 'NOT delivered, given up'} after {delivery.attempts} "
               f"tr{'y' if delivery.attempts == 1 else 'ies'} ({delivery.outcome})")
    (logger.info if delivery.delivered else logger.error)(message)
    return SkipReason(message)


def _callback_sensor(status: DagsterRunStatus):
    @run_status_sensor(name=f"callback_on_{status.value.lower()}", run_status=status, minimum_interval_seconds=5,
                       default_status=DefaultSensorStatus.RUNNING,
                       description=f"POSTs the summary of each {status.value} run tagged {CALLBACK_TAG} to that URL")
    def _sensor(context: RunStatusSensorContext):
        return notify(context.instance, context.dagster_run, status.value, context.log)

    return _sensor


callback_on_success = _callback_sensor(DagsterRunStatus.SUCCESS)
callback_on_failure = _callback_sensor(DagsterRunStatus.FAILURE)
callback_on_canceled = _callback_sensor(DagsterRunStatus.CANCELED)
CALLBACK_SENSORS = [callback_on_success, callback_on_failure, callback_on_canceled]
