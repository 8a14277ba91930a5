"""How a stage runs over the partitions of its step, and how it fails.

A run covers one partition or a batch of them (see `jobs`); every stage works file by file. Each file's
output is written to the store as soon as it is done, tagged with the run's work (`jobs.work_id`): a retry
of the step, Dagster's re-execution of a crashed run, or a run that takes over a failed batch's files finds
it there and does not redo it. For each file:
- bad media (`MediaError`) fails that file for good, never retried;
- other errors retry the step with capped exponential backoff and jitter (`RetryRequested`, using
  RETRY_MAX_ATTEMPTS, RETRY_INITIAL_INTERVAL, RETRY_BACKOFF_COEFFICIENT, RETRY_MAX_INTERVAL), because
  Dagster's `RetryPolicy` cannot cap its delay; a CUDA out-of-memory error frees the models and cached
  audio first; a full or read-only store is retried the same way (space may be freed meanwhile), then fails
  the step without blaming any file;
- a per-stage time limit (TRANSCRIPTION_TIMEOUT, ...) raises inside the stage via SIGALRM, so the step
  fails (and may be retried) instead of hanging the run.
The other files of the step go on. If any file failed, the step fails with `Failure` whose metadata
`failed_partitions` maps each failed partition to its reason: Dagster cannot mark single partitions of a
multi-partition step failed, so `split_failed_batch_sensor` reads it and re-runs the batch without them.
"""

from __future__ import annotations

import contextlib
import errno
import math
import random
import signal
import threading
from typing import Callable, TypeVar

from dagster import Failure, MetadataValue, RetryRequested

from whisperx_assets.defs.jobs import work_id
from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.speech.errors import MediaError, ModelUnavailableError
from whisperx_assets.inputs.store import MediaStore, StageOutput

FAILED_PARTITIONS = "failed_partitions"  # Failure metadata: {partition key: reason}

In = TypeVar("In")
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


class StageTimeout(TimeoutError):
    pass


def backoff(initial: float, coefficient: float, attempt: int, maximum: float = math.inf) -> float:
    """Exponential backoff: the wait before retry `attempt` (0 for the first), at most `maximum` seconds."""
    return min(initial * coefficient ** attempt, maximum)


def retry_delay(settings: PipelineSettings, retry_number: int) -> float:
    delay = backoff(settings.retry_initial_interval, settings.retry_backoff_coefficient, retry_number,
                    settings.retry_max_interval)
    return max(0.0, delay * random.uniform(0.75, 1.25))


def is_cuda_out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return "out of memory" in text and ("cuda" in text or "outofmemory" in text)


def storage_problem(exc: BaseException) -> str | None:
    """What is wrong with the store, if `exc` says it is full or read-only (not any one file's fault)."""
    text = str(exc)
    if getattr(exc, "errno", None) in STORAGE_ERRNOS or "No space left on device" in text or "quota exceeded" in text:
        where = getattr(exc, "filename", None)
        return f"the store is full or read-only ({exc}){f' writing {where}' if where else ''}"
    return None


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


def run_stage(context, stage: str, inputs: dict[str, In], work: Callable[[str, In], StageOutput], store: MediaStore,
              on_out_of_memory: Callable[[], None] | None = None,
              settings: PipelineSettings | None = None) -> dict[str, StageOutput]:
    """`work(key, input)` for every partition of the step, in order, skipping files this run's work has already
    done; {key: output}, or `Failure`/`RetryRequested` as described above. `stage` is the asset's name."""
    settings = settings or PipelineSettings()
    work_of_run = work_id(context.run)
    results: dict[str, StageOutput] = {}
    bad_media: dict[str, MediaError] = {}
    failed: dict[str, str] = {}
    for key, value in inputs.items():
        if store.written_by(stage, key) == work_of_run:
            results[key] = store.read_output(stage, key)
            continue
        try:
            with time_limit(settings.stage_timeout(stage), stage):
                output = work(key, value)
            store.write_output(stage, key, output, work_of_run)
            results[key] = output
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
            problem = storage_problem(exc)
            if problem:  # every file would fail the same way: fail the step, blame no file
                raise Failure(description=f"{stage}: {problem}. Free space in STORAGE_URL, then re-execute this "
                                          "run from failure (files already done are kept).",
                                          allow_retries=False) from exc
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
    return results
