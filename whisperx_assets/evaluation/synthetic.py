"""Multi-voice dialogues with exact turn times and text, made with espeak-ng and sox.

Deterministic: the same script gives the same samples, so tests and the benchmark can compare results
against exact references. Turn times are measured from the rendered audio (first and last sample above
a small threshold), not guessed from the gaps.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from whisperx_assets.speech.media import SAMPLE_RATE

# Voices that espeak-ng renders clearly distinct (different variants and pitch).
VOICES = {
    "alice": ("en-us+f3", 165, 60),
    "bob": ("en-gb+m3", 150, 35),
    "carol": ("en-us+f5", 175, 75),
    "dave": ("en-us+m1", 140, 25),
}

DEFAULT_SCRIPT: list[tuple[str, str]] = [
    ("alice", "Good morning. Thank you for joining the planning meeting today."),
    ("bob", "Happy to be here. I read the report you sent on Friday."),
    ("alice", "Great. The main question is whether we move the launch to the spring."),
    ("bob", "I think the spring is better because the team needs more time for testing."),
    ("alice", "That makes sense. What would you need from the design group?"),
    ("bob", "We need the final drawings and a clear list of the open problems."),
    ("alice", "I will ask them to send everything before the end of the month."),
    ("bob", "Perfect. Then I can prepare a new schedule for the next meeting."),
]


@dataclass(frozen=True)
class Turn:
    speaker: str
    start: float
    end: float
    text: str


def require_tools() -> None:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"missing programs {missing}: install them (make install does: apt-get install espeak-ng sox)")


def _speak(text: str, voice: str, speed: int, pitch: int, path: Path) -> np.ndarray:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text],
                   check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(path)],
                   check=True, capture_output=True)
    audio, sr = sf.read(path, dtype="float32")
    assert sr == SAMPLE_RATE
    return audio


def _voiced_extent(audio: np.ndarray, threshold: float = 0.01) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if loud.size == 0:
        return 0, 0
    return int(loud[0]), int(loud[-1]) + 1


def synthesize_dialogue(
    path: str | Path,
    script: list[tuple[str, str]] | None = None,
    gaps: list[float] | None = None,
    lead_in: float = 0.5,
) -> list[Turn]:
    """Render `script` (speaker, text) to a 16 kHz mono wav at `path`; return the exact turns.

    `gaps` are the silences between turns in seconds (default alternating 0.4 and 0.7 s).
    """
    require_tools()
    script = script or DEFAULT_SCRIPT
    gaps = gaps or [0.4 if i % 2 else 0.7 for i in range(len(script))]
    pieces: list[np.ndarray] = [np.zeros(int(lead_in * SAMPLE_RATE), dtype=np.float32)]
    turns: list[Turn] = []
    cursor = len(pieces[0])
    with tempfile.TemporaryDirectory() as tmp:
        for i, (speaker, text) in enumerate(script):
            voice, speed, pitch = VOICES[speaker]
            audio = _speak(text, voice, speed, pitch, Path(tmp) / f"turn{i}.wav")
            first, last = _voiced_extent(audio)
            audio = audio[first:last]
            turns.append(Turn(speaker, cursor / SAMPLE_RATE, (cursor + len(audio)) / SAMPLE_RATE, text))
            gap = np.zeros(int(gaps[i % len(gaps)] * SAMPLE_RATE), dtype=np.float32)
            pieces += [audio, gap]
            cursor += len(audio) + len(gap)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.concatenate(pieces), SAMPLE_RATE, subtype="PCM_16")
    return turns
