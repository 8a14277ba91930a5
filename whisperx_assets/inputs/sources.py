"""A media input as the pipeline knows it before ingestion: its partition key, where it is, its name."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from whisperx_assets.inputs.keys import content_hash, partition_key
from whisperx_assets.speech.media import SUPPORTED_EXTENSIONS

URL_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Source:
    key: str
    source: str  # absolute path or URL
    name: str  # file name
    sha256: str | None = None  # of a local file's bytes (a URL's are known once downloaded)

    def record(self) -> dict:
        return asdict(self)


def is_url(source: str) -> bool:
    return "://" in source


def url_name(url: str) -> str:
    """A URL's file name: its last path segment, unquoted ("" when the path ends in "/")."""
    return Path(unquote(urlsplit(url).path)).name


def source_name(source: str) -> str:
    """The file name of a path, or of a URL (its host's when its path names none)."""
    if is_url(source):
        return url_name(source) or urlsplit(source).hostname or "media"
    return Path(source).name


def identify(source: str | Path) -> Source:
    """`source` (a local path or an http(s) URL) checked and keyed: a file's key comes from its bytes, a URL's
    from the URL. FileNotFoundError: no such file; ValueError: an unsupported input."""
    source = str(source)
    if is_url(source):
        if urlsplit(source).scheme.lower() not in URL_SCHEMES:
            raise ValueError(f"{source}: only http and https URLs are supported")
        # keyed by the URL: its bytes are not known before the download
        name = source_name(source)
        return Source(partition_key(name, hashlib.sha256(source.encode()).hexdigest()), source, name)
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise ValueError(f"{source}: unsupported extension {path.suffix or '(none)'!r}; supported: "
                         f"{' '.join(sorted(SUPPORTED_EXTENSIONS))}")
    sha256 = content_hash(path)
    return Source(partition_key(path.name, sha256), str(path), path.name, sha256)
