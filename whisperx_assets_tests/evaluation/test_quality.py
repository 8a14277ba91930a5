"""The scoring the quality benchmark and the accuracy tests rely on."""

import pandas as pd
import pytest

from whisperx_assets.evaluation.quality import normalize_text, turn_boundary_errors, word_error_rate
from whisperx_assets.evaluation.synthetic import Turn


@pytest.mark.parametrize("language, spoken, written", [
    ("en", "Let us meet at ten, twenty-five of us.", "let us meet at 10, 25 of us"),
    ("de", "Wir treffen uns um einundzwanzig Uhr.", "Wir treffen uns um 21 Uhr"),
    ("fr", "À dix heures !", "à 10 heures"),
])
def test_numbers_score_the_same_in_words_and_digits(language, spoken, written):
    assert normalize_text(spoken, language) == normalize_text(written, language)
    assert word_error_rate(spoken, written, language) == 0.0


def test_a_language_without_number_words_keeps_its_digits():
    assert normalize_text("x 3", "xx") == "x 3"


def test_word_errors_count():
    assert word_error_rate("the cat sat", "the bat sat") == pytest.approx(1 / 3)
    assert word_error_rate("", "") == 0.0 and word_error_rate("", "noise") == 1.0


def test_turn_boundaries_from_the_words_nearest_each_turn():
    turns = [Turn("a", 0.5, 2.0, "one two"), Turn("b", 3.0, 4.0, "three")]
    words = pd.DataFrame({"start": [0.6, 1.2, 2.9], "end": [1.0, 2.1, 4.0]})
    assert turn_boundary_errors(turns, words).round(3).tolist() == [0.1, 0.1, 0.1, 0.0]
    # A turn with no word counts as wholly missed.
    assert turn_boundary_errors(turns, words.iloc[:2]).round(3).tolist()[2:] == [1.0, 1.0]
