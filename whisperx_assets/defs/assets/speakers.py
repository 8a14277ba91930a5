"""Who is speaking, as assets over `whisperx_assets.speech.speakers`: per file `speaker_embeddings` and
`speaker_names` (what `combined` calls each speaker); over the whole collection `voiceprints` (the people
enrolled under SPEAKERS_DIR) and `voices` (speakers of different files that are one voice). The two collection
tables are written to the store as Parquet (`collection/<name>.parquet`) and read by `speaker_names` (not
loaded as inputs: a file is named before anyone is enrolled too).

`speaker_names` declares its dependency on `voiceprints`, whose data version is its content: an enrollment change
makes every file's names stale, as it should. It reads `voices` without declaring it: that table changes with
every file added, but only the files whose voices now recur are named differently (`speakers_sensor` re-names
those), so Dagster's staleness, which cannot see that, would mark every file stale each time."""


import hashlib
import json
import time

import pandas as pd
from dagster import AssetExecutionContext, AssetKey, DataVersion, MaterializeResult, MetadataValue, Output, asset

from whisperx_assets.defs.assets.metadata import frame_metadata, record, stage_output
from whisperx_assets.defs.assets.speech import GPU_POOL, Frames, media_audio
from whisperx_assets.defs.assets.versions import code_version
from whisperx_assets.defs.jobs import BATCHES
from whisperx_assets.defs.partitions import media_files
from whisperx_assets.defs.resources import MediaStoreResource, WhisperXResource
from whisperx_assets.defs.settings import PipelineSettings
from whisperx_assets.defs.stage_guard import run_stage
from whisperx_assets.inputs.enrollment import enrolled, fingerprint
from whisperx_assets.inputs.sources import location
from whisperx_assets.inputs.store import MediaStore
from whisperx_assets.speech.errors import MediaError
from whisperx_assets.speech.speakers import (EMBEDDING_MODEL, MEMBER_DTYPES, assign_voices, relabeled_partitions,
                                             speaker_names as name_speakers, voices_from_members)

VOICEPRINT_COLUMNS = ["name", "clips", "seconds", "voice_ids", "embedding"]
MEMBER_COLUMNS = [*MEMBER_DTYPES, "embedding"]


@asset(partitions_def=media_files, code_version=code_version("speaker_embeddings"), backfill_policy=BATCHES,
       pool=GPU_POOL, group_name="speech", kinds={"resemblyzer", "parquet"})
def speaker_embeddings(context: AssetExecutionContext, media: Frames, diarization: Frames,
                       whisperx: WhisperXResource, storage: MediaStoreResource):
    """One voice embedding per diarized speaker, from the stretches where it talks alone."""

    def embed(key: str, turns: pd.DataFrame):
        started = time.perf_counter()
        frame = whisperx.engine.speaker_embeddings(media_audio(whisperx, media[key]), turns)
        return stage_output(frame, model=EMBEDDING_MODEL, speakers=len(frame),
                            embedded=int(frame["embedding"].notna().sum()), wall_seconds=time.perf_counter() - started)

    results = run_stage(context, "speaker_embeddings", diarization, embed, storage.store, whisperx.free_memory)
    return Output({key: record(context, key, out) for key, out in results.items()})


def latest(instance, asset: str):
    """The latest materialization record of `asset`, or None."""
    records = instance.fetch_materializations(AssetKey(asset), limit=1).records
    return records[0] if records else None


def collection(store: MediaStore, name: str, columns: list[str]) -> pd.DataFrame:
    table = store.read_collection(name)
    return pd.DataFrame(columns=columns) if table is None else table


def voice_names(voiceprints: pd.DataFrame) -> dict[str, str]:
    """{voice id: the person it was named after}."""
    return {voice: name for name, ids in zip(voiceprints["name"], voiceprints["voice_ids"])
            for voice in (ids.split(",") if ids else [])}


@asset(partitions_def=media_files, code_version=code_version("speaker_names"), backfill_policy=BATCHES,
       group_name="speech", kinds={"parquet"}, deps=["voiceprints"])
def speaker_names(context: AssetExecutionContext, speaker_embeddings: Frames, storage: MediaStoreResource):
    """What to call each speaker of the file: the enrolled person whose voiceprint it matches, else the person its
    cross-file voice is named after, else that voice's id when other files have it too, else its diarized label."""
    store = storage.store
    prints = collection(store, "voiceprints", VOICEPRINT_COLUMNS)
    members = collection(store, "voices", MEMBER_COLUMNS)
    names = voice_names(prints)

    def name(key: str, embeddings: pd.DataFrame):
        frame = name_speakers(embeddings, key, prints, members, names)
        return stage_output(frame, named=int(frame["name"].notna().sum()),
                            labels=", ".join(f"{s}={label}" for s, label in zip(frame["speaker"], frame["label"])))

    results = run_stage(context, "speaker_names", speaker_embeddings, name, store)
    return Output({key: record(context, key, out) for key, out in results.items()})


@asset(group_name="speakers", code_version=code_version("voiceprints"), kinds={"resemblyzer", "parquet"})
def voiceprints(context: AssetExecutionContext, whisperx: WhisperXResource,
                storage: MediaStoreResource) -> MaterializeResult:
    """The people enrolled under SPEAKERS_DIR, a voiceprint each from their clips, and the voices named after
    them. A clip that cannot be decoded is left out and named in the metadata. Its `enrollment` is the folder's
    fingerprint, taken before reading it: a change meanwhile makes `speakers_sensor` refresh it again."""
    rows, refused = [], {}
    root = location(PipelineSettings().speakers_dir)
    enrollment = fingerprint(root)
    for person, found in enrolled(root).items():
        clips = []
        for clip in found.clips:
            try:
                clips.append(whisperx.load_audio(clip)[1])
            except MediaError as exc:
                refused[str(clip)] = exc.reason
                context.log.warning(f"voiceprint of {person}: {exc}")
        vector, seconds = whisperx.engine.voiceprint(clips) if clips else (None, 0.0)
        rows.append({"name": person, "clips": len(clips), "seconds": seconds, "voice_ids": ",".join(found.voices),
                     "embedding": None if vector is None else vector.tolist()})
    frame = pd.DataFrame(rows, columns=VOICEPRINT_COLUMNS).astype(
        {"name": "string", "clips": "int64", "seconds": "float64", "voice_ids": "string"})
    path = storage.store.write_collection("voiceprints", frame)
    return MaterializeResult(metadata={"path": MetadataValue.path(str(path)), "refused_clips": refused,
                                       "enrollment": enrollment, **frame_metadata(frame)},
                             data_version=DataVersion(voiceprints_version(rows)))


def voiceprints_version(rows: list[dict]) -> str:
    """The enrollment's content as a short id (the `voiceprints` data version): same people, clips' voiceprints
    and named voices, same id."""
    content = [[r["name"], r["voice_ids"], r["embedding"] and [round(x, 5) for x in r["embedding"]]] for r in rows]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:16]


@asset(group_name="speakers", code_version=code_version("voices"), kinds={"parquet"}, deps=[speaker_embeddings])
def voices(context: AssetExecutionContext, storage: MediaStoreResource) -> MaterializeResult:
    """Speakers of different files that are one voice, under one stable id (VOICE_0007). Each refresh adds the
    files embedded since the last one (existing members keep their voice) and drops deleted files. Its
    `embedded_through` is the latest `speaker_embeddings` materialization when it started (its storage id), read
    before listing the store: every file embedded by then is taken in."""
    store = storage.store
    embedded = latest(context.instance, "speaker_embeddings")
    embedded_through = embedded.storage_id if embedded else 0
    before = collection(store, "voices", MEMBER_COLUMNS)
    keys = set(store.keys_with("speaker_embeddings"))
    kept = before[before["partition"].isin(keys)]
    added = sorted(keys - set(kept["partition"]))
    new = [store.read_output("speaker_embeddings", key).frame.assign(partition=key) for key in added]
    new = pd.concat(new, ignore_index=True) if new else pd.DataFrame(columns=["partition", "speaker", "embedding"])
    result = assign_voices(voices_from_members(kept), new)
    embeddings = pd.concat([kept[["partition", "speaker", "embedding"]], new[["partition", "speaker", "embedding"]]],
                           ignore_index=True)
    members = result.members.merge(embeddings, on=["partition", "speaker"], how="left")[MEMBER_COLUMNS]
    path = store.write_collection("voices", members)
    prints = collection(store, "voiceprints", VOICEPRINT_COLUMNS)
    relabel = relabeled_partitions(before, members, set(voice_names(prints)))
    files = members.groupby("voice_id")["partition"].nunique() if len(members) else pd.Series(dtype="int64")
    return MaterializeResult(metadata={
        "path": MetadataValue.path(str(path)), "voices": int(files.size), "recurring_voices": int((files > 1).sum()),
        "members": len(members), "added_files": len(added), "dropped_files": int(before["partition"].nunique()
                                                                                 - kept["partition"].nunique()),
        "relabel": MetadataValue.json(relabel), "embedded_through": embedded_through, **frame_metadata(members)})


def forget_voices(store: MediaStore, keys: list[str]) -> int:
    """Remove the speakers of the partitions `keys` (being deleted) from the voices table now, not at its next
    refresh: their embeddings are personal data. How many were removed."""
    members = store.read_collection("voices")
    if members is None or not members["partition"].isin(keys).any():
        return 0
    store.write_collection("voices", members[~members["partition"].isin(keys)])
    return int(members["partition"].isin(keys).sum())
