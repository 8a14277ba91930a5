"""The benchmark corpus: deterministic multi-voice recordings of 20-90 s with exact text and turns."""

from __future__ import annotations

import random
from pathlib import Path

from whisperx_assets.evaluation.quality import Recording
from whisperx_assets.evaluation.synthetic import VOICES, synthesize_dialogue

SENTENCES = [
    "Thank you all for coming to the review this afternoon.",
    "The first item on the agenda is the budget for next year.",
    "We spent less than planned on travel and more on equipment.",
    "I would like to hear what the engineering team thinks about the schedule.",
    "The new testing system is working well but it needs more machines.",
    "Customers have asked for better support in the evenings.",
    "We could hire two more people for the help desk in March.",
    "That sounds reasonable if the numbers stay where they are.",
    "The warehouse move is almost finished and the trucks arrive on Monday.",
    "Please send me the updated figures before the end of the week.",
    "I spoke with the supplier and they can deliver the parts earlier.",
    "The design for the new website is ready for a first review.",
    "Some of the pages load slowly on older phones.",
    "We should measure that before we decide anything else.",
    "The training sessions were popular and we will repeat them in the autumn.",
    "Our main risk is the delay in the software release.",
    "I think we can still make the deadline if we reduce the scope.",
    "Let us agree on the list of features that must be in the first version.",
    "The marketing plan depends on the release date.",
    "I will write a short summary and share it with everyone tomorrow.",
    "Does anyone have questions about the new travel policy?",
    "The office will be closed on the last Friday of the month.",
    "We received good feedback from the pilot customers in the north.",
    "The report shows that energy costs went down by ten percent.",
    "Next time we should start with the customer survey results.",
]


def make_corpus(folder: Path, count: int = 20, seed: int = 7, min_seconds: float = 20, max_seconds: float = 87):
    """`count` recordings, 2-3 voices each, lengths spread over [min_seconds, max_seconds]."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    recordings = []
    for i in range(count):
        target = min_seconds + (max_seconds - min_seconds) * i / max(count - 1, 1)
        voices = rng.sample(sorted(VOICES), rng.choice([2, 2, 3]))
        script, seconds, last = [], 0.0, None
        while seconds < target:
            speaker = rng.choice([v for v in voices if v != last])
            text = " ".join(rng.sample(SENTENCES, rng.choice([1, 2])))
            script.append((speaker, text))
            seconds += 0.33 * len(text.split()) + 0.55  # espeak-ng speaks ~3 words/s, plus the gap
            last = speaker
        path = folder / f"meeting{i:02d}.wav"
        recordings.append(Recording(path, synthesize_dialogue(path, script)))
    return recordings
