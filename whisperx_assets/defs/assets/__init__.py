"""Per-file assets, all partitioned by `media_files`: media -> transcript -> alignment -> combined -> subtitles,
and media -> diarization -> combined."""

from whisperx_assets.defs.assets.exports import subtitles
from whisperx_assets.defs.assets.ingest import media
from whisperx_assets.defs.assets.speech import alignment, combined, diarization, transcript

# The pipeline's assets, in the order of their stages.
ASSETS = (media, transcript, alignment, diarization, combined, subtitles)
ASSET_NAMES = tuple(asset.key.to_user_string() for asset in ASSETS)

__all__ = ["ASSETS", "ASSET_NAMES", "alignment", "combined", "diarization", "media", "subtitles", "transcript"]
