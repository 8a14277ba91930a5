"""The managed media store: where each partition's input and outputs live on disk.

    <root>/sources/<key>.json        where the input came from (path or URL), registered before the run
    <root>/inputs/<key><ext>         the ingested copy of the input (what every stage reads)
    <root>/downloads/                URL inputs while they download
    <root>/<asset>/<key>.parquet     tabular asset outputs, each written as soon as its file is done, tagged with
                                     the work (run lineage) that wrote it, so a resumed run keeps it
    <root>/subtitles/<key>/<key>.<format>
    <root>/inbox-state/<name>.json   the inbox sensor's record of the files it handled, named by its cursor

Every path is built from a validated partition key (or state name), so nothing can escape the root.
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
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from whisperx_assets.inputs.keys import content_hash, is_valid_key
from whisperx_assets.inputs.sources import Source
from whisperx_assets.speech.errors import MediaError
from whisperx_assets.speech.media import SUPPORTED_EXTENSIONS


def _checked(key: str) -> str:
    if not is_valid_key(key):
        raise ValueError(f"invalid partition key {key!r}")
    return key


def atomic_write_bytes(target: Path, write) -> None:
    """Call `write(path)` on a temporary file beside `target`, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


STATE_NAME = re.compile(r"[0-9a-f]{16}")


def _checked_state(name: str) -> str:
    if not STATE_NAME.fullmatch(name):
        raise ValueError(f"invalid inbox state name {name!r}")
    return name


WORK_FIELD, FACTS_FIELD = b"whisperx_assets.work", b"whisperx_assets.facts"  # Parquet key-value metadata


@dataclass(frozen=True)
class StageOutput:
    """One file's result of a stage: the asset's table and its facts (JSON values, shown as metadata)."""

    frame: pd.DataFrame
    facts: dict = field(default_factory=dict)


class MediaStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def source_record(self, key: str) -> Path:
        return self.root / "sources" / f"{_checked(key)}.json"

    def register(self, source: Source) -> None:
        """Record where partition `source.key`'s input is, for the run that ingests it."""
        record = json.dumps(source.record())
        atomic_write_bytes(self.source_record(source.key), lambda p: p.write_text(record))

    def source(self, key: str) -> Source:
        path = self.source_record(key)
        if not path.is_file():
            raise FileNotFoundError(f"partition {key} has no registered source ({path} is missing); add it with the "
                                    "inbox sensor or the CLI")
        return Source(**{**json.loads(path.read_text()), "key": key})

    def media_path(self, key: str, name: str) -> Path:
        ext = Path(name).suffix.lower()
        if ext not in SUPPORTED_EXTENSIONS:
            raise MediaError(name, f"unsupported extension {ext or '(none)'!r}")
        return self.root / "inputs" / f"{_checked(key)}{ext}"

    def ingest(self, key: str, source: Path, name: str, sha256: str | None) -> Path:
        """Copy `source` into the store (once), checking that its bytes are those the key was made from."""
        target = self.media_path(key, name)
        if target.is_file():
            return target
        gone = MediaError(source, "file not found (moved or deleted before it was ingested)")
        if not source.is_file():
            raise gone
        try:
            atomic_write_bytes(target, lambda p: shutil.copyfile(source, p))
        except FileNotFoundError:  # deleted between the check and the copy
            raise gone from None
        if sha256 and content_hash(target) != sha256:
            target.unlink()
            raise MediaError(source, "file changed after it was registered; it will be picked up again as a new file")
        return target

    def download(self, source: Source, policy) -> Path:
        """Fetch a URL input into the store (once), with the policy's address, size and time limits, and record
        the SHA-256 of its bytes in the partition's source record."""
        from dataclasses import replace

        from whisperx_assets.inputs.fetch import fetch

        key = _checked(source.key)
        existing = list((self.root / "inputs").glob(f"{key}.*")) if (self.root / "inputs").is_dir() else []
        if existing:
            if source.sha256 is None:  # the record was written again since the download (a run's config)
                self.register(replace(source, sha256=content_hash(existing[0])))
            return existing[0]
        (self.root / "downloads").mkdir(parents=True, exist_ok=True)
        # A folder per download: concurrent runs fetching the same URL never move each other's files.
        folder = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=self.root / "downloads"))
        try:
            fetched = fetch(source.source, folder, policy)
            target = self.media_path(key, fetched.path.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(fetched.path, target)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.register(replace(source, sha256=fetched.sha256))
        return target

    def inbox_state(self, name: str) -> Path:
        return self.root / "inbox-state" / f"{_checked_state(name)}.json"

    def write_inbox_state(self, files: dict[str, list[int]]) -> str:
        """Save the inbox sensor's handled files ({name: [size, mtime_ns]}) under a name made from their content,
        and return the name: a state is never changed, so a sensor cursor that names it stays valid."""
        data = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
        name = hashlib.sha256(data).hexdigest()[:16]
        atomic_write_bytes(self.inbox_state(name), lambda p: p.write_bytes(data))
        return name

    def read_inbox_state(self, name: str) -> dict[str, list[int]]:
        return json.loads(self.inbox_state(name).read_bytes())

    def prune_inbox_states(self, keep: set[str], older_than: float) -> None:
        """Delete the states not in `keep` last written more than `older_than` seconds ago."""
        folder = self.root / "inbox-state"
        for path in folder.glob("*.json") if folder.is_dir() else []:
            with contextlib.suppress(FileNotFoundError):
                if path.stem not in keep and time.time() - path.stat().st_mtime > older_than:
                    path.unlink()

    def subtitles_dir(self, key: str) -> Path:
        return self.root / "subtitles" / _checked(key)

    def output_path(self, asset: str, key: str) -> Path:
        return self.root / asset / f"{_checked(key)}.parquet"

    def write_output(self, asset: str, key: str, output: StageOutput, work: str) -> Path:
        """Write (atomically) `asset`'s output for partition `key`, recording which work wrote it."""
        table = pa.Table.from_pandas(output.frame, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), WORK_FIELD: work.encode(),
                                               FACTS_FIELD: json.dumps(output.facts, default=str).encode()})
        path = self.output_path(asset, key)
        atomic_write_bytes(path, lambda tmp: pq.write_table(table, str(tmp)))
        return path

    def written_by(self, asset: str, key: str) -> str | None:
        """The work that wrote `asset`'s output for `key` (None: no output; "" : written outside a run)."""
        try:
            metadata = pq.read_schema(self.output_path(asset, key)).metadata or {}
        except (FileNotFoundError, pa.ArrowInvalid):
            return None
        return metadata.get(WORK_FIELD, b"").decode()

    def read_output(self, asset: str, key: str) -> StageOutput:
        path = self.output_path(asset, key)
        facts = (pq.read_schema(path).metadata or {}).get(FACTS_FIELD, b"{}")
        return StageOutput(pd.read_parquet(path), json.loads(facts))
