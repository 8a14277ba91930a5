"""Reference transcripts and turns, and the quality measures the tests and the benchmark report.

WER uses jiwer on normalised text (lower case, no punctuation); DER uses pyannote.metrics with a
0.25 s forgiveness collar on each side of every reference boundary (NIST convention; pyannote's
`collar` argument is the total width, so 0.5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from whisperx_assets.evaluation.synthetic import Turn

@dataclass(frozen=True)
class Recording:
    """An audio file with its reference turns (speaker, start, end, text)."""

    path: Path
    turns: list[Turn]

    @property
    def text(self) -> str:
        return " ".join(t.text for t in self.turns)

    @property
    def speakers(self) -> set[str]:
        return {t.speaker for t in self.turns}


def pyannote_sample() -> Recording:
    """pyannote.audio's bundled 30 s two-speaker telephone sample with its STM reference."""
    folder = Path(str(resources.files("pyannote.audio") / "sample"))
    turns = []
    for line in (folder / "sample.stm").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 5:
            continue
        _, _, speaker, start, end = parts[:5]
        turns.append(Turn(speaker, float(start), float(end), parts[5] if len(parts) > 5 else ""))
    return Recording(folder / "sample.wav", turns)


def pyannote_sample_rttm_turns() -> list[Turn]:
    folder = Path(str(resources.files("pyannote.audio") / "sample"))
    turns = []
    for line in (folder / "sample.rttm").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "SPEAKER":
            start, duration, speaker = float(parts[3]), float(parts[4]), parts[7]
            turns.append(Turn(speaker, start, start + duration, ""))
    return turns


def _number_words(match: re.Match, language: str) -> str:
    from num2words import num2words

    try:
        return " " + num2words(int(match.group()), lang=language) + " "
    except NotImplementedError:  # a language num2words does not know: leave the digits
        return match.group()


def normalize_text(text: str, language: str = "en") -> str:
    """Lower case, no punctuation, numbers in words ("10" and "ten" are the same word to a listener)."""
    text = re.sub(r"\d+", lambda m: _number_words(m, language), text.lower())
    text = re.sub(r"[^\w\s']", " ", text.replace("-", " "))
    return " ".join(text.split())


def word_error_rate(reference: str, hypothesis: str, language: str = "en") -> float:
    import jiwer

    ref, hyp = normalize_text(reference, language), normalize_text(hypothesis, language)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp))


def _annotation(turns):
    from pyannote.core import Annotation, Segment

    annotation = Annotation()
    for i, turn in enumerate(turns):
        annotation[Segment(float(turn.start), float(turn.end)), i] = str(turn.speaker)
    return annotation


def diarization_error_rate(reference: list[Turn], hypothesis: pd.DataFrame | list[Turn], collar: float = 0.25) -> float:
    """DER with `collar` seconds forgiven on each side of reference boundaries; overlap scored."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    if isinstance(hypothesis, pd.DataFrame):
        hypothesis = [Turn(r.speaker, r.start, r.end, "") for r in hypothesis.itertuples()]
    metric = DiarizationErrorRate(collar=2 * collar, skip_overlap=False)
    return float(metric(_annotation(reference), _annotation(hypothesis)))


def one_speaker_of_sample(path: str | Path, speaker: str, min_seconds: float = 20.0, gap: float = 0.5,
                          margin: float = 0.1, min_piece: float = 0.3) -> Recording:
    """Real single-voice speech: the turns of one speaker of pyannote's sample (by its RTTM) without the stretches
    where the other speaker talks too, joined with `gap` s of silence and repeated until at least `min_seconds`
    long, written to `path`. Its reference turns are the pieces, all that speaker's (texts unknown: for speaker
    counts and DER, not WER)."""
    import soundfile as sf

    audio, rate = sf.read(pyannote_sample().path, dtype="float32")
    turns = pyannote_sample_rttm_turns()
    others = [(t.start - margin, t.end + margin) for t in turns if t.speaker != speaker]
    spans = []
    for turn in (t for t in turns if t.speaker == speaker):
        start = turn.start
        for other_start, other_end in sorted(others):
            if other_start < turn.end and other_end > start:
                spans.append((start, other_start))
                start = max(start, other_end)
        spans.append((start, turn.end))
    pieces = [audio[int(a * rate):int(b * rate)] for a, b in spans if b - a >= min_piece]
    if not pieces:
        raise ValueError(f"no speaker {speaker!r} in pyannote's sample")
    silence = np.zeros(int(gap * rate), dtype=np.float32)
    out, turns, cursor = [silence], [], len(silence)
    while cursor < min_seconds * rate:
        for piece in pieces:
            turns.append(Turn(speaker, cursor / rate, (cursor + len(piece)) / rate, ""))
            out += [piece, silence]
            cursor += len(piece) + len(silence)
    sf.write(path, np.concatenate(out), rate, subtype="PCM_16")
    return Recording(Path(path), turns)


def turn_boundary_errors(turns: list[Turn], words: pd.DataFrame) -> np.ndarray:
    """|error| in seconds of each reference turn's start and end as given by the first and last word timed
    inside it. Each word belongs to the turn nearest its middle (turns are separated by silences)."""
    words = words.dropna(subset=["start", "end"])
    middles = ((words["start"] + words["end"]) / 2).to_numpy()
    owner = np.array([min(range(len(turns)), key=lambda i: max(turns[i].start - m, 0, m - turns[i].end))
                      for m in middles])
    errors = []
    for i, turn in enumerate(turns):
        mine = words[owner == i]
        if len(mine):
            errors += [abs(mine["start"].min() - turn.start), abs(mine["end"].max() - turn.end)]
        else:
            errors += [turn.end - turn.start] * 2  # a turn with no word counts as wholly missed
    return np.array(errors)
