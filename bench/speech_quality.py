"""Quality and speed of the speech engine (no Dagster) on each class of recording, with the default options.

    uv run python bench/speech_quality.py [--json OUT] [--only NAME ...]

Recordings: generated espeak-ng dialogues with exact turns (English with two and three voices, monologues in
three voices, German, Spanish and French with two voices and with one, language detected), pyannote's real telephone
sample, and each of its two speakers alone (real single-voice speech, cut by its RTTM). Prints per recording:
WER (where the text is known), DER (speaker count not given, 0.25 s collar), speakers found and true, the
turn-boundary error of the word timings (mean and worst, over every turn's start and end), the language
detected and per-stage real-time factors (wall / audio).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

from whisperx_assets.evaluation.quality import (Recording, diarization_error_rate, one_speaker_of_sample,  # noqa: E402
                                                pyannote_sample, pyannote_sample_rttm_turns,
                                                turn_boundary_errors, word_error_rate)
from whisperx_assets.evaluation.synthetic import (FOREIGN_SCRIPTS, MONOLOGUE_TEXTS,  # noqa: E402
                                                  THREE_SPEAKER_SCRIPT, foreign_monologue, synthesize_dialogue)
from whisperx_assets.speech import SpeechConfig, SpeechEngine  # noqa: E402


def recordings(folder: Path) -> dict[str, tuple[Recording, list | None, bool]]:
    """{name: (recording, DER reference if not its turns, whether its text is known)}."""
    def generated(name: str, script=None) -> Recording:
        path = folder / f"{name}.wav"
        return Recording(path, synthesize_dialogue(path, script))

    made = {"en-dialogue-2": (generated("en-dialogue-2"), None, True),
            "en-three-3": (generated("en-three-3", THREE_SPEAKER_SCRIPT), None, True)}
    for voice in ("bob", "alice", "dave"):
        made[f"en-monologue-{voice}-1"] = (generated(f"mono-{voice}", [(voice, t) for t in MONOLOGUE_TEXTS]), None,
                                           True)
    for language, script in FOREIGN_SCRIPTS.items():
        made[f"{language}-dialogue-2"] = (generated(f"{language}-dialogue", script), None, True)
        made[f"{language}-monologue-1"] = (generated(f"{language}-monologue", foreign_monologue(language)), None, True)
    made["real-sample-2"] = (pyannote_sample(), pyannote_sample_rttm_turns(), True)
    for speaker in ("speaker90", "speaker91"):
        made[f"real-{speaker}-1"] = (one_speaker_of_sample(folder / f"{speaker}.wav", speaker), None, False)
    return made


def measure(engine: SpeechEngine, recording: Recording, rttm: list | None, text_known: bool) -> dict:
    started = time.perf_counter()
    result = engine.process(recording.path)
    wall = time.perf_counter() - started
    errors = turn_boundary_errors(recording.turns, result.combined.words) if text_known else None
    return {
        "audio_seconds": round(result.media.duration, 1),
        "language": result.transcript.language,
        "wer": round(word_error_rate(recording.text, " ".join(result.transcript.segments["text"]),
                                     result.transcript.language), 4)
        if text_known else None,
        "der": round(diarization_error_rate(rttm or recording.turns, result.diarization.turns), 4),
        "speakers_found": int(result.diarization.turns["speaker"].nunique()),
        "speakers_true": len(recording.speakers),
        "turn_boundary_mae_ms": round(1000 * float(errors.mean())) if errors is not None else None,
        "turn_boundary_worst_ms": round(1000 * float(errors.max())) if errors is not None else None,
        "align_backend": result.alignment.facts.backend,
        "rtf": {r.stage: round(r.real_time_factor, 4) for r in result.facts.itertuples()},
        "rtf_total_incl_decode": round(wall / result.media.duration, 4),
    }


def table(rows: dict) -> str:
    lines = ["| recording | s | lang | WER | DER | speakers found/true | boundary MAE / worst ms | RTF |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if name.startswith("_"):
            continue
        wer = f"{100 * r['wer']:.1f} %" if r["wer"] is not None else "—"
        bounds = (f"{r['turn_boundary_mae_ms']} / {r['turn_boundary_worst_ms']}"
                  if r["turn_boundary_mae_ms"] is not None else "—")
        lines.append(f"| {name} | {r['audio_seconds']} | {r['language']} | {wer} | {100 * r['der']:.1f} % | "
                     f"{r['speakers_found']}/{r['speakers_true']} | {bounds} | {r['rtf_total_incl_decode']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", nargs="*", help="recording names (default: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = SpeechEngine(SpeechConfig())
        rows = {name: measure(engine, *made) for name, made in recordings(Path(tmp)).items()
                if not args.only or name in args.only}
        rows["_model_load_seconds"] = engine.load_seconds
    print(json.dumps(rows, indent=2))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
