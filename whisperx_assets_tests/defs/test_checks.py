"""Check results: which partitions fail, what they say, how severe."""

from dagster import AssetCheckSeverity

from whisperx_assets.defs.checks import check_result, spans_text, speech_problems


def test_speech_left_without_words_is_a_warning_naming_its_times():
    facts = {"a": {"speech_regions": 9, "speech_recovered": spans_text([(16.87, 17.55)]), "speech_missing": "none"},
             "b": {"speech_regions": 4, "speech_recovered": "none", "speech_missing": spans_text([(3.0, 4.25)])}}
    result = check_result("speech_transcribed", "transcript", {k: speech_problems(f) for k, f in facts.items()},
                          severity=AssetCheckSeverity.WARN)
    assert not result.passed and result.severity == AssetCheckSeverity.WARN
    assert result.metadata["problems"].value == "b: no words for the speech at 3.00-4.25 s"
    assert result.metadata["partitions_failing"].value == 1 and result.metadata["partitions_checked"].value == 2


def test_every_region_transcribed_passes():
    result = check_result("speech_transcribed", "transcript", {"a": speech_problems({"speech_missing": "none"})})
    assert result.passed and result.metadata["problems"].value == "none"
