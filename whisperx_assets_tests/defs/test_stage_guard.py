"""Retries with capped exponential backoff, no retries for bad media, OOM recovery, per-stage time limits, and
one file's failure in a batch run. Fast unit tests: a fake engine stands in for the models (the real-model
runs are in test_assets)."""

import time

import pandas as pd
import pytest
from dagster import AssetSpec, DagsterInstance, materialize

from whisperx_assets.defs.assets import transcript
from whisperx_assets.defs.io_managers import ParquetIOManager
from whisperx_assets.defs.jobs import RANGE_END, RANGE_START, RESUME_FROM
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.resources import MediaStoreResource, WhisperXResource
from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.speech.errors import MediaError
from whisperx_assets.speech.frames import StageFacts, segments_frame
from whisperx_assets.speech.transcribe import TranscriptResult
from whisperx_assets.defs.stage_guard import FAILED_PARTITIONS, retry_delay

KEY = "clip-0123456789ab"
BATCH = ["clip-a-0123456789ab", "clip-b-0123456789ab", "clip-c-0123456789ab"]


def test_retry_delay_backoff_and_cap():
    settings = PipelineSettings(retry_initial_interval=2, retry_backoff_coefficient=3, retry_max_interval=10)
    for attempt, expected in [(0, 2), (1, 6), (2, 10), (5, 10)]:
        delays = [retry_delay(settings, attempt) for _ in range(200)]
        assert expected * 0.75 <= min(delays) and max(delays) <= expected * 1.25
        assert max(delays) - min(delays) > 0  # jitter


class FakeEngine:
    """Fails as told: `failures` is a list (for every file, in call order) or {partition key: list}."""

    def __init__(self, failures):
        self.failures = failures if isinstance(failures, dict) else {None: list(failures)}
        self.calls = 0
        self.keys = []
        self.released_after_calls = []

    def transcribe(self, audio):
        self.calls += 1
        key = audio  # FakeWhisperX hands over the partition key instead of samples
        self.keys.append(key)
        failures = self.failures.get(key, self.failures.get(None, []))
        if failures:
            failure = failures.pop(0)
            if failure == "slow":
                time.sleep(5)
            else:
                raise failure
        facts = StageFacts("transcript", "fake", "fake", "cpu", 1.0, 0.1, language="en")
        return TranscriptResult(segments_frame([{"start": 0.0, "end": 1.0, "text": "hi"}], "en"), "en", 1.0, facts)

    def release(self):
        self.released_after_calls.append(self.calls)


FAKE_ENGINES: list[FakeEngine] = []  # Dagster copies resources, so the fake finds its engine here


class FakeWhisperX(WhisperXResource):
    def setup_for_execution(self, context):
        self._engine = FAKE_ENGINES[-1]

    def load_audio(self, path):
        return None, path.stem


@pytest.fixture
def run(tmp_path, monkeypatch):
    """Materialize the real `transcript` asset with a fake engine that fails as told, then succeeds."""
    monkeypatch.setenv("RETRY_INITIAL_INTERVAL", "0.01")
    monkeypatch.setenv("RETRY_MAX_ATTEMPTS", "3")
    io_manager = ParquetIOManager(root=str(tmp_path))
    (tmp_path / "media").mkdir()
    for key in [KEY, *BATCH]:
        pd.DataFrame([{"stored_path": str(tmp_path / f"{key}.wav"), "duration": 1.0}]).to_parquet(
            tmp_path / "media" / f"{key}.parquet")

    def go(failures, keys=(KEY,), tags=None):
        engine = FakeEngine(failures)
        FAKE_ENGINES.append(engine)
        resource = FakeWhisperX()
        tags = dict(tags or {})
        if len(keys) > 1:
            tags.update({RANGE_START: keys[0], RANGE_END: keys[-1]})
        with DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions("media_files", list(keys))
            result = materialize([AssetSpec("media", partitions_def=media_files), transcript], instance=instance,
                                 raise_on_error=False, tags=tags, partition_key=keys[0] if len(keys) == 1 else None,
                                 resources={"whisperx": resource, "io_manager": io_manager,
                                            "storage": MediaStoreResource(root=str(tmp_path))})
            events = [e.event_type_value for e in result.all_events]
        return result, engine, events

    return go


def test_transient_errors_are_retried(run):
    result, engine, events = run([RuntimeError("flaky disk"), ConnectionError("hub hiccup")])
    assert result.success and engine.calls == 3
    assert events.count("STEP_UP_FOR_RETRY") == 2


def test_retries_stop_after_max_attempts(run):
    result, engine, events = run([RuntimeError("1"), RuntimeError("2"), RuntimeError("3"), RuntimeError("4")])
    assert not result.success and engine.calls == 3
    assert events.count("STEP_UP_FOR_RETRY") == 2 and events.count("STEP_FAILURE") == 1


def test_bad_media_is_not_retried(run):
    result, engine, events = run([MediaError("/in/x.mp3", "not a readable media file")])
    assert not result.success and engine.calls == 1
    assert "STEP_UP_FOR_RETRY" not in events
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "/in/x.mp3: not a readable media file" in failure.event_specific_data.error.message


def test_cuda_out_of_memory_frees_memory_and_retries(run):
    oom = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    result, engine, events = run([oom])
    assert result.success and engine.calls == 2
    assert engine.released_after_calls[0] == 1  # memory freed before the retry


def test_stage_time_limit(run, monkeypatch):
    monkeypatch.setenv("TRANSCRIPTION_TIMEOUT", "0.5")
    monkeypatch.setenv("RETRY_MAX_ATTEMPTS", "1")
    started = time.monotonic()
    result, engine, events = run(["slow"])
    assert not result.success and time.monotonic() - started < 4.5
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "transcript took longer than its time limit of 0.5 s" in failure.event_specific_data.error.to_string()


def test_a_retry_in_a_batch_redoes_only_the_files_not_done(run):
    result, engine, events = run({BATCH[1]: [RuntimeError("flaky")]}, keys=BATCH)
    assert result.success and events.count("STEP_UP_FOR_RETRY") == 1
    assert engine.keys == [BATCH[0], BATCH[1], BATCH[1], BATCH[2]]
    materializations = {e.materialization.partition: e.materialization.metadata
                        for e in result.get_asset_materialization_events()}
    assert sorted(materializations) == BATCH
    # The file done before the retry keeps its own figures (read back from its stored output).
    assert materializations[BATCH[0]]["model"].value == "fake" and materializations[BATCH[0]]["language"].value == "en"


def test_a_file_that_keeps_failing_is_named_and_the_others_still_run(run, monkeypatch):
    monkeypatch.setenv("RETRY_MAX_ATTEMPTS", "2")
    result, engine, events = run({BATCH[0]: [RuntimeError("model crashed")] * 5}, keys=BATCH)
    assert not result.success and events.count("STEP_UP_FOR_RETRY") == 1
    assert engine.keys == [BATCH[0], BATCH[0], BATCH[1], BATCH[2]]  # the rest ran after the last attempt
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    named = failure.step_failure_data.user_failure_data.metadata[FAILED_PARTITIONS].value
    assert named == {BATCH[0]: "RuntimeError: model crashed"}
    assert "transcript failed (1 of 3 files)" in failure.event_specific_data.error.message


def test_a_run_taking_over_a_failed_batch_keeps_the_files_it_finished(run, tmp_path):
    """A bad file fails the batch step; the run that takes over (a split run, with the failed run's work)
    redoes only that file. A run of other work (a deliberate re-run) recomputes everything."""
    bad = MediaError("/in/c.mp3", "truncated")
    failed, engine, _ = run({BATCH[2]: [bad]}, keys=BATCH)
    assert not failed.success and engine.keys == BATCH
    assert {p.name for p in (tmp_path / "transcript").iterdir()} == {f"{k}.parquet" for k in BATCH[:2]}
    resumed, engine, _ = run({}, keys=BATCH, tags={RESUME_FROM: failed.run_id})
    assert resumed.success and engine.keys == [BATCH[2]]
    again, engine, _ = run({}, keys=BATCH)
    assert again.success and engine.keys == BATCH


def test_a_full_store_is_retried_then_fails_the_step_without_blaming_a_file(run):
    import errno

    full = OSError(errno.ENOSPC, "No space left on device")
    result, engine, events = run({BATCH[1]: [full] * 5}, keys=BATCH)
    assert not result.success and events.count("STEP_UP_FOR_RETRY") == 2
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "the store is full or read-only" in failure.event_specific_data.error.message
    user = failure.step_failure_data.user_failure_data
    assert user is None or FAILED_PARTITIONS not in (user.metadata or {})  # not split file by file


FLAKY_LOADS: list[str] = []  # files whose first decode fails (Dagster copies resources: state lives here)


class FlakyLoadWhisperX(WhisperXResource):
    def load_audio(self, path):
        if path.stem in FLAKY_LOADS:
            FLAKY_LOADS.remove(path.stem)
            raise RuntimeError("transient read error")
        return super().load_audio(path)


def test_media_keeps_each_files_metadata_across_a_step_retry(tmp_path, monkeypatch):
    """`media` for a batch whose 2nd file fails once: the retry skips the 1st file (done by this work), whose
    materialization still carries its own probe figures."""
    import numpy as np
    import soundfile as sf

    from whisperx_assets.defs.assets import media
    from whisperx_assets.inputs.sources import identify
    from whisperx_assets.inputs.store import MediaStore

    monkeypatch.setenv("RETRY_INITIAL_INTERVAL", "0.01")
    monkeypatch.setenv("SOURCE_ROOTS", str(tmp_path))
    store = MediaStore(tmp_path / "store")
    sources = []
    for name, seconds in (("first.wav", 1.0), ("second.wav", 2.0)):
        sf.write(tmp_path / name, np.zeros(int(16_000 * seconds), dtype=np.float32), 16_000)
        sources.append(identify(tmp_path / name))
        store.register(sources[-1])
    keys = [s.key for s in sources]
    FLAKY_LOADS[:] = [keys[1]]
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(media_files.name, keys)
        result = materialize([media], instance=instance, tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
                             resources={"whisperx": FlakyLoadWhisperX(), "storage": MediaStoreResource(root=str(store.root)),
                                        "io_manager": ParquetIOManager(root=str(store.root))})
    assert result.success and not FLAKY_LOADS
    assert [e.event_type_value for e in result.all_events].count("STEP_UP_FOR_RETRY") == 1
    metadata = {e.materialization.partition: e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert {key: metadata[key]["audio_seconds"].value for key in keys} == {keys[0]: 1.0, keys[1]: 2.0}
    assert metadata[keys[0]]["name"].value == "first.wav" and metadata[keys[0]]["dagster/row_count"].value == 1
