"""All assets materialized on a real Dagster instance with the real models and real recordings."""

import shutil

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from whisperx_assets.assets import alignment, combined, diarization, media, subtitles, transcript
from whisperx_assets.io_managers import ParquetIOManager
from whisperx_assets.partitions import content_hash, media_files, partition_key
from whisperx_assets.resources import MediaStoreResource, WhisperXResource
from whisperx_assets.speech.frames import WORD_TABLE_DTYPES
from whisperx_assets.speech.quality import diarization_error_rate, word_error_rate
from whisperx_assets.store import MediaStore

ASSETS = [media, transcript, alignment, diarization, combined, subtitles]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, speech_config):
    """A real instance, a store, and resources; `run(path)` registers a file and materializes everything."""
    root = tmp_path_factory.mktemp("pipeline")
    store = MediaStore(root / "storage")
    whisperx = WhisperXResource()
    resources = {"whisperx": whisperx, "storage": MediaStoreResource(root=str(store.root)),
                 "io_manager": ParquetIOManager(base_dir=str(store.root))}
    with DagsterInstance.ephemeral() as instance:
        def run(path, raise_on_error=True):
            sha = content_hash(path)
            key = partition_key(path.name, sha)
            store.register_source(key, str(path), path.name, sha)
            instance.add_dynamic_partitions(media_files.name, [key])
            result = materialize(ASSETS, partition_key=key, instance=instance, resources=resources,
                                 raise_on_error=raise_on_error)
            return key, result

        yield run, store, instance


def read(store, asset, key):
    return pd.read_parquet(store.root / asset / f"{key}.parquet")


@pytest.fixture(scope="module")
def dialogue_run(pipeline, dialogue, tmp_path_factory):
    run, store, instance = pipeline
    path = tmp_path_factory.mktemp("in") / "Planning Meeting.wav"
    shutil.copy(dialogue.path, path)
    key, result = run(path)
    return key, result


def test_dialogue_all_assets(pipeline, dialogue, dialogue_run):
    run, store, instance = pipeline
    key, result = dialogue_run
    assert result.success and key.startswith("planning-meeting-")
    for asset in ("media", "transcript", "alignment", "diarization", "combined", "subtitles"):
        assert (store.root / asset / f"{key}.parquet").is_file(), asset
    assert (store.root / "inputs" / f"{key}.wav").is_file()
    words = read(store, "combined", key)
    assert {c: str(t) for c, t in words.dtypes.items()} == WORD_TABLE_DTYPES
    assert word_error_rate(dialogue.text, " ".join(words["word"].dropna())) <= 0.10
    assert words["speaker"].notna().all()
    assert diarization_error_rate(dialogue.turns, read(store, "diarization", key)) <= 0.10
    files = read(store, "subtitles", key)
    assert sorted(files["format"]) == sorted(["srt", "vtt", "txt", "tsv", "json", "aud"])
    assert (store.subtitles_dir(key) / f"{key}.srt").read_text().startswith("1\n")


def test_metadata_and_checks(pipeline, dialogue_run):
    run, store, instance = pipeline
    key, result = dialogue_run
    by_asset = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    transcript_md = by_asset["transcript"].materialization.metadata
    assert transcript_md["language"].value == "en" and transcript_md["model"].value == "base"
    assert transcript_md["dagster/row_count"].value >= 1 and "real_time_factor" in transcript_md
    assert "dagster/column_schema" in transcript_md and "preview" in transcript_md
    assert by_asset["diarization"].materialization.metadata["speakers"].value == 2
    assert by_asset["alignment"].materialization.metadata["backend"].value == "pocketsphinx"
    assert str(by_asset["combined"].materialization.metadata["path"].value).endswith(f"combined/{key}.parquet")
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 4 and all(c.passed for c in checks)


def test_real_recording(pipeline, sample):
    run, store, instance = pipeline
    key, result = run(sample.path)
    assert result.success
    assert word_error_rate(sample.text, " ".join(read(store, "combined", key)["word"].dropna())) <= 0.25


def test_bad_file_fails_once_and_others_are_unaffected(pipeline, tmp_path, dialogue_run):
    run, store, instance = pipeline
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"this is not audio" * 100)
    key, result = run(bad, raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failure) == 1 and failure[0].step_key == "media"
    assert "broken.mp3" in failure[0].event_specific_data.error.message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]  # no retries
    assert (store.root / "combined" / f"{dialogue_run[0]}.parquet").is_file()  # the good file's outputs stay


def test_digital_silence_is_not_an_error(pipeline, tmp_path):
    import numpy as np
    import soundfile as sf

    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16_000 * 4, dtype=np.float32), 16_000)
    run, store, instance = pipeline
    key, result = run(path)
    assert result.success
    assert len(read(store, "transcript", key)) == 0 and len(read(store, "combined", key)) == 0
