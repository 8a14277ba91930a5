"""A media input as the pipeline knows it before ingestion: its partition key, where it is, its name.

Where a file is: a local path, an object in a store fsspec knows (s3://bucket/key, gs://, az://; reached as
the store's standard variables say, e.g. AWS_ENDPOINT_URL), or an http(s) URL, downloaded by `inputs.fetch`."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from upath import UPath

from whisperx_assets.inputs.keys import content_hash, partition_key
from whisperx_assets.speech.media import SUPPORTED_EXTENSIONS

URL_SCHEMES = ("http", "https")
OBJECT_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")  # object stores fsspec reaches


@dataclass(frozen=True)
class Source:
    key: str
    source: str  # absolute path or URL
    name: str  # file name
    sha256: str | None = None  # of a local file's bytes (a URL's are known once downloaded)

    def record(self) -> dict:
        return asdict(self)


def is_url(source: str) -> bool:
    """An http(s) URL (downloaded), not a file or an object (read where it is)."""
    return urlsplit(source).scheme.lower() in URL_SCHEMES and "://" in source


def location(place: str | Path) -> UPath:
    """A local path (made absolute) or an fsspec URL (`s3://bucket/prefix`), as a path: a local one is a
    `pathlib.Path`."""
    scheme = urlsplit(str(place)).scheme.lower() if "://" in str(place) else ""
    if scheme in ("", "file"):
        return UPath(Path(str(place).removeprefix("file://")).expanduser().resolve())
    if scheme not in OBJECT_SCHEMES:
        raise ValueError(f"{place}: not a local path or an object store URL ({', '.join(OBJECT_SCHEMES)})")
    # No cached listings: other processes (runs, the sensor) add objects at any time. The endpoint is passed
    # explicitly so that fsspec's cached filesystems are told apart by it.
    options = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]} if scheme.startswith("s3") and \
        os.environ.get("AWS_ENDPOINT_URL") else {}
    return UPath(place, use_listings_cache=False, **options)


def within(source: str, roots) -> bool:
    """Whether the local path or object URL `source` lies under one of the folders or prefixes `roots` (a local
    path with its symbolic links and `..` resolved; an object URL with a `..` segment never does)."""
    try:
        place = location(source)
    except ValueError:
        return False
    if not isinstance(place, Path) and ".." in str(source).split("/"):
        return False
    for root in roots:
        top = location(root)
        if isinstance(place, Path) and isinstance(top, Path):
            if place.is_relative_to(top):
                return True
        elif not isinstance(place, Path) and not isinstance(top, Path) and type(place) is type(top) and \
                str(place).startswith(str(top).rstrip("/") + "/"):
            return True
    return False


def url_name(url: str) -> str:
    """A URL's file name: its last path segment, unquoted ("" when the path ends in "/")."""
    return Path(unquote(urlsplit(url).path)).name


def source_name(source: str) -> str:
    """The file name of a path, or of a URL (its host's when its path names none)."""
    if is_url(source):
        return url_name(source) or urlsplit(source).hostname or "media"
    return Path(source).name


def identify(source: str | Path) -> Source:
    """`source` (a local path, an object URL or an http(s) URL) checked and keyed: a file's key comes from its
    bytes, a URL's from the URL. FileNotFoundError: no such file; ValueError: an unsupported input."""
    source = str(source)
    if is_url(source):
        # keyed by the URL: its bytes are not known before the download
        name = source_name(source)
        return Source(partition_key(name, hashlib.sha256(source.encode()).hexdigest()), source, name)
    path = location(source)
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise ValueError(f"{source}: unsupported extension {path.suffix or '(none)'!r}; supported: "
                         f"{' '.join(sorted(SUPPORTED_EXTENSIONS))}")
    sha256 = content_hash(path)
    return Source(partition_key(path.name, sha256), str(path), path.name, sha256)
