"""Per-file assets, all partitioned by `media_files`: media -> transcript -> alignment -> combined -> subtitles,
and media -> diarization -> combined."""

from whisperx_assets.defs.assets.exports import subtitles
from whisperx_assets.defs.assets.ingest import media
from whisperx_assets.defs.assets.speech import alignment, combined, diarization, transcript

__all__ = ["alignment", "combined", "diarization", "media", "subtitles", "transcript"]
