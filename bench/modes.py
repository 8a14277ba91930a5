"""The benchmark's limit and inprocess modes; bench/run.py runs each in a child process of its own (from the
repository root), so that its peak memory and model loads are its own.

    python -m bench.modes limit|inprocess RESULT.json MEDIA...

RESULT.json: {"files": [{"path", "words", "turns", ...}], "wall", "peak_rss_mb", ...}.

limit:     warm models, `SpeechEngine.process` for every file (transcribe, align, diarize, combine).
inprocess: every file registered as its own partition, then one run of the project's `process_media` job over
           the range of their partitions (what the daemon's batch run does, without the daemon). The storage
           folder is STORAGE_URL, which the definitions read when they are imported.
Wall times include loading the models but not starting Python or importing the libraries.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")


def outputs(storage: str | Path, key: str, path: str) -> dict:
    """One file's words and speaker turns as the pipeline stored them for partition `key`."""
    import pandas as pd

    from whisperx_assets.inputs.store import MediaStore

    store = MediaStore(storage)
    return {"path": path, "words": pd.read_parquet(store.output_path("combined", key))["word"].dropna().tolist(),
            "turns": pd.read_parquet(store.output_path("diarization", key)).to_dict("records")}


def limit(paths: list[str]) -> dict:
    from whisperx_assets.speech import SpeechConfig, SpeechEngine

    started = time.perf_counter()
    engine = SpeechEngine(SpeechConfig())
    files = []
    for path in paths:
        t = time.perf_counter()
        result = engine.process(path)
        files.append({"path": path, "wall": time.perf_counter() - t, "words": result.combined.words["word"].tolist(),
                      "turns": result.diarization.turns.to_dict("records"),
                      "stages": {r.stage: r.wall_seconds for r in result.facts.itertuples()}})
    return {"files": files, "wall": time.perf_counter() - started, "model_load_seconds": engine.load_seconds}


def inprocess(paths: list[str]) -> dict:
    from dagster import DagsterInstance

    from whisperx_assets.definitions import defs, storage_url
    from whisperx_assets.defs.assets import ASSET_NAMES
    from whisperx_assets.defs.jobs import RANGE_END, RANGE_START
    from whisperx_assets.defs.partitions import media_files
    from whisperx_assets.inputs.sources import identify
    from whisperx_assets.inputs.store import MediaStore

    store = MediaStore(storage_url)
    # the corpus is read where it lies, as from an inbox
    os.environ["SOURCE_ROOTS"] = ",".join(sorted({str(Path(path).resolve().parent) for path in paths}))
    started = time.perf_counter()
    with DagsterInstance.ephemeral() as instance:
        sources = [identify(path) for path in paths]
        for source in sources:
            store.register(source)
        keys = [source.key for source in sources]
        instance.add_dynamic_partitions(media_files.name, keys)
        job = defs.resolve_job_def("process_media")
        result = job.execute_in_process(instance=instance, tags={RANGE_START: keys[0], RANGE_END: keys[-1]})
        wall = time.perf_counter() - started
    done = {(e.asset_key.to_user_string(), e.partition) for e in result.get_asset_materialization_events()}
    missing = {(name, key) for name in ASSET_NAMES for key in keys} - done
    if missing:
        raise RuntimeError(f"process_media did not materialize {sorted(missing)}")
    return {"files": [outputs(storage_url, source.key, path) for source, path in zip(sources, paths)], "wall": wall}


MODES = {"limit": limit, "inprocess": inprocess}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.modes", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("result", type=Path, help="where to write the result (JSON)")
    parser.add_argument("media", nargs="+", help="the recordings, in order")
    args = parser.parse_args(argv)
    result = MODES[args.mode](args.media)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
