"""How a stage fails: bad media at once and for good, transient errors retried with capped backoff.

Dagster's `RetryPolicy` doubles its delay with no cap, so stages ask for retries themselves with
`RetryRequested`, using RETRY_MAX_ATTEMPTS, RETRY_INITIAL_INTERVAL, RETRY_BACKOFF_COEFFICIENT and
RETRY_MAX_INTERVAL, with +/-25 % jitter. Per-stage time limits (TRANSCRIPTION_TIMEOUT, ...) raise inside
the stage via SIGALRM, so the step fails (and may be retried) instead of hanging the run.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading

from dagster import Failure, MetadataValue, RetryRequested

from whisperx_assets.settings import PipelineSettings
from whisperx_assets.speech.errors import MediaError, ModelUnavailableError


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


@contextlib.contextmanager
def stage_guard(context, stage: str, settings: PipelineSettings, on_out_of_memory=None):
    try:
        with time_limit(settings.stage_timeout(stage), stage):
            yield
    except MediaError as exc:
        raise Failure(description=f"Bad media, not retried: {exc}",
                      metadata={"file": MetadataValue.path(exc.path), "reason": exc.reason},
                      allow_retries=False) from exc
    except ModelUnavailableError as exc:
        raise Failure(description=f"Model unavailable, not retried: {exc}", allow_retries=False) from exc
    except Exception as exc:
        if is_cuda_out_of_memory(exc) and on_out_of_memory is not None:
            on_out_of_memory()
        if context.retry_number + 1 < settings.retry_max_attempts:
            wait = retry_delay(settings, context.retry_number)
            context.log.warning(f"{stage} failed ({type(exc).__name__}: {exc}); retry "
                                f"{context.retry_number + 1} of {settings.retry_max_attempts - 1} in {wait:.1f} s")
            raise RetryRequested(max_retries=settings.retry_max_attempts - 1, seconds_to_wait=wait) from exc
        raise
