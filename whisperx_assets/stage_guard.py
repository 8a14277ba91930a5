"""How a stage runs over the partitions of its step, and how it fails.

A run covers one partition or a batch of them (see `jobs`); every stage works file by file. For each file:
- bad media (`MediaError`) fails that file for good, never retried;
- other errors retry the step with capped exponential backoff and jitter (`RetryRequested`, using
  RETRY_MAX_ATTEMPTS, RETRY_INITIAL_INTERVAL, RETRY_BACKOFF_COEFFICIENT, RETRY_MAX_INTERVAL), because
  Dagster's `RetryPolicy` cannot cap its delay; files already done in this run are kept (`memo`), so a
  retry only redoes the rest; a CUDA out-of-memory error frees the models and cached audio first;
- a per-stage time limit (TRANSCRIPTION_TIMEOUT, ...) raises inside the stage via SIGALRM, so the step
  fails (and may be retried) instead of hanging the run.
The other files of the step go on. If any file failed, the step fails with `Failure` whose metadata
`failed_partitions` maps each failed partition to its reason: Dagster cannot mark single partitions of a
multi-partition step failed, so `split_failed_batch_sensor` reads it and re-runs the batch without them.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from typing import Callable, TypeVar

from dagster import Failure, MetadataValue, RetryRequested

from whisperx_assets.settings import PipelineSettings
from whisperx_assets.speech.errors import MediaError, ModelUnavailableError

FAILED_PARTITIONS = "failed_partitions"  # Failure metadata: {partition key: reason}

In = TypeVar("In")
Out = TypeVar("Out")


class StageTimeout(TimeoutError):
    pass


def retry_delay(settings: PipelineSettings, retry_number: int) -> float:
    delay = settings.retry_initial_interval * settings.retry_backoff_coefficient ** retry_number
    delay = min(delay, settings.retry_max_interval)
    return max(0.0, delay * random.uniform(0.75, 1.25))


def is_cuda_out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return "out of memory" in text and ("cuda" in text or "outofmemory" in text)


@contextlib.contextmanager
def time_limit(seconds: float, stage: str):
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise StageTimeout(f"{stage} took longer than its time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_stage(context, stage: str, inputs: dict[str, In], work: Callable[[str, In], Out],
              memo: dict[str, Out] | None = None, on_out_of_memory: Callable[[], None] | None = None,
              settings: PipelineSettings | None = None) -> dict[str, Out]:
    """`work(key, input)` for every partition of the step, in order; {key: result}, or `Failure`/`RetryRequested`
    as described above. `memo` keeps results across retries of the step (the resource outlives them)."""
    settings = settings or PipelineSettings.from_env()
    memo = {} if memo is None else memo
    bad_media: dict[str, MediaError] = {}
    failed: dict[str, str] = {}
    for key, value in inputs.items():
        if key in memo:
            continue
        try:
            with time_limit(settings.stage_timeout(stage), stage):
                memo[key] = work(key, value)
        except MediaError as exc:
            bad_media[key] = exc
        except ModelUnavailableError as exc:  # the same for every file: not a file's fault, nothing to split
            raise Failure(description=f"Model unavailable, not retried: {exc}", allow_retries=False) from exc
        except Exception as exc:
            if is_cuda_out_of_memory(exc) and on_out_of_memory is not None:
                on_out_of_memory()
            if context.retry_number + 1 < settings.retry_max_attempts:
                wait = retry_delay(settings, context.retry_number)
                context.log.warning(f"{stage} failed for {key} ({type(exc).__name__}: {exc}); retry "
                                    f"{context.retry_number + 1} of {settings.retry_max_attempts - 1} in {wait:.1f} s")
                raise RetryRequested(max_retries=settings.retry_max_attempts - 1, seconds_to_wait=wait) from exc
            failed[key] = f"{type(exc).__name__}: {exc}"
            context.log.error(f"{stage} failed for {key} after {settings.retry_max_attempts} attempts: {failed[key]}")
    if bad_media or failed:
        reasons = {**{key: str(exc) for key, exc in bad_media.items()}, **failed}
        metadata = {FAILED_PARTITIONS: MetadataValue.json(reasons)}
        if len(bad_media) == 1 and not failed:
            (exc,) = bad_media.values()
            metadata.update(file=MetadataValue.path(exc.path), reason=exc.reason)
        what = "Bad media, not retried" if not failed else f"{stage} failed"
        count = f" ({len(reasons)} of {len(inputs)} files)" if len(inputs) > 1 else ""
        details = "; ".join(reason if key in bad_media else f"{key}: {reason}" for key, reason in reasons.items())
        raise Failure(description=f"{what}{count}: {details}", metadata=metadata, allow_retries=False)
    results = {key: memo[key] for key in inputs}
    memo.clear()
    return results
