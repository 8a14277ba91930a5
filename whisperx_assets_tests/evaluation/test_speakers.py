"""Who is speaking on a small generated collection through the real diarization and embedding: the calibrated
thresholds must still name and group it right."""

import pytest

from whisperx_assets.evaluation.speakers import CollectionPlan, build, naming, observe, voice_scores, voices
from whisperx_assets.evaluation.synthetic import CONVERSATION_TEXTS
from whisperx_assets.speech.speakers import NAME_THRESHOLD, VOICE_THRESHOLD

SMALL = CollectionPlan(enrolled=("alice", "bob", "erin"), unknown=("sam",), texts=CONVERSATION_TEXTS["test"],
                       rounds=2, seed=3, lines=4)


@pytest.mark.slow
def test_a_small_collection_is_named_and_grouped_at_the_calibrated_thresholds(engine, tmp_path):
    observed = observe(engine, build(tmp_path, SMALL))
    named = naming(observed, NAME_THRESHOLD)
    grouped = voice_scores(observed, voices(observed, VOICE_THRESHOLD), VOICE_THRESHOLD)
    # Two people merged into one diarized speaker is the diarization's error, left unscored: one at most.
    assert named["merged_speakers"] <= 1, observed.speakers
    assert named["accuracy"] == 1.0 and named["false_accept_rate"] == 0.0, named
    assert grouped["purity"] == 1.0 and grouped["voice_ids_per_person"] <= 1.5, grouped
