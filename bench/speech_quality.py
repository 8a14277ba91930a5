"""Quality and speed of the speech engine on the two reference recordings (no Dagster).

    uv run python bench/speech_quality.py [--json OUT]

Prints WER, DER (speaker count not given, 0.25 s collar), turn-boundary error from word timings, and
per-stage real-time factors (wall / audio) for the generated two-voice dialogue and pyannote's sample.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

from whisperx_assets.evaluation.quality import (Recording, diarization_error_rate, pyannote_sample,  # noqa: E402
                                                pyannote_sample_rttm_turns, turn_boundary_errors,
                                                word_error_rate)
from whisperx_assets.speech import SpeechConfig, SpeechEngine  # noqa: E402
from whisperx_assets.evaluation.synthetic import synthesize_dialogue  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dialogue_path = Path(tmp) / "dialogue.wav"
        recordings = {"dialogue": (Recording(dialogue_path, synthesize_dialogue(dialogue_path)), None),
                      "pyannote-sample": (pyannote_sample(), pyannote_sample_rttm_turns())}
        engine = SpeechEngine(SpeechConfig())
        rows = {}
        for name, (recording, rttm) in recordings.items():
            started = time.perf_counter()
            result = engine.process(recording.path)
            wall = time.perf_counter() - started
            words = result.combined.words
            rows[name] = {
                "audio_seconds": result.media.duration,
                "wer": word_error_rate(recording.text, " ".join(result.transcript.segments["text"])),
                "der": diarization_error_rate(rttm or recording.turns, result.diarization.turns),
                "speakers_found": int(result.diarization.turns["speaker"].nunique()),
                "speakers_true": len(recording.speakers),
                "turn_boundary_mae_ms": 1000 * float(turn_boundary_errors(recording.turns, words).mean()),
                "align_backend": result.alignment.facts.backend,
                "rtf": {r.stage: round(r.real_time_factor, 4) for r in result.facts.itertuples()},
                "rtf_total_incl_decode": wall / result.media.duration,
            }
        rows["_model_load_seconds"] = engine.load_seconds
    print(json.dumps(rows, indent=2))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
