"""All assets materialized on a real Dagster instance with the real models and real recordings, one file per
run and several files in one run (a contiguous range of partitions)."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from dagster import DagsterInstance, materialize

from whisperx_assets.defs.assets import ASSET_NAMES, ASSETS
from whisperx_assets.defs.io_managers import ParquetIOManager
from whisperx_assets.defs.jobs import RANGE_END, RANGE_START
from whisperx_assets.inputs.sources import identify
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.resources import MediaStoreResource, WhisperXResource
from whisperx_assets.defs.sensors import split_plan
from whisperx_assets.speech.frames import WORD_TABLE_DTYPES
from whisperx_assets.evaluation.quality import diarization_error_rate, word_error_rate
from whisperx_assets.defs.stage_guard import FAILED_PARTITIONS
from whisperx_assets.inputs.store import MediaStore



@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, speech_config):
    """A real instance, a store, and resources; `run(paths)` registers files as the inbox sensor does (one
    partition each, added together) and materializes everything for all of them in one run."""
    root = tmp_path_factory.mktemp("pipeline")
    store = MediaStore(root / "storage")
    whisperx = WhisperXResource()
    resources = {"whisperx": whisperx, "storage": MediaStoreResource(root=str(store.root)),
                 "io_manager": ParquetIOManager(root=str(store.root))}
    with DagsterInstance.ephemeral() as instance, pytest.MonkeyPatch.context() as env:
        def register(paths):
            keys = []
            env.setenv("SOURCE_ROOTS", ",".join(str(Path(path).parent) for path in paths))  # read where they are
            for path in paths:
                source = identify(path)
                store.register(source)
                keys.append(source.key)
            instance.add_dynamic_partitions(media_files.name, keys)
            return keys

        def run_keys(keys, raise_on_error=True):
            if len(keys) == 1:
                return materialize(ASSETS, partition_key=keys[0], instance=instance, resources=resources,
                                   raise_on_error=raise_on_error)
            return materialize(ASSETS, instance=instance, resources=resources, raise_on_error=raise_on_error,
                               tags={RANGE_START: keys[0], RANGE_END: keys[-1]})

        def run(paths, raise_on_error=True):
            keys = register(paths)
            return keys, run_keys(keys, raise_on_error)

        yield run, run_keys, store, instance


def read(store, asset, key):
    return pd.read_parquet(store.root / asset / f"{key}.parquet")


def silence(path, seconds):
    sf.write(path, np.zeros(int(16_000 * seconds), dtype=np.float32), 16_000)
    return path


@pytest.fixture(scope="module")
def batch_run(pipeline, dialogue, sample, tmp_path_factory):
    """The dialogue, pyannote's sample and digital silence: three partitions, one run."""
    run, _, store, instance = pipeline
    folder = tmp_path_factory.mktemp("in")
    shutil.copy(dialogue.path, folder / "Planning Meeting.wav")
    keys, result = run([folder / "Planning Meeting.wav", sample.path, silence(folder / "silence.wav", 4)])
    return keys, result


def test_dialogue_all_assets(pipeline, dialogue, batch_run):
    run, _, store, instance = pipeline
    (key, *_), result = batch_run
    assert result.success and key.startswith("planning-meeting-")
    for asset in ASSET_NAMES:
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


def test_one_run_materializes_every_partition_with_its_own_metadata(pipeline, batch_run):
    run, _, store, instance = pipeline
    keys, result = batch_run
    events = result.get_asset_materialization_events()
    by = {(m.materialization.asset_key.to_user_string(), m.materialization.partition): m.materialization.metadata
          for m in events}
    assert set(by) == {(a.key.to_user_string(), k) for a in ASSETS for k in keys}
    dialogue_key, sample_key, silence_key = keys
    for key in keys:  # each partition's own figures, and the path of its own file
        assert str(by[("combined", key)]["path"].value).endswith(f"combined/{key}.parquet")
        assert by[("media", key)]["name"].value in ("Planning Meeting.wav", "sample.wav", "silence.wav")
    assert by[("transcript", dialogue_key)]["language"].value == "en"
    assert by[("transcript", dialogue_key)]["model"].value == "base"
    assert "real_time_factor" in by[("transcript", dialogue_key)] and "preview" in by[("transcript", dialogue_key)]
    assert by[("transcript", dialogue_key)]["dagster/row_count"].value >= 1
    assert by[("transcript", silence_key)]["dagster/row_count"].value == 0
    assert by[("media", sample_key)]["audio_seconds"].value != by[("media", dialogue_key)]["audio_seconds"].value
    assert by[("diarization", dialogue_key)]["speakers"].value == 2
    assert by[("alignment", dialogue_key)]["backend"].value == "pocketsphinx"
    assert by[("alignment", silence_key)]["backend"].value == "none (empty transcript)"
    assert by[("transcript", dialogue_key)]["speech_regions"].value >= 8  # at least one per turn
    assert by[("transcript", dialogue_key)]["speech_missing"].value == "none"
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 5 and all(c.passed for c in checks)
    assert all(c.metadata["partitions_checked"].value == 3 for c in checks)


def test_real_recording(pipeline, sample, batch_run):
    run, _, store, instance = pipeline
    keys, result = batch_run
    assert word_error_rate(sample.text, " ".join(read(store, "combined", keys[1])["word"].dropna())) <= 0.25


def test_digital_silence_is_not_an_error(pipeline, batch_run):
    run, _, store, instance = pipeline
    keys, result = batch_run
    assert len(read(store, "transcript", keys[2])) == 0 and len(read(store, "combined", keys[2])) == 0


def step_failures(result):
    return [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]


def test_bad_file_fails_once_and_others_are_unaffected(pipeline, tmp_path, batch_run):
    run, _, store, instance = pipeline
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"this is not audio" * 100)
    [key], result = run([bad], raise_on_error=False)
    assert not result.success
    [failure] = step_failures(result)
    assert failure.step_key == "media"
    assert f"Bad media, not retried: {bad}:" in failure.event_specific_data.error.message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]  # no retries
    assert (store.root / "combined" / f"{batch_run[0][0]}.parquet").is_file()  # earlier outputs stay


def test_bad_file_in_a_batch_is_named_and_split_off(pipeline, tmp_path):
    """The batch fails at `media`, naming only the bad file; split as `split_failed_batch_sensor` does,
    the good files succeed together and the bad one fails alone with its reason."""
    run, run_keys, store, instance = pipeline
    bad = tmp_path / "truncated.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    paths = [silence(tmp_path / "quiet one.wav", 2), silence(tmp_path / "quiet two.wav", 3), bad]
    keys, result = run(paths, raise_on_error=False)
    assert not result.success
    [failure] = step_failures(result)
    assert failure.step_key == "media"
    failed = failure.step_failure_data.user_failure_data.metadata[FAILED_PARTITIONS].value
    assert list(failed) == [keys[2]] and str(bad) in failed[keys[2]]
    assert "1 of 3 files" in failure.event_specific_data.error.message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert not result.get_asset_materialization_events()  # Dagster records none of a failed step's partitions

    good, alone = split_plan(keys, set(failed))
    assert good == keys[:2] and alone == [keys[2]]
    result = run_keys(good)
    assert result.success and {e.materialization.partition for e in result.get_asset_materialization_events()} == {
        *good}
    alone = run_keys(alone, raise_on_error=False)
    assert not alone.success and str(bad) in step_failures(alone)[0].event_specific_data.error.message


def test_media_reads_sources_only_inside_source_roots(tmp_path, monkeypatch):
    """A run config can name any path: one outside SOURCE_ROOTS (default: the inbox) is refused, not retried and
    not copied; one inside, or one whose input the store already holds (the CLI copied it in), is ingested."""
    from whisperx_assets.defs.assets import media

    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    for folder in (inbox, elsewhere):
        folder.mkdir()
        silence(folder / f"{folder.name}.wav", 1.0)
    monkeypatch.setenv("INBOX_URL", str(inbox))
    monkeypatch.delenv("SOURCE_ROOTS", raising=False)
    store = MediaStore(tmp_path / "store")
    resources = {"whisperx": WhisperXResource(), "storage": MediaStoreResource(root=str(store.root)),
                 "io_manager": ParquetIOManager(root=str(store.root))}

    def ingest(path):
        source = identify(path)
        with DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions(media_files.name, [source.key])
            result = materialize([media], partition_key=source.key, instance=instance, resources=resources,
                                 raise_on_error=False, run_config={"ops": {"media": {"config": {"source": str(path)}}}})
        return source, result

    _, refused = ingest(elsewhere / "elsewhere.wav")
    failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert "elsewhere.wav" in message and f"outside the folders this deployment reads sources from (SOURCE_ROOTS: " \
        f"{inbox})" in message, message
    assert [e.event_type_value for e in refused.all_events].count("STEP_UP_FOR_RETRY") == 0
    assert not (store.root / "inputs").exists()

    assert ingest(inbox / "inbox.wav")[1].success
    source = identify(elsewhere / "elsewhere.wav")
    store.ingest(source.key, elsewhere / "elsewhere.wav", source.name, source.sha256)  # as `submit` copies it in
    assert ingest(elsewhere / "elsewhere.wav")[1].success
    monkeypatch.setenv("SOURCE_ROOTS", f"{inbox},{elsewhere}")
    store.delete(source.key)
    assert ingest(elsewhere / "elsewhere.wav")[1].success
