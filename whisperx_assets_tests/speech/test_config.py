import pytest

from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.speech.config import SpeechConfig


def test_environment_parses_types(monkeypatch):
    for name, value in {"WHISPER_MODEL": "tiny.en", "BATCH_SIZE": "4", "DEFAULT_LANG": "de", "TEMPERATURES": "0,0.5",
                        "SUPPRESS_NUMERALS": "true", "MIN_SPEAKERS": "2", "VAD_ONSET": "0.4",
                        "WHISPERX_ASSETS_CACHE": "/tmp/x", "LANGUAGE": "fr_FR:fr"}.items():
        monkeypatch.setenv(name, value)
    config = SpeechConfig()
    assert config.whisper_model == "tiny.en" and config.batch_size == 4 and config.language == "de"
    assert config.temperatures == (0.0, 0.5) and config.suppress_numerals is True and config.min_speakers == 2
    assert config.vad_onset == 0.4 and str(config.cache_dir) == "/tmp/x"
    # a value given in code wins over the environment, and is checked the same way
    assert SpeechConfig(language="en", batch_size=2).language == "en"
    assert config.replace(beam_size=2).beam_size == 2 and config.replace(beam_size=2).batch_size == 4


@pytest.mark.parametrize("changes, fragment", [
    ({"beam_size": 0}, "beam_size must be in 1..20, got 0"),
    ({"vad_onset": 1.5}, "vad_onset must be in (0, 1), got 1.5"),
    ({"min_speakers": 3, "max_speakers": 2}, "must not exceed max_speakers"),
    ({"interpolate_method": "cubic"}, "interpolate_method must be one of ('nearest', 'linear', 'ignore'), got 'cubic'"),
    ({"task": "summarize"}, "task must be one of"),
    ({"temperatures": (0.2, 1.5)}, "temperatures must be values in 0..1"),
])
def test_invalid_values_name_the_allowed_range(changes, fragment):
    with pytest.raises(ValueError, match="invalid speech configuration: .*" + fragment.replace("(", r"\(")
                       .replace(")", r"\)").replace(".", r"\.")):
        SpeechConfig(**changes)


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("BATCH_SIZE", "many")
    with pytest.raises(ValueError, match="BATCH_SIZE='many' is not a valid int"):
        SpeechConfig()
    monkeypatch.setenv("BATCH_MAX_FILES", "0")
    with pytest.raises(ValueError, match="invalid pipeline settings: BATCH_MAX_FILES must be >= 1, got 0"):
        PipelineSettings()


def test_an_aliased_field_is_not_read_from_its_own_name(monkeypatch):
    """`language` comes from DEFAULT_LANG only: the locale's LANGUAGE (fr_FR:fr) is no Whisper language."""
    monkeypatch.delenv("DEFAULT_LANG", raising=False)
    monkeypatch.setenv("LANGUAGE", "fr_FR:fr")
    assert SpeechConfig().language is None and SpeechConfig(language="fr").language == "fr"


def test_every_option_either_shapes_a_stage_or_not():
    """A new option must say whether it changes a stage's output (its code version) or not."""
    from whisperx_assets.speech.config import OUTPUT_NEUTRAL, STAGE_OPTIONS

    shaping = [name for names in STAGE_OPTIONS.values() for name in names]
    assert len(shaping) == len(set(shaping)) and not set(shaping) & set(OUTPUT_NEUTRAL)
    assert sorted([*shaping, *OUTPUT_NEUTRAL]) == sorted(SpeechConfig.model_fields)


def test_code_versions_follow_the_options_of_their_stage(monkeypatch):
    from whisperx_assets.defs.assets.versions import code_version

    stages = ("media", "transcript", "alignment", "diarization", "combined", "subtitles")
    before = {stage: code_version(stage) for stage in stages}
    monkeypatch.setenv("WHISPER_MODEL", "small")
    monkeypatch.setenv("THREADS", "2")  # speed only
    after = {stage: code_version(stage) for stage in stages}
    assert [s for s in stages if before[s] != after[s]] == ["transcript"]
    monkeypatch.setenv("ALIGN_BACKEND", "whisper")
    assert code_version("alignment") != after["alignment"]
