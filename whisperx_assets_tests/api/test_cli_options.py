"""The CLI's parser: global options before or after the subcommand, help text for everything, and `process`'s
per-file, per-stage progress lines (the real `process` run: test_api.py's `test_process_one_shot`)."""

import argparse
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from whisperx_assets.api.cli import DEFAULT_URL, build_parser, step_progress
from whisperx_assets.evaluation.servers import REPO, free_port

CLI = str(Path(sys.executable).parent / "whisperx-assets")


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_option_and_positional_has_help():
    parser = build_parser()
    missing = [f"whisperx-assets {a.dest}" for a in parser._actions if not a.help or a.help == argparse.SUPPRESS]
    for name, sub in subparsers(parser).items():
        missing += [f"{name} {'/'.join(a.option_strings) or a.dest}" for a in sub._actions
                    if not (a.help or "").strip() or a.help == argparse.SUPPRESS]
    assert not missing


def test_every_subcommand_has_help():
    [action] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert {c.dest for c in action._choices_actions if c.help} == set(action.choices)
    assert "health" in action.choices


@pytest.mark.parametrize("argv", [
    ["--url", "http://a:1", "--json", "status", "x"],
    ["status", "x", "--url", "http://a:1", "--json"],
    ["--json", "status", "--url", "http://a:1", "x"],
    ["submit", "a.wav", "b.wav", "--url", "http://a:1", "--json"],
    ["--url", "http://other:2", "list", "--url", "http://a:1", "--json"],  # after the subcommand wins
    ["result", "k", "--format", "txt", "--url", "http://a:1", "--json"],
    ["backfill", "--failed", "--json", "--url", "http://a:1"],
    ["process", "a.wav", "--out", "o", "--json", "--url", "http://a:1"],
    ["health", "--liveness", "--url", "http://a:1", "--json"],
])
def test_global_options_before_or_after_the_subcommand(argv):
    args = build_parser().parse_args(argv)
    assert args.url == "http://a:1" and args.json is True


@pytest.mark.parametrize("argv", [["list"], ["status", "x"], ["health"], ["submit", "a.wav"]])
def test_global_option_defaults_in_every_subcommand(argv, monkeypatch):
    monkeypatch.delenv("DAGSTER_URL", raising=False)
    args = build_parser().parse_args(argv)
    assert args.url == DEFAULT_URL and args.json is False
    monkeypatch.setenv("DAGSTER_URL", "http://env:9")
    assert build_parser().parse_args(argv).url == "http://env:9"


def test_submit_sources_stop_at_an_option_after_them():
    args = build_parser().parse_args(["submit", "a.wav", "https://x/b.mp3", "--url", "http://a:1", "--wait"])
    assert args.sources == ["a.wav", "https://x/b.mp3"] and args.url == "http://a:1" and args.wait


def test_option_after_the_subcommand_reaches_the_webserver_client():
    """`list --url URL --json` (both after the subcommand): the closed port is the one reported, as JSON."""
    url = f"http://127.0.0.1:{free_port()}"
    run = subprocess.run([CLI, "list", "--url", url, "--json"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 3, run.stderr
    assert url.split("//")[1] in json.loads(run.stdout)["error"]


# --- process: progress per file and stage ------------------------------------------------------------------------


def event(kind, step="transcript", **data):
    dagster_event = SimpleNamespace(event_type_value=kind, step_key=step, event_specific_data=SimpleNamespace(**data))
    return SimpleNamespace(dagster_event=dagster_event)


def test_step_progress_lines():
    lines = []
    listener = step_progress("standup.wav", lines.append)
    listener(event("STEP_START"))
    listener(event("STEP_SUCCESS", duration_ms=4123.0))
    listener(event("STEP_UP_FOR_RETRY", step="alignment"))
    listener(event("STEP_FAILURE", step="diarization", error=SimpleNamespace(message="MediaError: bad\n trace")))
    listener(SimpleNamespace(dagster_event=None))  # a log line: nothing
    listener(event("STEP_SUCCESS", duration_ms=None))  # malformed: ignored, never raised into the run
    assert lines == ["standup.wav: transcript done (4.1 s)", "standup.wav: alignment failed, retrying",
                     "standup.wav: diarization FAILED MediaError: bad"]
