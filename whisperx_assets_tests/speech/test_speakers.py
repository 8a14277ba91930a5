"""Naming and voice ids on hand-made vectors: which speaker a voiceprint names, how voices form and stay stable
as files are added."""

import numpy as np
import pandas as pd
import pytest

from whisperx_assets.speech.speakers import (assign_voices, cluster_average, identify, no_voices, solo_spans,
                                             voices_from_members)

def unit(*values: float) -> list[float]:
    vector = np.asarray(values, dtype=np.float64)
    return (vector / np.linalg.norm(vector)).tolist()


def near(axis: int, similarity: float, width: int = 4) -> list[float]:
    """A unit vector with `similarity` to basis vector `axis` (the rest on the next axis)."""
    vector = np.zeros(width)
    vector[axis], vector[(axis + 1) % width] = similarity, np.sqrt(1 - similarity ** 2)
    return vector.tolist()


def frame(partition: str, **embeddings) -> pd.DataFrame:
    return pd.DataFrame({"partition": partition, "speaker": list(embeddings), "embedding": list(embeddings.values())})


PRINTS = pd.DataFrame({"name": ["ann", "ben", "cid"], "embedding": [near(0, 1.0), near(2, 1.0), None]})


def test_a_person_names_only_the_most_similar_speaker_of_a_file():
    speakers = frame("f", S0=near(0, 0.90), S1=near(0, 0.95), S2=near(2, 0.70), S3=None)
    assert identify(speakers, PRINTS, 0.8) == {"S1": ("ann", pytest.approx(0.95))}


def test_each_speaker_gets_its_best_voiceprint_above_the_threshold():
    speakers = frame("f", S0=near(0, 0.90), S1=near(2, 0.85))
    assert {s: n for s, (n, _) in identify(speakers, PRINTS, 0.8).items()} == {"S0": "ann", "S1": "ben"}
    assert identify(speakers, PRINTS, 0.95) == {}
    assert identify(speakers, PRINTS.iloc[:0], 0.8) == {} and identify(speakers.iloc[:0], PRINTS, 0.8) == {}


def voice_of(voices, partition: str, speaker: str) -> str:
    members = voices.members
    return members[(members["partition"] == partition) & (members["speaker"] == speaker)]["voice_id"].item()


def test_voices_stay_the_same_as_files_are_added():
    first = assign_voices(no_voices(), frame("a", S0=near(0, 1.0), S1=near(2, 1.0)), 0.8)
    assert voice_of(first, "a", "S0") == "VOICE_0001" and voice_of(first, "a", "S1") == "VOICE_0002"
    second = assign_voices(first, frame("b", S0=near(2, 0.9), S1=near(0, 0.9), S2=near(1, 1.0)), 0.8)
    pd.testing.assert_frame_equal(second.members[second.members["partition"] == "a"], first.members)
    assert [voice_of(second, "b", s) for s in ("S0", "S1", "S2")] == ["VOICE_0002", "VOICE_0001", "VOICE_0003"]
    assert dict(zip(second.centroids["voice_id"], second.centroids["members"])) == {
        "VOICE_0001": 2, "VOICE_0002": 2, "VOICE_0003": 1}


def test_two_speakers_of_one_file_never_share_a_voice():
    known = assign_voices(no_voices(), frame("a", S0=near(0, 1.0)), 0.8)
    both = assign_voices(known, frame("b", S0=near(0, 0.9), S1=near(0, 0.95)), 0.8)
    assert {voice_of(both, "b", "S0"), voice_of(both, "b", "S1")} == {"VOICE_0001", "VOICE_0002"}
    fresh = assign_voices(no_voices(), frame("c", S0=near(3, 1.0), S1=near(3, 0.99)), 0.8)
    assert fresh.members["voice_id"].nunique() == 2


def test_voice_numbers_continue_from_the_highest_id():
    members = pd.DataFrame({"partition": ["a", "b"], "speaker": ["S0", "S0"], "voice_id": ["VOICE_0002", "VOICE_0007"],
                            "similarity": [1.0, 1.0], "embedding": [near(0, 1.0), near(2, 1.0)]})
    grown = assign_voices(voices_from_members(members), frame("c", S0=near(1, 1.0), S1=near(3, 1.0)), 0.8)
    assert [voice_of(grown, "c", s) for s in ("S0", "S1")] == ["VOICE_0008", "VOICE_0009"]


def test_average_linkage_keeps_files_apart_and_clusters_in_order():
    vectors = np.array([unit(1, 0, 0), unit(0, 1, 0), unit(1, 0.1, 0), unit(1, 0.2, 0), unit(0, 1, 0.1)])
    assert cluster_average(vectors, 0.9, ["a", "b", "c", "d", "e"]) == [[0, 2, 3], [1, 4]]
    # 2 and 3 are the most alike and pair first; 0 shares a file with 2, so it cannot join them.
    assert cluster_average(vectors, 0.9, ["a", "b", "a", "d", "e"]) == [[0], [1, 4], [2, 3]]
    assert cluster_average(vectors, 0.999, list("abcde")) == [[0], [1], [2], [3], [4]]


def test_solo_spans_leave_out_overlap():
    turns = pd.DataFrame({"speaker": ["A", "B", "A", "C"], "start": [0.0, 2.0, 6.0, 6.5],
                          "end": [3.0, 5.0, 8.0, 7.0]})
    assert solo_spans(turns) == {"A": [(0.0, 2.0), (6.0, 6.5), (7.0, 8.0)], "B": [(3.0, 5.0)], "C": []}


# sam, never enrolled, is the closest voice to bob (named bob, and put in bob's voice, at 0.80); four short files.
def test_the_speaker_most_like_a_voice_joins_it_when_two_of_one_file_clear_it():
    known = assign_voices(no_voices(), frame("a", S0=near(0, 1.0)), 0.8)
    later = assign_voices(known, frame("b", S0=near(0, 0.85), S1=near(0, 0.97)), 0.8)
    joined = later.members[later.members["partition"] == "b"].set_index("speaker")["voice_id"]
    assert joined["S1"] == "VOICE_0001" and joined["S0"] != "VOICE_0001"
