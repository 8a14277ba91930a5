"""Each asset's code version: this package's version and, for a speech stage, the options that shape its output
(`speech.config.STAGE_OPTIONS`, as the environment sets them). Changing `WHISPER_MODEL` or the aligner changes the
version of the stages they shape, so the UI marks the partitions made with the old ones stale (and everything
downstream of them); `whisperx-assets backfill --stale` re-runs those. A run's own overrides (run config) are not
part of the version: they are recorded in the materialization's metadata."""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version

from whisperx_assets.speech.config import SpeechConfig

PACKAGE_VERSION = version("whisperx-assets")


def code_version(stage: str) -> str:
    options = SpeechConfig().stage_options(stage)
    if not options:
        return PACKAGE_VERSION
    digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{PACKAGE_VERSION}-{digest}"
