"""The assets. Per file, all partitioned by `media_files`: media -> transcript -> alignment -> combined ->
subtitles, and media -> diarization -> speaker_embeddings -> speaker_names -> combined. Over the collection:
voiceprints (enrolled people) and voices (speakers across files), which speaker_names reads."""

from whisperx_assets.defs.assets.exports import subtitles
from whisperx_assets.defs.assets.ingest import media
from whisperx_assets.defs.assets.speakers import speaker_embeddings, speaker_names, voiceprints, voices
from whisperx_assets.defs.assets.speech import alignment, combined, diarization, transcript

# Each file's assets, in the order of their stages; then those over the whole collection.
ASSETS = (media, transcript, alignment, diarization, speaker_embeddings, speaker_names, combined, subtitles)
ASSET_NAMES = tuple(asset.key.to_user_string() for asset in ASSETS)
COLLECTION_ASSETS = (voiceprints, voices)


def with_downstream(names) -> list[str]:
    """The assets `names` and every asset that depends on them, in stage order."""
    chosen = set(names)
    for asset in ASSETS:  # in stage order: an asset's inputs come before it
        if chosen & {key.to_user_string() for key in asset.keys_by_input_name.values()}:
            chosen.add(asset.key.to_user_string())
    return [name for name in ASSET_NAMES if name in chosen]


def with_missing_upstream(names, materialized) -> list[str]:
    """The assets `names` and every asset they need that is not in `materialized`, in stage order."""
    chosen = set(names)
    for asset in reversed(ASSETS):  # an asset's inputs come before it: each is seen after what needs it
        if asset.key.to_user_string() in chosen:
            chosen |= {key.to_user_string() for key in asset.keys_by_input_name.values()} - set(materialized)
    return [name for name in ASSET_NAMES if name in chosen]


__all__ = ["ASSETS", "ASSET_NAMES", "COLLECTION_ASSETS", "with_downstream", "with_missing_upstream", "alignment", "combined", "diarization", "media", "speaker_embeddings", "speaker_names", "subtitles",
           "transcript", "voiceprints", "voices"]
