"""The README's settings tables are the models' (one statement of each variable, default and meaning)."""

import re
from pathlib import Path

import pytest

from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.inputs.fetch import FetchPolicy
from whisperx_assets.settings import markdown_table
from whisperx_assets.speech.config import SpeechConfig

README = Path(__file__).resolve().parents[1] / "README.md"
MODELS = [PipelineSettings, SpeechConfig, FetchPolicy]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_readme_table_is_generated_from_the_model(model):
    found = re.search(rf"<!-- settings: {model.__name__} -->\n(.*?)<!-- /settings -->", README.read_text(), re.S)
    assert found, f"README.md has no generated table for {model.__name__}"
    assert found.group(1).strip() == markdown_table(model), f"regenerate it:\n{markdown_table(model)}"


def fill_readme() -> None:
    """Write the generated tables into README.md: `python -m whisperx_assets_tests.test_settings`."""
    text = README.read_text()
    for model in MODELS:
        text = re.sub(rf"(<!-- settings: {model.__name__} -->\n).*?(<!-- /settings -->)",
                      lambda m: m.group(1) + markdown_table(model) + "\n" + m.group(2), text, flags=re.S)
    README.write_text(text)


if __name__ == "__main__":
    fill_readme()
