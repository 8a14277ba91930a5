"""The layout's rules, checked on the imports: the core runs without Dagster, product code never uses the
evaluation helpers or the tests."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "whisperx_assets"
# folder (or module) -> import prefixes it must not use
RULES = {
    "speech": ("dagster", "whisperx_assets.defs", "whisperx_assets.api", "whisperx_assets.inputs"),
    "inputs": ("dagster", "whisperx_assets.defs", "whisperx_assets.api"),
    "defs": ("whisperx_assets.api",),
}
PRODUCT = ["speech", "inputs", "defs", "api", "settings.py", "definitions.py"]
NEVER_IN_PRODUCT = ("whisperx_assets.evaluation", "whisperx_assets_tests")


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def modules(part: str) -> list[Path]:
    return [PACKAGE / part] if part.endswith(".py") else sorted((PACKAGE / part).rglob("*.py"))


@pytest.mark.parametrize("part", PRODUCT)
def test_imports_follow_the_layout(part):
    forbidden = RULES.get(part, ()) + NEVER_IN_PRODUCT
    broken = {f"{path.relative_to(PACKAGE)}: {name}" for path in modules(part) for name in imports(path)
              if any(name == p or name.startswith(p + ".") for p in forbidden)}
    assert not broken
