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

# Voices that espeak-ng renders clearly distinct (different variants and pitch): (voice, speed, pitch).
VOICES = {
    "alice": ("en-us+f3", 165, 60),
    "bob": ("en-gb+m3", 150, 35),
    "carol": ("en-us+f5", 175, 75),
    "dave": ("en-us+m1", 140, 25),
    "greta": ("de+f3", 155, 60),
    "hans": ("de+m3", 145, 30),
    "lucia": ("es+f3", 160, 65),
    "pablo": ("es+m3", 150, 30),
    "claire": ("fr+f3", 160, 60),
    "jean": ("fr+m3", 150, 30),
}
# English people for collections (speaker identification, voices across files): espeak-ng's most distinct
# variants over six accents, no two more alike to Resemblyzer than 0.84 (same voice, other sentences: 0.94-0.98).
# British voices are "en+variant": espeak-ng 1.51 ignores the variant of "en-gb+variant" (bob is plain en-gb).
VOICES |= {
    "erin": ("en+anika", 160, 65), "frank": ("en-gb-scotland+travis", 150, 40), "george": ("en-us+iven", 150, 40),
    "henry": ("en-gb-x-rp+edward", 150, 35), "irene": ("en-us+steph", 165, 65), "jack": ("en-029+zac", 160, 50),
    "karen": ("en-us+grandma", 140, 65), "leo": ("en-us-nyc+quincy", 150, 40), "mark": ("en-us+caleb", 155, 45),
    "nathan": ("en-gb-x-gbcwmd+norbert", 150, 40), "olivia": ("en-gb-scotland+shelby", 160, 60),
    "peter": ("en-us-nyc+m8", 165, 55), "quinn": ("en+klatt5", 150, 40), "ryan": ("en-gb-x-gbclan+Andy", 155, 45),
    "sam": ("en+victor", 150, 40), "tina": ("en-us+belinda", 160, 60),
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


# Scripts with voices and texts not used by the default dialogue, for counts and languages.
THREE_SPEAKER_SCRIPT = [
    ("dave", "The train was late again this morning, so I missed the first meeting."),
    ("alice", "That happens a lot lately. Did anyone take notes?"),
    ("bob", "Maria did. She said the client wants a new offer by Thursday."),
    ("dave", "Thursday is very soon. We should split the work between us."),
    ("alice", "I can write the technical part if you handle the prices."),
    ("bob", "Fine. I will also check the delivery dates with the factory."),
    ("dave", "Good. Let us meet again tomorrow at ten to compare our drafts."),
    ("alice", "Ten is fine for me. I will book the small room."),
    ("bob", "Then I will bring the latest test results."),
]
MONOLOGUE_TEXTS = (
    "This is a short report about the state of the garden in the early summer.",
    "The tomatoes are growing well, but the beans need more water than last year.",
    "I planted new flowers near the fence, and the birds seem to like them.",
    "Next week I will repair the old shed and paint the door green.",
    "If the weather stays dry, we can harvest the first vegetables in July.",
)
MONOLOGUE_SCRIPT = [("bob", text) for text in MONOLOGUE_TEXTS]
# What enrolled people read for their voiceprint, and two separate pools of conversation lines: one to calibrate
# thresholds on, one to test them on (no sentence of one is in another).
ENROLLMENT_TEXTS = (
    "Please record my voice so that the system can recognise me in later meetings.",
    "I usually speak at this speed, and my voice sounds like this on most days.",
    "The quick brown fox jumps over the lazy dog near the quiet river bank.",
    "We were away a week ago and came back on a Tuesday evening by train.",
)
CONVERSATION_TEXTS = {
    "calibration": (
        "Has anyone seen the keys to the storage room?", "The printer on the second floor is broken again.",
        "I moved the budget review to Wednesday afternoon.", "Could you send me the slides after the call?",
        "The new intern starts on Monday and needs a laptop.", "We should order more paper before the holidays.",
        "My flight was delayed by almost three hours.", "The customer asked for a discount on the second order.",
        "Let us keep the presentation under twenty minutes.", "I think the numbers in the third column are wrong.",
        "The parking lot will be closed for repairs next week.", "Who is taking notes at the board meeting?",
        "The coffee machine finally works again.", "I will call the supplier first thing tomorrow.",
        "The report needs one more chart about the sales in autumn.", "Remember to update the shared calendar.",
        "The heating in the meeting room is far too strong.", "We lost the contract to a cheaper company.",
        "Can we move the training session to the big hall?", "The website was down for an hour last night.",
    ),
    "test": (
        "I finished reading the book you lent me last month.", "The museum is free on the first Sunday of the month.",
        "Our neighbours are building a wooden fence.", "The bakery on the corner sells the best bread in town.",
        "We walked along the beach until the sun went down.", "My brother plays the piano in a small jazz band.",
        "The bus to the airport leaves every twenty minutes.", "She painted the kitchen a bright shade of yellow.",
        "The children built a snowman in the garden.", "I need new shoes before the hiking trip.",
        "The river flooded the fields after the storm.", "He cooked a large pot of soup for the whole family.",
        "The concert was cancelled because of the rain.", "We planted apple trees behind the old barn.",
        "The market opens early on Saturday mornings.", "My grandmother tells the funniest stories.",
        "The lake was frozen for almost two months.", "They are planning a long bicycle tour in the mountains.",
        "The cat sleeps on the windowsill all afternoon.", "I found an old map of the city in the attic.",
    ),
}
# Two-voice dialogues in other languages: {language: script}.
FOREIGN_SCRIPTS = {
    "de": [("greta", "Guten Morgen. Hast du den Bericht für die Sitzung schon gelesen?"),
           ("hans", "Ja, gestern Abend. Die Zahlen für den Sommer sehen gut aus."),
           ("greta", "Dann sollten wir das Projekt im Herbst beginnen."),
           ("hans", "Einverstanden. Ich schreibe heute noch an die Kunden."),
           ("greta", "Sehr gut. Wir sprechen morgen wieder darüber.")],
    "es": [("lucia", "Buenos días. ¿Has leído el informe para la reunión?"),
           ("pablo", "Sí, anoche. Las cifras del verano son muy buenas."),
           ("lucia", "Entonces podemos empezar el proyecto en otoño."),
           ("pablo", "De acuerdo. Hoy escribo a los clientes."),
           ("lucia", "Muy bien. Hablamos otra vez mañana.")],
    "fr": [("claire", "Bonjour. As-tu lu le rapport pour la réunion?"),
           ("jean", "Oui, hier soir. Les chiffres de l'été sont très bons."),
           ("claire", "Alors nous pouvons commencer le projet en automne."),
           ("jean", "D'accord. J'écris aux clients aujourd'hui."),
           ("claire", "Très bien. Nous en reparlons demain.")],
}



def foreign_monologue(language: str) -> list[tuple[str, str]]:
    """Every line of `language`'s dialogue read by its second voice: one voice, one speaker."""
    script = FOREIGN_SCRIPTS[language]
    return [(script[1][0], text) for _, text in script]


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
    raw = path.with_suffix(".raw.wav")  # sox -D: no dither, so the same script always gives the same audio
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text],
                   check=True, capture_output=True)
    subprocess.run(["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(path)],
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
