"""The code location loads, the embedded instance config matches Dagster's schema (the scale-out one:
test_deploy.py), the graph is as documented."""

import shutil
import subprocess
import sys
from pathlib import Path

from dagster import Definitions
from dagster._core.instance.config import dagster_instance_config

from whisperx_assets.definitions import defs

REPO = Path(__file__).resolve().parents[2]


def test_definitions_load():
    Definitions.validate_loadable(defs)


def test_asset_graph():
    graph = defs.resolve_asset_graph()
    deps = {key.to_user_string(): sorted(p.to_user_string() for p in graph.get(key).parent_keys)
            for key in graph.get_all_asset_keys()}
    assert deps == {"media": [], "transcript": ["media"], "alignment": ["media", "transcript"],
                    "diarization": ["media"], "speaker_embeddings": ["diarization", "media"],
                    "speaker_names": ["speaker_embeddings", "voiceprints"],
                    "combined": ["alignment", "diarization", "media", "speaker_names"],
                    "subtitles": ["combined"], "voiceprints": [], "voices": ["speaker_embeddings"]}
    gpu = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).pools == {"gpu"}}
    assert gpu == {"transcript", "alignment", "diarization", "speaker_embeddings"}
    partitioned = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).partitions_def}
    assert partitioned == set(deps) - {"voiceprints", "voices"}
    assert all(graph.get(k).partitions_def.name == "media_files" for k in graph.get_all_asset_keys()
               if graph.get(k).partitions_def)


def test_job_runs_in_one_process():
    job = defs.resolve_job_def("process_media")
    assert job.executor_def.name == "in_process"
    assert {n.name for n in job.nodes} == {"media", "transcript", "alignment", "diarization", "speaker_embeddings",
                                           "speaker_names", "combined", "subtitles"}


def test_sensors_on_by_default():
    for name in ("media_inbox_sensor", "speakers_sensor"):
        assert defs.resolve_sensor_def(name).default_status.value == "RUNNING"


def _validate(config_file: Path, tmp_path: Path) -> dict:
    shutil.copy(config_file, tmp_path / "dagster.yaml")
    config, custom = dagster_instance_config(str(tmp_path))
    return config


def test_embedded_instance_config(tmp_path):
    config = _validate(REPO / "dagster.yaml", tmp_path)
    assert "storage" not in config  # SQLite under DAGSTER_HOME
    assert config["concurrency"]["pools"] == {"default_limit": 1, "granularity": "run"}
    assert config["run_retries"]["retry_on_asset_or_op_failure"] is False
    assert config["telemetry"]["enabled"] is False and config["run_monitoring"]["enabled"] is True


def test_cli_validates_workspace():
    out = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
