"""Speaker identification and voices across files (`whisperx_assets.evaluation.speakers`): thresholds calibrated
on one generated collection, figures on another (other people, other sentences).

    uv run python bench/speaker_id.py [--json OUT]

Writes `bench/results/speakers-<YYYYMMDD>.json` unless --json says otherwise, and prints a table: per collection
the thresholds, diarized speakers (of which merged: two people in one speaker, not scored), identification
accuracy, false accepts (wrong names of enrolled people, names given to never-enrolled people), voice-id purity,
inverse purity, their F1, voice ids per person, and how far apart the same and different people's similarities
lie.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

from whisperx_assets.evaluation.speakers import evaluate  # noqa: E402
from whisperx_assets.speech import SpeechConfig, SpeechEngine  # noqa: E402


def table(report: dict) -> str:
    lines = ["| collection | thresholds name / voice | files | speakers (merged) | accuracy | false accepts | "
             "wrong name | unknown named | purity | inverse purity | F1 | voice ids per person |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, key in (("calibration", "calibration"), ("test", "test"), ("test at constants", "test_at_constants")):
        r = report[key]
        n, v = r["naming"], r["voices"]
        lines.append(f"| {label} | {n['threshold']:.3f} / {v['threshold']:.3f} | {r['files']} | "
                     f"{r['speakers']} ({r['merged_speakers']}) | "
                     f"{100 * n['accuracy']:.1f} % ({n['correct']}/{n['enrolled_speakers']}) | "
                     f"{100 * n['false_accept_rate']:.1f} % | {n['wrong']}/{n['enrolled_speakers']} | "
                     f"{n['unknown_named']}/{n['unknown_speakers']} | {100 * v['purity']:.1f} % | "
                     f"{100 * v['inverse_purity']:.1f} % | {v['f1']:.3f} | {v['voice_ids_per_person']:.2f} |")
    lines += ["", "| collection | scores | same person: min / 5th pct | different people: 95th pct / max |",
              "|---|---|---|---|"]
    for key in ("calibration", "test"):
        for kind, what in (("name", "speaker vs voiceprint"), ("voice", "speaker vs speaker, other files")):
            s = report[key]["separation"][kind]
            lines.append(f"| {key} | {what} | {s['same_min']:.3f} / {s['same_p05']:.3f} | "
                         f"{s['other_p95']:.3f} / {s['other_max']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path,
                        default=Path(__file__).parent / "results" / f"speakers-{datetime.date.today():%Y%m%d}.json")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        report = evaluate(SpeechEngine(SpeechConfig()), Path(tmp))
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    args.json.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"thresholds: {report['thresholds']}, module constants: {report['constants']}, "
          f"wall {report['total_seconds']} s (synthesis {report['synthesis_seconds']} s); {args.json}")


if __name__ == "__main__":
    main()
