"""Named speakers and voices across files on a real webserver and daemon (stand-in engine: a speaker's voice is
a vector made from its file's audio, so two files with the same audio share a voice, and a clip with that audio
is that voice's enrollment): `speakers_sensor` refreshes `voices` and `voiceprints` and re-names the files
concerned, through `speaker_names`, `combined` and `subtitles` only."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from whisperx_assets.api.client import WhisperXClient
from whisperx_assets_tests.api.test_api import cli
from whisperx_assets_tests.api.test_lifecycle import materializations
from whisperx_assets_tests.standin import _seed
from whisperx_assets_tests.test_faults import wait_for

pytestmark = pytest.mark.slow


def one_voice(path, salt: int):
    """A 2 s recording that the stand-in engine diarizes as one speaker."""
    for step in range(salt * 100, salt * 100 + 100):
        audio = (np.sin(np.arange(32_000) / (5 + step / 7)) * 0.1).astype(np.float32)
        sf.write(path, audio, 16_000, subtype="FLOAT")
        if _seed(sf.read(path, dtype="float32")[0]) % 2 == 0:
            return path
    raise AssertionError("no one-speaker recording found")


def speakers_in(client, key) -> set[str]:
    return set(pd.read_parquet(client.output_path("combined", key))["speaker"].dropna())


def test_voices_recur_across_files_are_named_once_and_enrollment_names_new_files(standin, tmp_path):
    deployment, instance = standin
    client = WhisperXClient(deployment.url)
    recording = one_voice(tmp_path / "first.wav", 1)
    (tmp_path / "again.wav").write_bytes(recording.read_bytes())  # the same voice in another file
    keys = deployment.drop((tmp_path / "first.wav", "first.wav"), (tmp_path / "again.wav", "again.wav"))

    def voices_listed():
        code, data, _ = cli(deployment.url, "speakers", "list")
        return [v for v in data["voices"] if set(keys) <= set(v["partitions"])] if code == 0 else []

    wait_for(voices_listed, 120, "one voice across both files", deployment)
    [voice] = voices_listed()
    wait_for(lambda: all(speakers_in(client, key) == {voice["voice_id"]} for key in keys), 120,
             "both files re-labeled with the voice id", deployment)

    code, data, err = cli(deployment.url, "speakers", "name", voice["voice_id"], "Priya")
    assert code == 0, (data, err)
    wait_for(lambda: all(speakers_in(client, key) == {"Priya"} for key in keys), 120, "the voice named Priya",
             deployment)

    clip = one_voice(tmp_path / "ann-clip.wav", 2)
    code, data, err = cli(deployment.url, "speakers", "enroll", "Ann", clip)
    assert code == 0, (data, err)
    wait_for(lambda: any(p["name"] == "Ann" for p in cli(deployment.url, "speakers", "list")[1]["people"]), 60,
             "Ann enrolled", deployment)
    (tmp_path / "meeting.wav").write_bytes(clip.read_bytes())
    [meeting] = deployment.drop((tmp_path / "meeting.wav", "meeting.wav"))
    wait_for(lambda: materializations(instance, "subtitles", meeting), 120, "meeting processed", deployment)
    wait_for(lambda: speakers_in(client, meeting) == {"Ann"}, 60, "Ann named in the new file", deployment)
    srt = (client.output_path("subtitles", meeting, "folder") / f"{meeting}.srt").read_text()
    assert "Ann" in srt

    for key in [*keys, meeting]:  # naming never re-ran the speech stages
        for asset in ("media", "transcript", "alignment", "diarization", "speaker_embeddings"):
            assert materializations(instance, asset, key) == 1, (asset, key)

    code, data, err = cli(deployment.url, "speakers", "name", "VOICE_12", "Bob")
    assert code == 2 and "not a voice id" in data["error"]
    code, data, err = cli(deployment.url, "speakers", "enroll", "../escape", clip)
    assert code == 2 and "not a usable person name" in data["error"]
