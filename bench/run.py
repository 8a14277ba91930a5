"""Benchmark: the whisperX library alone (the limit) against the pipeline through Dagster, in one run.

    make bench                       # 20 recordings; BENCH_FILES=N for fewer, BENCH_MODES=limit,inprocess,daemon

(a) limit:     one process, warm models, engine.process for every file (transcribe, align, diarize, combine).
(b) inprocess: every partition materialized with `materialize` on one instance, one call per file.
    daemon:    real dagster-webserver + dagster-daemon; all files dropped into the inbox at once, timed until
               the last `combined` is materialized.
Writes bench/results/<timestamp>.json, bench/results/latest.md and bench/results/latest.png.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from corpus import make_corpus  # noqa: E402

from whisperx_assets.speech.quality import diarization_error_rate, word_error_rate  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def quality(recordings, words_by_path, turns_by_path) -> dict:
    wers = [word_error_rate(r.text, " ".join(words_by_path[r.path])) for r in recordings]
    ders = [diarization_error_rate(r.turns, turns_by_path[r.path]) for r in recordings]
    return {"wer_mean": sum(wers) / len(wers), "der_mean": sum(ders) / len(ders), "wer_max": max(wers),
            "der_max": max(ders)}


def run_limit(recordings) -> dict:
    """In a child process, so its peak memory and model loads are its own."""
    code = f"""
import json, sys, time, resource
sys.path[:0] = {[str(ROOT)]!r}
from whisperx_assets.speech import SpeechConfig, SpeechEngine
started = time.perf_counter()
engine = SpeechEngine(SpeechConfig.from_env())
out = {{"files": []}}
for path in {[str(r.path) for r in recordings]!r}:
    t = time.perf_counter()
    result = engine.process(path)
    out["files"].append({{"path": path, "wall": time.perf_counter() - t,
        "words": result.combined.words["word"].tolist(), "turns": result.diarization.turns.to_dict("records"),
        "stages": {{r.stage: r.wall_seconds for r in result.facts.itertuples()}}}})
out["wall"] = time.perf_counter() - started
out["model_load_seconds"] = engine.load_seconds
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("BENCH" + json.dumps(out))
"""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    data = json.loads(next(line[5:] for line in proc.stdout.splitlines() if line.startswith("BENCH")))
    data["wall_with_startup"] = time.perf_counter() - started
    return data


def run_inprocess(recordings, workdir: Path) -> dict:
    code = f"""
import json, sys, time, resource
sys.path[:0] = {[str(ROOT)]!r}
import pandas as pd
from dagster import DagsterInstance, materialize
from whisperx_assets.assets import alignment, combined, diarization, media, subtitles, transcript
from whisperx_assets.client import key_for_source
from whisperx_assets.io_managers import ParquetIOManager
from whisperx_assets.resources import MediaStoreResource, WhisperXResource
storage = {str(workdir / "inprocess")!r}
resources = {{"whisperx": WhisperXResource(), "storage": MediaStoreResource(root=storage),
             "io_manager": ParquetIOManager(base_dir=storage)}}
out = {{"files": []}}
started = time.perf_counter()
with DagsterInstance.ephemeral() as instance:
    for path in {[str(r.path) for r in recordings]!r}:
        t = time.perf_counter()
        key, source, sha = key_for_source(path)
        instance.add_dynamic_partitions("media_files", [key])
        result = materialize([media, transcript, alignment, diarization, combined, subtitles], partition_key=key,
                             instance=instance, resources=resources,
                             run_config={{"ops": {{"media": {{"config": {{"source": source, "sha256": sha}}}}}}}})
        words = pd.read_parquet(f"{{storage}}/combined/{{key}}.parquet")
        turns = pd.read_parquet(f"{{storage}}/diarization/{{key}}.parquet")
        out["files"].append({{"path": path, "wall": time.perf_counter() - t, "words": words["word"].dropna().tolist(),
                             "turns": turns.to_dict("records")}})
out["wall"] = time.perf_counter() - started
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("BENCH" + json.dumps(out))
"""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    data = json.loads(next(line[5:] for line in proc.stdout.splitlines() if line.startswith("BENCH")))
    data["wall_with_startup"] = time.perf_counter() - started
    return data


def run_daemon(recordings, workdir: Path) -> dict:
    import pandas as pd

    from whisperx_assets.client import key_for_source
    from whisperx_assets_tests.servers import deployment, graphql

    query = """query ($p: [String!]) { assetOrError(assetKey: {path: ["combined"]}) {
      ... on Asset { assetMaterializations(partitions: $p) { partition timestamp } } } }"""
    with deployment(workdir / "daemon") as (url, inbox, storage, root):
        staging = inbox / ".staging"
        staging.mkdir()
        keys = {}
        for r in recordings:
            shutil.copy(r.path, staging / r.path.name)
        started = time.time()
        for r in recordings:  # rename into place: the whole batch lands at once
            (staging / r.path.name).rename(inbox / r.path.name)
            keys[key_for_source(str(inbox / r.path.name))[0]] = r
        done: dict[str, float] = {}
        deadline = time.monotonic() + 3600
        while len(done) < len(keys) and time.monotonic() < deadline:
            time.sleep(2)
            for m in graphql(url, query, {"p": list(keys)})["assetOrError"]["assetMaterializations"]:
                done.setdefault(m["partition"], float(m["timestamp"]) / 1000)
        if len(done) < len(keys):
            raise RuntimeError(f"only {len(done)} of {len(keys)} combined in time")
        wall = max(done.values()) - started
        first_latency = min(done.values()) - started
        files = []
        for key, r in keys.items():
            files.append({"path": str(r.path), "words": pd.read_parquet(storage / "combined" / f"{key}.parquet")["word"]
                          .dropna().tolist(), "turns": pd.read_parquet(storage / "diarization" / f"{key}.parquet")
                          .to_dict("records")})
    return {"wall": wall, "first_file_latency": first_latency, "files": files}


def summarize(name, data, recordings, audio_seconds) -> dict:
    import pandas as pd

    by_path = {f["path"]: f for f in data["files"]}
    q = quality(recordings, {r.path: by_path[str(r.path)]["words"] for r in recordings},
                {r.path: pd.DataFrame(by_path[str(r.path)]["turns"]) for r in recordings})
    row = {"mode": name, "wall_seconds": data["wall"], "rtf": data["wall"] / audio_seconds,
           "files_per_hour": 3600 * len(recordings) / data["wall"], **q}
    for key in ("peak_rss_mb", "model_load_seconds", "first_file_latency", "wall_with_startup"):
        if key in data:
            row[key] = data[key]
    if name == "limit":
        stages = {}
        for f in data["files"]:
            for stage, seconds in f["stages"].items():
                stages[stage] = stages.get(stage, 0) + seconds
        row["stage_rtf"] = {s: v / audio_seconds for s, v in stages.items()}
    return row


def write_report(rows, meta) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"{stamp}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    limit = next((r for r in rows if r["mode"] == "limit"), None)
    lines = [f"# Benchmark {stamp}", "", f"{meta['files']} files, {meta['audio_seconds']:.0f} s of audio; {meta['machine']}",
             "", "| mode | wall s | RTF | files/h | ratio to limit | WER | DER | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["wall_seconds"] / limit["wall_seconds"] if limit else float("nan")
        lines.append(f"| {r['mode']} | {r['wall_seconds']:.1f} | {r['rtf']:.3f} | {r['files_per_hour']:.0f} | {ratio:.2f} | "
                     f"{r['wer_mean']:.3f} | {r['der_mean']:.3f} | {r.get('peak_rss_mb', float('nan')):.0f} |")
    if limit:
        lines += ["", "Limit per-stage RTF: " + ", ".join(f"{s} {v:.3f}" for s, v in limit["stage_rtf"].items()),
                  f"Limit model load seconds: {json.dumps({k: round(v, 1) for k, v in limit['model_load_seconds'].items()})}"]
    daemon = next((r for r in rows if r["mode"] == "daemon"), None)
    if daemon:
        lines.append(f"Daemon: first file landing -> combined {daemon['first_file_latency']:.1f} s")
    (RESULTS / "latest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar([r["mode"] for r in rows], [r["files_per_hour"] for r in rows], color=["#4c72b0", "#dd8452", "#55a868"][:len(rows)])
    ax.set_ylabel("files per hour")
    ax.set_title(f"{meta['files']} files, {meta['audio_seconds']:.0f} s audio")
    fig.tight_layout()
    fig.savefig(RESULTS / "latest.png", dpi=100)


def main() -> None:
    count = int(os.environ.get("BENCH_FILES", "20"))
    modes = os.environ.get("BENCH_MODES", "limit,inprocess,daemon").split(",")
    with tempfile.TemporaryDirectory(prefix="whisperx-bench-") as tmp:
        workdir = Path(tmp)
        recordings = make_corpus(workdir / "corpus", count)
        audio_seconds = sum(float(__import__("soundfile").info(r.path).duration) for r in recordings)
        runners = {"limit": lambda: run_limit(recordings), "inprocess": lambda: run_inprocess(recordings, workdir),
                   "daemon": lambda: run_daemon(recordings, workdir)}
        rows = []
        for mode in modes:
            print(f"running {mode} ...", file=sys.stderr, flush=True)
            rows.append(summarize(mode, runners[mode](), recordings, audio_seconds))
    meta = {"files": count, "audio_seconds": audio_seconds, "machine": f"{platform.machine()} {os.cpu_count()} cores",
            "device": os.environ.get("DEVICE", "auto"), "model": os.environ.get("WHISPER_MODEL", "base")}
    write_report(rows, meta)


if __name__ == "__main__":
    main()
