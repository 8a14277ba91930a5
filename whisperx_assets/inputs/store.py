"""The managed media store: where each partition's input and outputs live, under STORAGE_URL (a local folder,
or an fsspec URL such as s3://bucket/prefix).

    <root>/sources/<key>.json        where the input came from (path or URL), registered before the run
    <root>/inputs/<key><ext>         the ingested copy of the input (what every stage reads)
    <root>/<asset>/<key>.parquet     tabular asset outputs, each written as soon as its file is done, tagged with
                                     the work (run lineage) that wrote it, so a resumed run keeps it
    <root>/subtitles/<key>/<key>.<format>
    <root>/supplied/<key>.<asset>.json  a transcript or diarization the user supplied for the file: {name, text}
    <root>/collection/<name>.parquet  tables over the whole collection (voiceprints, voices)
    <root>/inbox-state/<name>.json   the inbox sensor's record of the files it handled, named by its cursor
    <root>/downloads/                URL inputs while they download (a local store; else a local temp folder)

Every path is built from a validated partition key (or state name), so nothing can escape the root. Every
file appears whole or not at all: a local file is written beside its place and renamed into it, an object is
uploaded in one request or one multipart upload, completed only once every byte is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from whisperx_assets.inputs.keys import HASH_CHUNK, content_hash, is_valid_key
from whisperx_assets.inputs.sources import Source, location
from whisperx_assets.speech.errors import MediaError
from whisperx_assets.speech.media import SUPPORTED_EXTENSIONS


def _checked(key: str) -> str:
    if not is_valid_key(key):
        raise ValueError(f"invalid partition key {key!r}")
    return key


def is_local(path: UPath) -> bool:
    return isinstance(path, Path)


def atomic_write(target: UPath, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(file)` to fill `target`, which appears whole or not at all."""
    if is_local(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                write(file)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    file = target.open("wb")  # an object store commits the object when the file is closed
    try:
        write(file)
    except BaseException:
        file.discard()  # abort the upload: no partial object
        file.closed = True  # nothing left to flush when it is collected
        raise
    file.close()


@contextlib.contextmanager
def local_file(path: UPath):
    """`path` as a local file for the duration of the block (an object is downloaded to a temporary file,
    deleted after): decoders read local files."""
    if is_local(path):
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="whisperx-input-") as folder:
        local = Path(folder) / path.name
        path.fs.get_file(path.path, str(local))
        yield local


def copy_file(source: UPath, target: UPath) -> str:
    """Copy `source` to `target` (atomically, across filesystems); the SHA-256 of the bytes copied."""
    digest = hashlib.sha256()

    def write(out: BinaryIO) -> None:
        with source.open("rb") as f:
            while chunk := f.read(HASH_CHUNK):
                digest.update(chunk)
                out.write(chunk)

    atomic_write(target, write)
    return digest.hexdigest()


STATE_NAME = re.compile(r"[0-9a-f]{16}")


def _checked_state(name: str) -> str:
    if not STATE_NAME.fullmatch(name):
        raise ValueError(f"invalid inbox state name {name!r}")
    return name


COLLECTION_TABLES = ("voiceprints", "voices")
WORK_FIELD, FACTS_FIELD = b"whisperx_assets.work", b"whisperx_assets.facts"  # Parquet key-value metadata


@dataclass(frozen=True)
class StageOutput:
    """One file's result of a stage: the asset's table and its facts (JSON values, shown as metadata)."""

    frame: pd.DataFrame
    facts: dict = field(default_factory=dict)


_BUCKETS_READY: set[str] = set()  # object store roots this process has made sure of


class MediaStore:
    def __init__(self, root: str | os.PathLike):
        self.root = location(root)
        if not is_local(self.root) and str(self.root) not in _BUCKETS_READY:
            # Creates the bucket if it is missing (a new S3-compatible server has none); once per process.
            with contextlib.suppress(PermissionError):  # an identity that may write but not create buckets
                self.root.mkdir(parents=True, exist_ok=True)
            _BUCKETS_READY.add(str(self.root))

    def source_record(self, key: str) -> UPath:
        return self.root / "sources" / f"{_checked(key)}.json"

    def register(self, source: Source) -> None:
        """Record where partition `source.key`'s input is, for the run that ingests it."""
        record = json.dumps(source.record()).encode()
        atomic_write(self.source_record(source.key), lambda f: f.write(record))

    def source(self, key: str) -> Source:
        path = self.source_record(key)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"partition {key} has no registered source ({path} is missing); add it with "
                                    "the inbox sensor or the CLI") from None
        return Source(**{**record, "key": key})

    def supplied_path(self, key: str, asset: str) -> UPath:
        return self.root / "supplied" / f"{_checked(key)}.{asset}.json"

    def supply(self, key: str, asset: str, name: str, text: str) -> None:
        """Keep `text` (from the user's file `name`) as partition `key`'s `asset` from now on."""
        record = json.dumps({"name": name, "text": text}).encode()
        atomic_write(self.supplied_path(key, asset), lambda f: f.write(record))

    def supplied(self, key: str, asset: str) -> tuple[str, str] | None:
        """(file name, text) of what the user supplied as partition `key`'s `asset`, if anything."""
        try:
            record = json.loads(self.supplied_path(key, asset).read_text())
        except FileNotFoundError:
            return None
        return record["name"], record["text"]

    def media_path(self, key: str, name: str) -> UPath:
        ext = Path(name).suffix.lower()
        if ext not in SUPPORTED_EXTENSIONS:
            raise MediaError(name, f"unsupported extension {ext or '(none)'!r}")
        return self.root / "inputs" / f"{_checked(key)}{ext}"

    def ingest(self, key: str, source: UPath, name: str, sha256: str | None) -> UPath:
        """Copy `source` into the store (once), checking that its bytes are those the key was made from."""
        target = self.media_path(key, name)
        if target.is_file():
            return target
        try:
            copied = copy_file(source, target)
        except FileNotFoundError:  # moved or deleted since it was registered
            raise MediaError(str(source), "file not found (moved or deleted before it was ingested)") from None
        if sha256 and copied != sha256:
            target.unlink()
            raise MediaError(str(source), "file changed after it was registered; it will be picked up again as a "
                                          "new file")
        return target

    @contextlib.contextmanager
    def _download_folder(self, key: str):
        """A new local folder per download (concurrent runs fetching the same URL never move each other's
        files): in the store when it is local, so the result is renamed into place."""
        parent = self.root / "downloads" if is_local(self.root) else None
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=parent))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def download(self, source: Source, policy) -> UPath:
        """Fetch a URL input into the store (once), with the policy's address, size and time limits, and record
        the SHA-256 of its bytes in the partition's source record."""
        from whisperx_assets.inputs.fetch import fetch

        key = _checked(source.key)
        existing = list((self.root / "inputs").glob(f"{key}.*"))
        if existing:
            if source.sha256 is None:  # the record was written again since the download (a run's config)
                self.register(replace(source, sha256=content_hash(existing[0])))
            return existing[0]
        with self._download_folder(key) as folder:
            fetched = fetch(source.source, folder, policy)
            target = self.media_path(key, fetched.path.name)
            if is_local(target):
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(fetched.path, target)
            else:
                copy_file(location(fetched.path), target)
        self.register(replace(source, sha256=fetched.sha256))
        return target

    def inbox_state(self, name: str) -> UPath:
        return self.root / "inbox-state" / f"{_checked_state(name)}.json"

    def write_inbox_state(self, files: dict[str, list]) -> str:
        """Save the inbox sensor's handled files ({name: fingerprint}) under a name made from their content,
        and return the name: a state is never changed, so a sensor cursor that names it stays valid."""
        data = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
        name = hashlib.sha256(data).hexdigest()[:16]
        atomic_write(self.inbox_state(name), lambda f: f.write(data))
        return name

    def read_inbox_state(self, name: str) -> dict[str, list]:
        return json.loads(self.inbox_state(name).read_bytes())

    def prune_inbox_states(self, keep: set[str], older_than: float) -> None:
        """Delete the states not in `keep` last written more than `older_than` seconds ago."""
        folder = self.root / "inbox-state"
        for path in folder.glob("*.json") if folder.is_dir() else []:
            with contextlib.suppress(FileNotFoundError):
                if path.stem not in keep and time.time() - path.stat().st_mtime > older_than:
                    path.unlink()

    def subtitles_dir(self, key: str) -> UPath:
        return self.root / "subtitles" / _checked(key)

    def publish(self, local: Path, target: UPath) -> UPath:
        """Place the local file `local` at `target` in the store."""
        copy_file(location(local), target)
        return target

    def delete(self, key: str) -> list[UPath]:
        """Remove everything of partition `key` (its source record, input copy, outputs, subtitles: every entry
        named by the key one level down); what was removed. Nothing left is no error."""
        key = _checked(key)
        found = [*self.root.glob(f"*/{key}.*"), *self.root.glob(f"*/{key}")]
        for path in found:
            if is_local(path):
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            else:
                path.fs.rm(path.path, recursive=True)
        return found

    def output_path(self, asset: str, key: str) -> UPath:
        return self.root / asset / f"{_checked(key)}.parquet"

    def write_output(self, asset: str, key: str, output: StageOutput, work: str) -> UPath:
        """Write (atomically) `asset`'s output for partition `key`, recording which work wrote it."""
        table = pa.Table.from_pandas(output.frame, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), WORK_FIELD: work.encode(),
                                               FACTS_FIELD: json.dumps(output.facts, default=str).encode()})
        path = self.output_path(asset, key)
        atomic_write(path, lambda f: pq.write_table(table, f))
        return path

    def keys_with(self, asset: str) -> list[str]:
        """The partitions that have an output of `asset`, sorted."""
        folder = self.root / asset
        return sorted(path.stem for path in folder.glob("*.parquet")) if folder.is_dir() else []

    def collection_path(self, name: str) -> UPath:
        if name not in COLLECTION_TABLES:
            raise ValueError(f"no collection table {name!r}")
        return self.root / "collection" / f"{name}.parquet"

    def write_collection(self, name: str, frame: pd.DataFrame) -> UPath:
        """Write (atomically) the collection-wide table `name`."""
        path = self.collection_path(name)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        atomic_write(path, lambda f: pq.write_table(table, f))
        return path

    def read_collection(self, name: str) -> pd.DataFrame | None:
        """The collection-wide table `name`, None before it is first written."""
        try:
            with self.collection_path(name).open("rb") as f:
                return pq.read_table(f).to_pandas()
        except FileNotFoundError:
            return None

    def written_by(self, asset: str, key: str) -> str | None:
        """The work that wrote `asset`'s output for `key` (None: no output; "" : written outside a run)."""
        try:
            with self.output_path(asset, key).open("rb") as f:
                metadata = pq.read_schema(f).metadata or {}
        except (FileNotFoundError, pa.ArrowInvalid):
            return None
        return metadata.get(WORK_FIELD, b"").decode()

    def read_output(self, asset: str, key: str) -> StageOutput:
        with self.output_path(asset, key).open("rb") as f:
            table = pq.read_table(f)
        facts = (table.schema.metadata or {}).get(FACTS_FIELD, b"{}")
        return StageOutput(table.to_pandas(), json.loads(facts))
