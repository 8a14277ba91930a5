"""Benchmark: the whisperX library alone (the limit) against the pipeline through Dagster, in one run.

    make bench                       # 20 recordings; BENCH_FILES=N for fewer, BENCH_MODES=limit,inprocess,daemon,
                                     # BENCH_OUT=folder for the reports (default bench/results)

(a) limit:     one process, warm models, engine.process for every file (transcribe, align, diarize, combine).
(b) inprocess: every partition registered, then one run of the `process_media` job over the range of their
               partitions (what a batch run does, without the daemon).
               Both run in a child process each (bench/modes.py), so their peak memory and model loads are their own.
    daemon:    real dagster-webserver + dagster-daemon; all files dropped into the inbox at once, timed until
               the last `combined` is materialized; then one more file alone for the single-file latency.
Wall times include loading the models (once per process or run) but not starting Python.
Writes bench/results/<timestamp>.json, bench/results/latest.md and bench/results/latest.png.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

from bench.corpus import make_corpus  # noqa: E402
from bench.modes import outputs  # noqa: E402
from whisperx_assets.evaluation.quality import diarization_error_rate, word_error_rate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

RESULTS = Path(os.environ.get("BENCH_OUT") or ROOT / "bench" / "results")


def quality(recordings, words_by_path, turns_by_path) -> dict:
    wers = [word_error_rate(r.text, " ".join(words_by_path[r.path])) for r in recordings]
    ders = [diarization_error_rate(r.turns, turns_by_path[r.path]) for r in recordings]
    return {"wer_mean": sum(wers) / len(wers), "der_mean": sum(ders) / len(ders), "wer_max": max(wers),
            "der_max": max(ders)}


def run_mode(mode: str, recordings, workdir: Path, env: dict[str, str] | None = None) -> dict:
    """`mode` of bench/modes.py over the recordings, in a child process so its peak memory and model loads are
    its own."""
    result = workdir / f"{mode}.json"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench.modes", mode, str(result), *(str(r.path) for r in recordings)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    if proc.returncode:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
    data = json.loads(result.read_text())
    data["wall_with_startup"] = time.perf_counter() - started
    return data


DAEMON_RUNS = """query { runsOrError(filter: {pipelineName: "process_media"}) { ... on Runs { results {
  runId status creationTime startTime endTime tags { key value } stepStats { stepKey startTime endTime } } } } }"""

MODEL_WORK = """query ($p: [String!]) { assetNodes(assetKeys: [{path: ["transcript"]}, {path: ["alignment"]},
  {path: ["diarization"]}, {path: ["combined"]}]) { assetMaterializations(partitions: $p) { partition
  metadataEntries { label ... on FloatMetadataEntry { floatValue } } } } }"""

COMBINED = """query ($p: [String!]) { assetOrError(assetKey: {path: ["combined"]}) {
  ... on Asset { assetMaterializations(partitions: $p) { partition timestamp runId } } } }"""


class MemorySampler:
    """Peak resident memory of this process's descendants (the webserver, daemon, code servers and run
    workers), read from /proc once a second: the largest single process and the sum."""

    def __init__(self):
        import threading

        self.peak_process_mb = self.peak_total_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _descendants() -> list[int]:
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
        found, stack = [], [os.getpid()]
        while stack:
            for child in children.get(stack.pop(), []):
                found.append(child)
                stack.append(child)
        return found

    @staticmethod
    def _rss_mb(pid: int) -> float:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _run(self):
        while not self._stop.wait(1.0):
            sizes = [self._rss_mb(pid) for pid in self._descendants()]
            self.peak_process_mb = max(self.peak_process_mb, max(sizes, default=0.0))
            self.peak_total_mb = max(self.peak_total_mb, sum(sizes))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _drop_and_wait(url, inbox, paths: list[Path], names: list[str]) -> tuple[float, dict[str, float], dict[str, str]]:
    """Rename files into the inbox at once; wait until each has `combined`. (landing time, {key: done}, {key: name})."""
    from whisperx_assets.evaluation.servers import graphql
    from whisperx_assets.inputs.sources import identify

    staging = inbox / ".staging"
    staging.mkdir(exist_ok=True)
    for path, name in zip(paths, names):
        shutil.copy(path, staging / name)
    landed = time.time()
    keys = {}
    for name in names:  # rename into place: the whole set lands at once
        (staging / name).rename(inbox / name)
        keys[identify(inbox / name).key] = name
    done: dict[str, float] = {}
    deadline = time.monotonic() + 3600
    while len(done) < len(keys) and time.monotonic() < deadline:
        time.sleep(1)
        for m in graphql(url, COMBINED, {"p": list(keys)})["assetOrError"]["assetMaterializations"]:
            done.setdefault(m["partition"], float(m["timestamp"]) / 1000)
    if len(done) < len(keys):
        raise RuntimeError(f"only {len(done)} of {len(keys)} combined in time")
    return landed, done, keys


def _timeline(landed: float, run: dict, model_work: float) -> dict:
    steps = [st for st in run["stepStats"] if st["startTime"] and st["endTime"]]
    first_step, last_step = min(st["startTime"] for st in steps), max(st["endTime"] for st in steps)
    return {"landing_to_run_created": run["creationTime"] - landed,
            "run_created_to_started": run["startTime"] - run["creationTime"],
            "run_started_to_first_step": first_step - run["startTime"],
            "steps": last_step - first_step, "model_work": model_work,
            "steps_minus_model_work": last_step - first_step - model_work}


def _model_work(url, keys) -> float:
    from whisperx_assets.evaluation.servers import graphql

    total = 0.0
    for node in graphql(url, MODEL_WORK, {"p": list(keys)})["assetNodes"]:
        for m in node["assetMaterializations"]:
            total += next((e["floatValue"] for e in m["metadataEntries"] if e["label"] == "wall_seconds"), 0.0)
    return total


def run_daemon(recordings, workdir: Path) -> dict:
    """All files dropped into the inbox at once, timed until the last `combined`; then one more file alone
    for the single-file latency (landing -> `combined`, and that minus the model work)."""
    from whisperx_assets.evaluation.servers import deployment, graphql

    with deployment(workdir / "daemon") as (url, inbox, storage, root), MemorySampler() as memory:
        landed, done, keys = _drop_and_wait(url, inbox, [r.path for r in recordings], [r.path.name for r in recordings])
        by_name = {r.path.name: r for r in recordings}
        runs = sorted(graphql(url, DAEMON_RUNS)["runsOrError"]["results"], key=lambda r: r["creationTime"])
        batch = {**_timeline(landed, runs[0], _model_work(url, keys)), "runs": len(runs)}
        files = [outputs(storage, key, str(by_name[name].path)) for key, name in keys.items()]
        single_landed, single_done, single_keys = _drop_and_wait(url, inbox, [recordings[0].path], ["single-file.wav"])
        runs = sorted(graphql(url, DAEMON_RUNS)["runsOrError"]["results"], key=lambda r: r["creationTime"])
        single = {**_timeline(single_landed, runs[-1], _model_work(url, single_keys)),
                  "latency": max(single_done.values()) - single_landed}
    return {"wall": max(done.values()) - landed, "first_file_latency": min(done.values()) - landed, "files": files,
            "timeline": batch, "single_file": single, "peak_rss_mb": memory.peak_process_mb,
            "peak_total_rss_mb": memory.peak_total_mb}


def summarize(name, data, recordings, audio_seconds) -> dict:
    import pandas as pd

    by_path = {f["path"]: f for f in data["files"]}
    q = quality(recordings, {r.path: by_path[str(r.path)]["words"] for r in recordings},
                {r.path: pd.DataFrame(by_path[str(r.path)]["turns"]) for r in recordings})
    row = {"mode": name, "wall_seconds": data["wall"], "rtf": data["wall"] / audio_seconds,
           "files_per_hour": 3600 * len(recordings) / data["wall"], **q}
    for key in ("peak_rss_mb", "peak_total_rss_mb", "model_load_seconds", "first_file_latency", "wall_with_startup",
                "timeline", "single_file"):
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
    audio_of_first = meta.get("first_file_audio_seconds", float("nan"))
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
        def phases(t):
            return (f"landing -> run created {t['landing_to_run_created']:.1f} s, created -> started "
                    f"{t['run_created_to_started']:.1f} s, started -> first step {t['run_started_to_first_step']:.1f} s, "
                    f"steps {t['steps']:.1f} s of which model work {t['model_work']:.1f} s "
                    f"(the rest, {t['steps_minus_model_work']:.1f} s, is model loading, decoding and Dagster)")

        single = daemon["single_file"]
        lines += [f"Daemon batch: {daemon['timeline']['runs']} run(s); {phases(daemon['timeline'])}; the first file's "
                  f"`combined` after {daemon['first_file_latency']:.1f} s. Peak RSS: run worker "
                  f"{daemon['peak_rss_mb']:.0f} MB, whole deployment {daemon['peak_total_rss_mb']:.0f} MB.",
                  f"Daemon single file ({audio_of_first:.0f} s of audio): landing -> `combined` {single['latency']:.1f} s "
                  f"= model work {single['model_work']:.1f} s + overhead {single['latency'] - single['model_work']:.1f} s; "
                  f"{phases(single)}"]
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
        durations = [float(__import__("soundfile").info(r.path).duration) for r in recordings]
        audio_seconds, first_audio = sum(durations), durations[0]
        runners = {"limit": lambda: run_mode("limit", recordings, workdir),
                   "inprocess": lambda: run_mode("inprocess", recordings, workdir,
                                                 {"STORAGE_URL": str(workdir / "inprocess")}),
                   "daemon": lambda: run_daemon(recordings, workdir)}
        rows = []
        for mode in modes:
            print(f"running {mode} ...", file=sys.stderr, flush=True)
            rows.append(summarize(mode, runners[mode](), recordings, audio_seconds))
    meta = {"files": count, "audio_seconds": audio_seconds, "first_file_audio_seconds": first_audio, "machine": f"{platform.machine()} {os.cpu_count()} cores",
            "device": os.environ.get("DEVICE", "auto"), "model": os.environ.get("WHISPER_MODEL", "base")}
    write_report(rows, meta)


if __name__ == "__main__":
    main()
