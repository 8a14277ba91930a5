"""Subtitle and text exports through whisperX's own writers (srt, vtt, txt, tsv, json, aud)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from whisperx_assets.speech.frames import to_whisperx_result

EXPORT_FORMATS = ("srt", "vtt", "txt", "tsv", "json", "aud")
WRITER_OPTIONS = {"max_line_width": None, "max_line_count": None, "highlight_words": False}


def export(segments: pd.DataFrame, words: pd.DataFrame | None, out_dir: str | Path, stem: str,
           formats: tuple[str, ...] = EXPORT_FORMATS, language: str | None = None,
           writer_options: dict | None = None) -> dict[str, Path]:
    """Write `<out_dir>/<stem>.<format>` for each format; each file appears whole or not at all."""
    from whisperx.utils import get_writer

    unknown = set(formats) - set(EXPORT_FORMATS)
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}; choose from {EXPORT_FORMATS}")
    if not stem or "/" in stem or stem.startswith("."):
        raise ValueError(f"unsafe export file stem {stem!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = to_whisperx_result(segments, words, language)
    options = {**WRITER_OPTIONS, **(writer_options or {})}
    written = {}
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        for fmt in formats:
            get_writer(fmt, str(staging))(result, f"{stem}.media", options)
            target = out_dir / f"{stem}.{fmt}"
            os.replace(staging / f"{stem}.{fmt}", target)
            written[fmt] = target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written
