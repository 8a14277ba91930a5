"""Throughput on the scale-out stack: PostgreSQL + S3 (SeaweedFS) against the embedded default, with one and
two runs at a time in the `gpu` pool, all in one run on one machine.

    uv run python bench/stack.py [FILES]      # default 4 generated recordings (20-40 s, 2-3 voices)

Each configuration is a fresh deployment (webserver + daemon, real models) with one run per file
(BATCH_MAX_FILES=1), so the `gpu` pool limit decides how many runs execute at once. The recordings are dropped
into its inbox together and timed until the last `subtitles` is materialized. Writes
bench/results/stack-<date>.json and prints a table.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

import soundfile as sf  # noqa: E402
from dagster import AssetKey, RunsFilter  # noqa: E402

from bench.corpus import make_corpus  # noqa: E402
from whisperx_assets.defs.assets.speech import GPU_POOL  # noqa: E402
from whisperx_assets.evaluation.servers import Deployment, environment, running  # noqa: E402
from whisperx_assets.evaluation.stack import postgres_server, s3_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("BENCH_OUT") or ROOT / "bench" / "results")
CONFIGS = [("embedded: SQLite, local folders", False, 1), ("Postgres + S3", True, 1), ("Postgres + S3", True, 2)]


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def measure(recordings, workdir: Path, scale_out: bool, slots: int) -> dict:
    with contextlib.ExitStack() as stack:
        env = {"BATCH_MAX_FILES": "1"}
        if scale_out:
            url, s3 = stack.enter_context(postgres_server()), stack.enter_context(s3_server())
            stack.enter_context(environment(s3))
            env |= {"DAGSTER_POSTGRES_URL": url, **s3, "INBOX_URL": "s3://bench/inbox", "STORAGE_URL": "s3://bench/store"}
        deployment, instance = stack.enter_context(running(
            Deployment(workdir, env), lambda instance: instance.event_log_storage.set_concurrency_slots(GPU_POOL, slots)))
        started = time.perf_counter()
        keys = set(deployment.drop(*[(r.path, r.path.name) for r in recordings]))
        deadline = started + 1800
        while not keys <= instance.get_materialized_partitions(AssetKey("subtitles")):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"not done in 30 min:\n{deployment.log_tail()}")
            time.sleep(1)
        wall = time.perf_counter() - started
        runs = instance.get_runs(filters=RunsFilter(job_name="process_media"))
        stats = [instance.get_run_stats(run.run_id) for run in runs]
        intervals = [(s.start_time, s.end_time) for s in stats if s.start_time and s.end_time]
        audio = sum(sf.info(r.path).duration for r in recordings)
        return {"runs": len(runs), "wall_s": round(wall, 1), "files_per_hour": round(3600 * len(keys) / wall),
                "rtf": round(wall / audio, 3), "most_runs_at_once": most_at_once(intervals),
                "mean_run_s": round(sum(end - start for start, end in intervals) / len(intervals), 1)}


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    rows = []
    with tempfile.TemporaryDirectory(prefix="whisperx-stack-") as tmp:
        recordings = make_corpus(Path(tmp) / "corpus", count, min_seconds=20, max_seconds=40)
        audio = sum(sf.info(r.path).duration for r in recordings)
        for i, (name, scale_out, slots) in enumerate(CONFIGS):
            print(f"{name}, gpu pool {slots} ...", file=sys.stderr, flush=True)
            row = {"stack": name, "gpu_slots": slots, "files": count, "audio_s": round(audio, 1),
                   **measure(recordings, Path(tmp) / f"deployment{i}", scale_out, slots)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    base = rows[0]["wall_s"]
    lines = ["| stack | gpu pool | files | audio s | wall s | files/h | RTF | most runs at once | mean run s | "
             "wall / embedded |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['stack']} | {r['gpu_slots']} | {r['files']} | {r['audio_s']} | {r['wall_s']} | "
              f"{r['files_per_hour']} | {r['rtf']} | {r['most_runs_at_once']} | {r['mean_run_s']} | "
              f"{r['wall_s'] / base:.2f} |" for r in rows]
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"machine": f"{platform.machine()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}
    (RESULTS / f"stack-{time.strftime('%Y%m%d')}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
