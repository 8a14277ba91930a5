"""Partition key rule: `<readable name>-<content hash>`, where
- the readable name is the file's stem, lower-cased, with every run of characters outside [a-z0-9_-]
  replaced by one "-", trimmed to 40 characters (empty -> "media");
- the content hash is the first 12 hex digits of the SHA-256 of the file's bytes.
So the same bytes under the same name always map to the same key (a re-dropped file is not re-processed),
a changed file gets a new key (and is processed), and two different files never share a key. A URL input
is keyed by its file name and the hash of the URL itself (`sources.identify`). Keys contain no dots, slashes, commas, spaces or control characters, so they are safe as file names and in the UI.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}-[0-9a-f]{12}$")
HASH_CHUNK = 1 << 20


def readable_name(filename: str) -> str:
    stem = Path(filename).name.rsplit(".", 1)[0] if "." in Path(filename).name[1:] else Path(filename).name
    slug = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_")[:40].strip("-_")
    return slug or "media"


def content_hash(path) -> str:
    """SHA-256 of the bytes of `path` (a local path, or a UPath on any filesystem)."""
    digest = hashlib.sha256()
    with (path.open("rb") if hasattr(path, "open") else open(path, "rb")) as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def partition_key(filename: str, sha256: str) -> str:
    return f"{readable_name(filename)}-{sha256[:12]}"


def is_valid_key(key: str) -> bool:
    return bool(KEY_PATTERN.match(key))

