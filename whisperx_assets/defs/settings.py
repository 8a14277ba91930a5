"""The Dagster layer's settings (storage, inbox, retries, time limits, batching), from the environment.
Speech options are `whisperx_assets.speech.SpeechConfig`; URL download limits `inputs.fetch.FetchPolicy`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from whisperx_assets.settings import EnvSettings


class PipelineSettings(EnvSettings):
    invalid = "invalid pipeline settings"

    storage_url: str = Field("media/storage", description="ingested media, Parquet outputs, exports: a folder or "
                             "an object store URL (`s3://bucket/prefix`)")
    inbox_url: str = Field("media/inbox", description="folder or object store prefix watched by media_inbox_sensor")
    speakers_dir: str = Field("media/speakers", description="enrolled people: a folder (or object store prefix) "
                              "per person holding voice clips; watched by speakers_sensor")
    voices_refresh_seconds: float = Field(300.0, ge=0, description="least seconds between two refreshes of "
                                          "`voices` while files keep arriving (each refresh reads the files "
                                          "embedded since the last, in a run of its own)")
    source_roots: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="folders or object store prefixes a run may read a local or object source from, "
        "comma-separated (unset: the inbox); a source elsewhere is refused, the CLI copies it into the store")
    retry_max_attempts: int = Field(3, ge=1, description="tries per stage, the first included")
    retry_initial_interval: float = Field(5.0, ge=0, description="seconds before the first retry")
    retry_backoff_coefficient: float = Field(2.0, ge=1, description="each retry waits this many times longer")
    retry_max_interval: float = Field(300.0, ge=0, description="longest wait between retries, seconds")
    transcription_timeout: float = Field(1800.0, gt=0, description="seconds per file for `transcript`")
    alignment_timeout: float = Field(600.0, gt=0, description="seconds per file for `alignment`")
    diarization_timeout: float = Field(600.0, gt=0, description="seconds per file for `diarization`")
    speaker_assignment_timeout: float = Field(300.0, gt=0, description="seconds per file for `combined`")
    sensor_interval: int = Field(10, ge=1, description="seconds between inbox scans")
    sensor_max_files_per_tick: int = Field(500, ge=1, description="files hashed and registered per sensor tick")
    sensor_settle_seconds: float = Field(2.0, ge=0, description="a file must be unchanged this long to be picked up")
    audio_cache_seconds: float = Field(3600.0, ge=0, description="decoded audio kept per run (230 MB per hour)")
    batch_max_files: int = Field(32, ge=1, description="partitions per run (files arriving together, backfills); "
                                 "1 = one run per file")
    batch_max_audio_seconds: float = Field(3600.0, ge=0, description="audio seconds per run of files arriving "
                                           "together (as each file declares it, probed when it is registered; a "
                                           "longer file runs alone); 0 = no bound, no probe")
    callback_max_attempts: int = Field(5, ge=1, description="tries per `submit --callback-url` POST, the first "
                                       "included (connection errors and HTTP 5xx are retried, 4xx is not)")
    callback_initial_interval: float = Field(1.0, ge=0, description="seconds before the first callback retry; "
                                             "doubled for each next one")
    callback_timeout: float = Field(5.0, gt=0, description="seconds per callback POST (connect, send, response)")
    callback_dagster_url: str | None = Field(None, description="the UI's base URL; when set, callbacks carry "
                                             "`dagster_url` (`<url>/runs/<run id>`)")

    @field_validator("source_roots", mode="before")
    @classmethod
    def comma_separated(cls, value):
        return tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else value

    def readable_roots(self) -> tuple[str, ...]:
        """Where sources may be read from: SOURCE_ROOTS, else the inbox."""
        return self.source_roots or (self.inbox_url,)

    def stage_timeout(self, stage: str) -> float:
        return {"transcript": self.transcription_timeout, "alignment": self.alignment_timeout,
                "diarization": self.diarization_timeout, "combined": self.speaker_assignment_timeout}.get(stage, 0.0)
