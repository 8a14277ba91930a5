import pytest

from whisperx_assets.speech.config import SpeechConfig


def test_from_env_parses_types():
    config = SpeechConfig.from_env({"WHISPER_MODEL": "tiny.en", "BATCH_SIZE": "4", "DEFAULT_LANG": "de",
                                    "TEMPERATURES": "0,0.5", "SUPPRESS_NUMERALS": "true", "MIN_SPEAKERS": "2",
                                    "VAD_ONSET": "0.4", "WHISPERX_ASSETS_CACHE": "/tmp/x"})
    assert config.whisper_model == "tiny.en" and config.batch_size == 4 and config.language == "de"
    assert config.temperatures == (0.0, 0.5) and config.suppress_numerals is True and config.min_speakers == 2
    assert config.vad_onset == 0.4 and str(config.cache_dir) == "/tmp/x"


@pytest.mark.parametrize("changes, fragment", [
    ({"beam_size": 0}, "beam_size must be in 1..20"),
    ({"vad_onset": 1.5}, "vad_onset must be in (0, 1)"),
    ({"min_speakers": 3, "max_speakers": 2}, "must not exceed max_speakers"),
    ({"interpolate_method": "cubic"}, "interpolate_method must be one of"),
    ({"task": "summarize"}, "task must be one of"),
])
def test_invalid_values_name_the_allowed_range(changes, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        SpeechConfig(**changes)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ValueError, match="BATCH_SIZE='many'"):
        SpeechConfig.from_env({"BATCH_SIZE": "many"})
