"""The benchmark harness itself, on one short generated recording (the figures come from `make bench`)."""

import json
import os
import subprocess
import sys

import pytest

from whisperx_assets.evaluation.servers import REPO


@pytest.mark.slow
def test_bench_writes_its_reports(tmp_path):
    env = {**os.environ, "BENCH_FILES": "1", "BENCH_MODES": "limit,inprocess", "BENCH_OUT": str(tmp_path)}
    proc = subprocess.run([sys.executable, "bench/run.py"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [report] = tmp_path.glob("*.json")
    rows = {r["mode"]: r for r in json.loads(report.read_text())["rows"]}
    assert set(rows) == {"limit", "inprocess"}
    for row in rows.values():
        assert row["wall_seconds"] > 0 and row["files_per_hour"] > 0 and row["peak_rss_mb"] > 100
        assert row["wer_mean"] <= 0.2 and row["der_mean"] <= 0.2  # same models, same quality in both modes
    assert rows["limit"]["wer_mean"] == rows["inprocess"]["wer_mean"]
    assert set(rows["limit"]["stage_rtf"]) == {"transcript", "alignment", "diarization", "combined"}
    assert rows["limit"]["model_load_seconds"]["transcriber"] > 0
    table = (tmp_path / "latest.md").read_text()
    assert "| inprocess |" in table and "ratio to limit" in table
    assert (tmp_path / "latest.png").stat().st_size > 1000
