"""Pipeline settings (storage, inbox, retries, time limits) from the environment.

Speech options (model, device, language, ...) are `whisperx_assets.speech.SpeechConfig`; these are the
settings of the Dagster layer around it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PipelineSettings:
    storage_dir: Path = Path("media/storage")  # STORAGE_DIR: ingested media, Parquet, exports
    inbox_dir: Path = Path("media/inbox")  # INBOX_DIR: watched by media_inbox_sensor
    retry_max_attempts: int = 3  # RETRY_MAX_ATTEMPTS: tries per stage, the first included
    retry_initial_interval: float = 5.0  # RETRY_INITIAL_INTERVAL seconds
    retry_backoff_coefficient: float = 2.0  # RETRY_BACKOFF_COEFFICIENT
    retry_max_interval: float = 300.0  # RETRY_MAX_INTERVAL seconds
    transcription_timeout: float = 1800.0  # TRANSCRIPTION_TIMEOUT seconds
    alignment_timeout: float = 600.0  # ALIGNMENT_TIMEOUT
    diarization_timeout: float = 600.0  # DIARIZATION_TIMEOUT
    speaker_assignment_timeout: float = 300.0  # SPEAKER_ASSIGNMENT_TIMEOUT
    sensor_interval: int = 10  # SENSOR_INTERVAL seconds between inbox scans
    sensor_max_files_per_tick: int = 500  # SENSOR_MAX_FILES_PER_TICK
    sensor_settle_seconds: float = 2.0  # SENSOR_SETTLE_SECONDS: a file must be unchanged this long
    audio_cache_seconds: float = 3600.0  # AUDIO_CACHE_SECONDS of decoded audio kept per run (230 MB per hour)
    batch_max_files: int = 32  # BATCH_MAX_FILES: partitions per run (files arriving together, backfills)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "PipelineSettings":
        env = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.name.upper())
            if raw:
                kind = type(f.default)
                try:
                    values[f.name] = kind(raw)
                except ValueError:
                    raise ValueError(f"environment variable {f.name.upper()}={raw!r} is not a valid "
                                     f"{kind.__name__}") from None
        settings = cls(**values)
        if settings.retry_max_attempts < 1 or settings.retry_backoff_coefficient < 1:
            raise ValueError("RETRY_MAX_ATTEMPTS must be >= 1 and RETRY_BACKOFF_COEFFICIENT >= 1")
        if settings.batch_max_files < 1:
            raise ValueError("BATCH_MAX_FILES must be >= 1 (1 = one run per file)")
        return settings

    def stage_timeout(self, stage: str) -> float:
        return {"transcript": self.transcription_timeout, "alignment": self.alignment_timeout,
                "diarization": self.diarization_timeout, "combined": self.speaker_assignment_timeout}.get(stage, 0.0)
