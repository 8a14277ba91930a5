"""Who is speaking, measured on generated collections: named speakers (enrolled voiceprints) and the same voice
across files (voice ids), through the product path, with thresholds calibrated on a separate collection.

A collection: enrollment clips of its enrolled people, and 2-3 person dialogues of enrolled and never-enrolled
people, every person in one file per round. Each file is diarized by the engine, its speakers embedded
(`SpeakerEncoder.speakers` on the diarized turns), named (`identify`) and given voices (`assign_voices`, file
after file). Each diarized speaker's true person is the one its turns overlap most in the reference; a speaker
whose true person has less than MIN_SHARE of that overlap is two people merged by the diarization: it takes part
in everything (as in the product) but is counted apart, not scored (no threshold can name it right).

Calibration and test collections share no person and no sentence, so the thresholds are not fitted to the test.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from whisperx_assets.evaluation.quality import Recording
from whisperx_assets.evaluation.synthetic import CONVERSATION_TEXTS, ENROLLMENT_TEXTS, Turn, synthesize_dialogue
from whisperx_assets.speech.media import SAMPLE_RATE
from whisperx_assets.speech.speakers import NAME_THRESHOLD, VOICE_THRESHOLD, assign_voices, identify, no_voices


@dataclasses.dataclass(frozen=True)
class CollectionPlan:
    enrolled: tuple[str, ...]
    unknown: tuple[str, ...]  # never enrolled: their speakers must stay unnamed
    texts: tuple[str, ...]  # conversation lines (enrollment clips read ENROLLMENT_TEXTS)
    rounds: int  # files per person: each round puts every person in one file
    seed: int
    lines: int = 6  # turns per file, in rotation


# Most never-enrolled people are the closest voice of an enrolled one (tina: alice, dave and sam: bob, peter: leo,
# quinn: henry, olivia: karen), so false accepts are tried where they are likeliest.
CALIBRATION = CollectionPlan(enrolled=("henry", "karen", "frank", "irene", "jack"),
                             unknown=("quinn", "olivia", "george"), texts=CONVERSATION_TEXTS["calibration"],
                             rounds=10, seed=1)
TEST = CollectionPlan(enrolled=("alice", "bob", "carol", "erin", "leo", "mark", "nathan", "ryan"),
                      unknown=("tina", "dave", "peter", "sam"), texts=CONVERSATION_TEXTS["test"], rounds=8, seed=2)

MIN_SHARE = 0.8  # of a diarized speaker's overlap with the reference: less, and it is two people merged
MAX_FALSE_ACCEPT_RATE = 0.02  # of all speakers given a name that is not theirs, when calibrating NAME_THRESHOLD
THRESHOLDS = np.round(np.arange(0.60, 0.99, 0.005), 3)


@dataclasses.dataclass
class Collection:
    enrollment: dict[str, list[Path]]  # {person: clips}
    files: list[Recording]
    plan: CollectionPlan


def group_sizes(people: int, rng: np.random.Generator) -> list[int]:
    """Sizes of 2 or 3 that add up to `people` (at least 2)."""
    sizes = []
    while people:
        size = people if people <= 3 else 2 if people == 4 else int(rng.choice([2, 3]))
        sizes.append(size)
        people -= size
    return sizes


def scripts(plan: CollectionPlan) -> list[list[tuple[str, str]]]:
    """The plan's dialogues: per round, everyone shuffled into 2-3 person files of `plan.lines` turns in rotation,
    each line drawn without repeats within a file."""
    rng = np.random.default_rng(plan.seed)
    people = [*plan.enrolled, *plan.unknown]
    made = []
    for _ in range(plan.rounds):
        order = [people[i] for i in rng.permutation(len(people))]
        for size in group_sizes(len(order), rng):
            group, order = order[:size], order[size:]
            lines = rng.choice(len(plan.texts), size=plan.lines, replace=False)
            made.append([(group[k % size], plan.texts[line]) for k, line in enumerate(lines)])
    return made


def build(folder: Path, plan: CollectionPlan) -> Collection:
    """Render the plan's enrollment clips (one per enrollment sentence) and dialogues under `folder`."""
    enrollment = {}
    for person in plan.enrolled:
        enrollment[person] = [folder / "enrollment" / f"{person}-{i}.wav" for i in range(len(ENROLLMENT_TEXTS))]
        for path, text in zip(enrollment[person], ENROLLMENT_TEXTS):
            synthesize_dialogue(path, [(person, text)])
    files = []
    for i, script in enumerate(scripts(plan)):
        path = folder / f"file-{i:03d}.wav"
        files.append(Recording(path, synthesize_dialogue(path, script)))
    return Collection(enrollment, files, plan)


def true_persons(turns: pd.DataFrame, reference: list[Turn]) -> dict[str, tuple[str | None, float]]:
    """{diarized speaker: (the reference person its turns overlap most, that person's share of the overlap)};
    (None, 0.0) for a speaker that overlaps nobody's speech."""
    overlap: dict[str, dict[str, float]] = {}
    for turn in turns.itertuples():
        mine = overlap.setdefault(str(turn.speaker), {})
        for ref in reference:
            seconds = min(turn.end, ref.end) - max(turn.start, ref.start)
            if seconds > 0:
                mine[ref.speaker] = mine.get(ref.speaker, 0.0) + seconds
    return {speaker: (max(seconds, key=seconds.get), max(seconds.values()) / sum(seconds.values())) if seconds
            else (None, 0.0) for speaker, seconds in overlap.items()}


@dataclasses.dataclass
class Observed:
    """What the product path made of a collection, with the truth beside it."""

    speakers: pd.DataFrame  # partition, speaker, person (true), share, scored, enrolled, seconds, embedding
    voiceprints: pd.DataFrame  # name, seconds, embedding
    files: pd.DataFrame  # partition, seconds (audio), speakers_found, speakers_true
    seconds: dict[str, float]  # wall time: diarization, embedding, enrollment


def observe(engine, collection: Collection) -> Observed:
    """Diarize and embed every file, and make every enrolled person's voiceprint, with `engine`."""
    seconds = {"diarization": 0.0, "embedding": 0.0, "enrollment": 0.0}
    started = time.perf_counter()
    prints = []
    for person, clips in collection.enrollment.items():
        vector, speech = engine.voiceprint([engine.load(clip)[1] for clip in clips])
        prints.append({"name": person, "seconds": speech, "embedding": None if vector is None else vector.tolist()})
    seconds["enrollment"] = time.perf_counter() - started
    speakers, files = [], []
    for recording in collection.files:
        partition = recording.path.stem
        audio = engine.load(recording.path)[1]
        started = time.perf_counter()
        turns = engine.diarize(audio).turns
        seconds["diarization"] += time.perf_counter() - started
        started = time.perf_counter()
        embeddings = engine.speaker_embeddings(audio, turns)
        seconds["embedding"] += time.perf_counter() - started
        persons = true_persons(turns, recording.turns)
        speakers.append(embeddings.assign(partition=partition,
                                          person=[persons[s][0] for s in embeddings["speaker"]],
                                          share=[persons[s][1] for s in embeddings["speaker"]]))
        files.append({"partition": partition, "seconds": len(audio) / SAMPLE_RATE, "speakers_found": len(embeddings),
                      "speakers_true": len(recording.speakers)})
    frame = pd.concat(speakers, ignore_index=True)
    frame["enrolled"] = frame["person"].isin(collection.plan.enrolled)
    frame["scored"] = frame["share"] >= MIN_SHARE
    return Observed(frame[["partition", "speaker", "person", "share", "scored", "enrolled", "seconds", "embedding"]],
                    pd.DataFrame(prints, columns=["name", "seconds", "embedding"]), pd.DataFrame(files), seconds)


def naming(observed: Observed, threshold: float) -> dict:
    """Identification at `threshold`, over the scored speakers: accuracy (enrolled people's speakers named as
    themselves), wrong names (enrolled people's speakers named as someone else), unknown named (never-enrolled
    people's speakers given a name) and the false-accept rate (both kinds of false name, of all scored speakers);
    and how many of the merged speakers were given a name."""
    names = {}
    for partition, group in observed.speakers.groupby("partition", sort=False):
        names.update({(partition, s): n for s, (n, _) in identify(group, observed.voiceprints, threshold).items()})
    given = [names.get((p, s)) for p, s in zip(observed.speakers["partition"], observed.speakers["speaker"])]
    everyone = observed.speakers.assign(name=given)
    rows, merged = everyone[everyone["scored"]], everyone[~everyone["scored"]]
    enrolled, unknown = rows[rows["enrolled"]], rows[~rows["enrolled"]]
    correct = int((enrolled["name"] == enrolled["person"]).sum())
    wrong = int((enrolled["name"].notna() & (enrolled["name"] != enrolled["person"])).sum())
    unknown_named = int(unknown["name"].notna().sum())
    return {"threshold": float(threshold), "accuracy": correct / max(len(enrolled), 1),
            "false_accept_rate": (wrong + unknown_named) / max(len(rows), 1),
            "wrong_name_rate": wrong / max(len(enrolled), 1),
            "unknown_named_rate": unknown_named / max(len(unknown), 1),
            "enrolled_speakers": len(enrolled), "correct": correct, "wrong": wrong,
            "unknown_speakers": len(unknown), "unknown_named": unknown_named,
            "merged_speakers": len(merged), "merged_named": int(merged["name"].notna().sum())}


def voices(observed: Observed, threshold: float) -> pd.DataFrame:
    """The collection's voice members (partition, speaker, voice_id, ...) built file after file, as the `voices`
    asset would if refreshed after each file."""
    made = no_voices()
    for _, group in observed.speakers.groupby("partition", sort=False):
        made = assign_voices(made, group[["partition", "speaker", "embedding"]], threshold)
    return made.members


def voice_scores(observed: Observed, members: pd.DataFrame, threshold: float) -> dict:
    """Purity (share of each voice's members that are its majority person, over all members), inverse purity
    (share of each person's members in that person's largest voice), their F1, and voice ids per person, over the
    scored speakers that have an embedding (members)."""
    rows = members.merge(observed.speakers[["partition", "speaker", "person", "scored"]], on=["partition", "speaker"])
    rows = rows[rows["scored"]]
    table = pd.crosstab(rows["voice_id"], rows["person"])
    purity = table.max(axis=1).sum() / max(len(rows), 1)
    inverse = table.max(axis=0).sum() / max(len(rows), 1)
    return {"threshold": float(threshold), "purity": float(purity), "inverse_purity": float(inverse),
            "f1": float(2 * purity * inverse / (purity + inverse)) if purity + inverse else 0.0,
            "voice_ids_per_person": float((table > 0).sum(axis=0).mean()), "voice_ids": int(table.shape[0]),
            "persons": int(table.shape[1]), "members": len(rows)}


def middle(thresholds: list[float]) -> float:
    """The middle of equally good thresholds: furthest from where either side of them gets worse."""
    return sorted(thresholds)[len(thresholds) // 2]


def sweep(observed: Observed) -> dict:
    """Naming and voice scores at each of THRESHOLDS."""
    return {"naming_sweep": [naming(observed, t) for t in THRESHOLDS],
            "voice_sweep": [voice_scores(observed, voices(observed, t), t) for t in THRESHOLDS]}


def calibrate(swept: dict) -> tuple[float, float]:
    """(NAME_THRESHOLD, VOICE_THRESHOLD) from a `sweep`: the highest accuracy whose false-accept rate is at most
    MAX_FALSE_ACCEPT_RATE, and the best F1 of purity and inverse purity. Ties: the middle of the tied thresholds."""
    allowed = [row for row in swept["naming_sweep"] if row["false_accept_rate"] <= MAX_FALSE_ACCEPT_RATE]
    best = max(row["accuracy"] for row in allowed)
    name_threshold = middle([row["threshold"] for row in allowed if row["accuracy"] == best])
    best = max(row["f1"] for row in swept["voice_sweep"])
    voice_threshold = middle([row["threshold"] for row in swept["voice_sweep"] if row["f1"] == best])
    return name_threshold, voice_threshold


def separation(observed: Observed) -> dict:
    """How far apart the scores are: each speaker against its own voiceprint and against the others' (naming),
    and speakers of different files of the same person and of different people (voices)."""
    rows = observed.speakers[observed.speakers["embedding"].notna() & observed.speakers["scored"]]
    vectors = np.array(rows["embedding"].tolist(), dtype=np.float64)
    prints = observed.voiceprints[observed.voiceprints["embedding"].notna()]
    against = vectors @ np.array(prints["embedding"].tolist(), dtype=np.float64).T
    own = rows["person"].to_numpy()[:, None] == prints["name"].to_numpy()[None, :]
    pairs = vectors @ vectors.T
    persons, partitions = rows["person"].to_numpy(), rows["partition"].to_numpy()
    other_file = np.triu(partitions[:, None] != partitions[None, :], k=1)
    same = persons[:, None] == persons[None, :]

    def spread(same_scores, other_scores) -> dict:
        return {"same_min": float(same_scores.min()), "same_p05": float(np.percentile(same_scores, 5)),
                "other_p95": float(np.percentile(other_scores, 95)), "other_max": float(other_scores.max())}

    return {"name": spread(against[own], against[~own]), "voice": spread(pairs[other_file & same],
                                                                         pairs[other_file & ~same])}


def figures(observed: Observed, name_threshold: float, voice_threshold: float) -> dict:
    files = observed.files
    return {"naming": naming(observed, name_threshold),
            "voices": voice_scores(observed, voices(observed, voice_threshold), voice_threshold),
            "separation": separation(observed),
            "files": len(files), "audio_seconds": round(float(files["seconds"].sum()), 1),
            "speakers": len(observed.speakers), "merged_speakers": int((~observed.speakers["scored"]).sum()),
            "unembedded_speakers": int(observed.speakers["embedding"].isna().sum()),
            "files_with_true_speaker_count": int((files["speakers_found"] == files["speakers_true"]).sum()),
            "wall_seconds": {k: round(v, 1) for k, v in observed.seconds.items()}}


def evaluate(engine, folder: Path, calibration: CollectionPlan = CALIBRATION, test: CollectionPlan = TEST) -> dict:
    """Calibrate both thresholds on the `calibration` collection, then measure the `test` collection at them and
    at the module's constants. Both collections' sweeps come along: how the figures move around the thresholds."""
    started = time.perf_counter()
    made = {"calibration": build(folder / "calibration", calibration), "test": build(folder / "test", test)}
    synthesis = time.perf_counter() - started
    observed = {name: observe(engine, collection) for name, collection in made.items()}
    swept = {name: sweep(one) for name, one in observed.items()}
    thresholds = calibrate(swept["calibration"])
    return {"thresholds": {"name": thresholds[0], "voice": thresholds[1]},
            "constants": {"name": NAME_THRESHOLD, "voice": VOICE_THRESHOLD},
            "calibration": {**figures(observed["calibration"], *thresholds), **swept["calibration"]},
            "test": {**figures(observed["test"], *thresholds), **swept["test"]},
            "test_at_constants": figures(observed["test"], NAME_THRESHOLD, VOICE_THRESHOLD),
            "synthesis_seconds": round(synthesis, 1)}
