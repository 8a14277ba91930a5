"""Download a media URL into a local file for ingestion, safely.

`fetch(url, dest_dir, policy)` downloads one media file over http(s) into `dest_dir`, a new folder of the
caller's, and returns `FetchedMedia` (the file, and the SHA-256 of its bytes, computed while they stream).
HTTP itself (requests, responses, chunked bodies, TLS) is urllib3's; this module decides where it may
connect and what it accepts. It is written for URLs that come from users, so it defends the machine it runs
on (server-side request forgery) and itself:

- Only the policy's schemes (http, https). URLs with credentials (`user:pw@host`), without a host, with
  control characters or whitespace, or with a non-canonical numeric host (`http://2130706433/`,
  `http://0x7f.1/`, `http://017700000001/`, `http://127.1/`: parsers disagree on these, so they are always
  refused) are refused.
- Address checks (unless `allow_private`): the host is resolved ONCE and every address it resolves to must
  be public. Refused: unspecified (0.0.0.0, ::), loopback, RFC 1918 private, shared (100.64/10), link-local
  (169.254/16 with the cloud metadata endpoint 169.254.169.254, fe80::/10), unique-local (fc00::/7),
  site-local, multicast, reserved, other special-purpose ranges, and IPv6 forms embedding such an IPv4
  address (IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16).
- DNS rebinding: the connection goes to one of the checked addresses, never to a fresh resolution of the
  name; the request carries the original Host header, and https verifies the certificate against the host
  name (sent as SNI), not the address.
- Redirects (301 302 303 307 308) are followed up to `max_redirects`, each hop validated like the first URL
  (scheme, credentials, host, addresses).
- Size: a Content-Length over `max_bytes` is refused before the body is read; the limit is enforced while
  streaming too (chunked or close-delimited bodies, lying servers). A body shorter than its Content-Length
  is a failed (retryable) download.
- Time: `connect_timeout` per connection attempt (and TLS handshake), `read_timeout` per socket read,
  `total_timeout` for the whole download (all hops): at that deadline a timer shuts the connection down, so
  a server trickling bytes or headers cannot hold a worker forever.
- Content type: audio/*, video/*, application/octet-stream, binary/octet-stream, application/ogg,
  application/mp4, or none; anything else (text/html, application/json, playlists) is refused.
  Content-Encoding other than identity is refused (only `identity` is requested).
- The file name (`filename_for`): Content-Disposition's filename (filename* preferred) when it has a
  supported extension, else the last path segment of the final URL, then of the earlier hops; sanitized
  (no path separators, control characters or leading dots; at most ~150 bytes). Without a supported
  extension the extension comes from the content type (audio/mpeg -> .mp3, video/mp4 -> .mp4, ...), or the
  download is refused as unsupported. The extension is always lower-case. On any failure the partial file
  is removed.

Errors: `MediaError(url, reason)` for what will not get better by retrying (refused URL or address, HTTP
4xx, not media, too large, unsupported, invalid certificate, too many redirects); `FetchError(url, reason)`,
a `RuntimeError`, for what may (HTTP 5xx, 408, 429, DNS failure other than "not found", connection
refused or reset, timeouts, truncated body). Credentials never appear in messages.

Not handled: proxies (HTTP(S)_PROXY are ignored: connections are direct), Retry-After, resuming partial
downloads, a time limit on the system resolver itself (getaddrinfo has none; the resolver's own timeouts
apply), and the TOCTOU-free guarantee for addresses only covers this process (a redirect target or a second
fetch resolves anew, and is checked anew).
"""

from __future__ import annotations

import email.message
import hashlib
import http.client
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import urllib3
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from urllib3.connection import HTTPConnection, HTTPSConnection

from whisperx_assets.inputs.sources import url_name
from whisperx_assets.settings import EnvSettings
from whisperx_assets.speech.errors import MediaError
from whisperx_assets.speech.media import SUPPORTED_EXTENSIONS

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

REQUEST_HEADERS = {"User-Agent": "whisperx-assets-fetch/1", "Accept-Encoding": "identity", "Connection": "close",
                   "Accept": "audio/*, video/*, application/octet-stream;q=0.9, */*;q=0.1"}
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})
DEFAULT_PORTS = {"http": 80, "https": 443}
_CHUNK = 256 * 1024
_MAX_STEM_BYTES = 150


class FetchError(RuntimeError):
    """A download failed in a way that may succeed later (server error, network, timeout): retry it."""

    def __init__(self, url: str, reason: str):
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")


class FetchPolicy(EnvSettings):
    """URL download limits, read from the FETCH_* environment variables (`FetchPolicy()`)."""

    model_config = SettingsConfigDict(env_prefix="FETCH_")  # the rest is EnvSettings'
    invalid = "invalid URL download settings"

    max_bytes: int = Field(2 * 1024**3, gt=0, description="largest download in bytes (Content-Length and streamed)")
    connect_timeout: float = Field(10.0, gt=0, description="seconds per connection attempt and TLS handshake")
    read_timeout: float = Field(60.0, gt=0, description="seconds per socket read")
    total_timeout: float = Field(3600.0, gt=0, description="seconds for the whole download with its redirects")
    allow_private: bool = Field(False, validation_alias="FETCH_ALLOW_PRIVATE_ADDRESSES",
                                description="allow private, loopback and link-local targets")
    allowed_schemes: tuple[Literal["http", "https"], ...] = Field(("http", "https"), min_length=1,
                                                                  description="URL schemes accepted")
    max_redirects: int = Field(5, ge=0, description="redirects followed")


@dataclass(frozen=True)
class FetchedMedia:
    path: Path  # the downloaded file in dest_dir, under its safe name
    sha256: str  # of its bytes


# ---------------------------------------------------------------------------------------------------------
# Addresses


def _net(*cidrs: str):
    return tuple(ipaddress.ip_network(c) for c in cidrs)


_RFC1918 = _net("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
_SHARED = _net("100.64.0.0/10")
_THIS_NETWORK = _net("0.0.0.0/8")
_UNIQUE_LOCAL = _net("fc00::/7")
_NAT64 = _net("64:ff9b::/96", "64:ff9b:1::/48")
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254"))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "the IPv4-mapped IPv6 form"
    if any(ip in n for n in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "the NAT64 form"
    if ip.sixtofour is not None:
        return ip.sixtofour, "the 6to4 form"
    return None


def address_class(address: str | Address) -> str | None:
    """Why `address` is not a public address ("loopback", "private (RFC 1918)", ...), or None if it is."""
    ip = address if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else \
        ipaddress.ip_address(str(address).split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(int(ip))  # drop any scope id
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner, how = embedded
            kind = address_class(inner)
            return None if kind is None else f"{kind}, {how} of {inner}"
        if ip.is_unspecified:
            return "unspecified"
        if ip.is_loopback:
            return "loopback"
        if ip.is_link_local:
            return "link-local"
        if ip.is_multicast:
            return "multicast"
        if any(ip in n for n in _UNIQUE_LOCAL):
            return "unique-local (cloud metadata endpoint)" if ip in _METADATA else "unique-local (fc00::/7)"
        if ip.is_site_local:
            return "site-local (fec0::/10)"
        if ip.is_reserved:
            return "reserved"
        if not ip.is_global:
            return "special-purpose (not globally routable)"
        return None
    if ip.is_unspecified:
        return "unspecified"
    if any(ip in n for n in _THIS_NETWORK):
        return "reserved ('this network', 0.0.0.0/8)"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata endpoint)" if ip in _METADATA else "link-local"
    if ip.is_multicast:
        return "multicast"
    if any(ip in n for n in _SHARED):
        return "shared (carrier-grade NAT, 100.64.0.0/10)"
    if any(ip in n for n in _RFC1918):
        return "private (RFC 1918)"
    if ip.is_reserved:
        return "reserved (broadcast)" if int(ip) == 0xFFFFFFFF else "reserved"
    if not ip.is_global:
        return "special-purpose (not globally routable)"
    return None


def resolve_host(host: str, port: int) -> list[str]:
    """The system resolver: every IPv4/IPv6 address `host` resolves to, in preference order, once each."""
    addresses: list[str] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in addresses:
            addresses.append(sockaddr[0])
    return addresses


def _connect_socket(address: str, port: int, timeout: float) -> socket.socket:
    """Open a TCP connection to exactly `address` (an IP literal, so nothing is resolved)."""
    return socket.create_connection((address, port), timeout=timeout)


def _parse_legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a numeric host means to inet_aton/browsers (1-4 parts, decimal/octal/hex), or None."""
    parts = host.split(".")
    if len(parts) > 4 or any(not p for p in parts):
        return None
    numbers = []
    for p in parts:
        if re.fullmatch(r"0x[0-9a-f]*", p):
            numbers.append(int(p[2:] or "0", 16))
        elif re.fullmatch(r"0[0-7]+", p):
            numbers.append(int(p, 8))
        elif re.fullmatch(r"[0-9]+", p) and not (len(p) > 1 and p[0] == "0"):
            numbers.append(int(p))
        else:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


# ---------------------------------------------------------------------------------------------------------
# URLs


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # ASCII, lower-case, no brackets, no trailing dot
    port: int
    literal: Address | None  # the host is an IP address
    request_target: str  # path and query, percent-encoded


_SHOWN_MAX = 500


def _redact(url: str) -> str:
    """The URL for messages: any user:password@ replaced by ***@ (such URLs are refused anyway), control
    characters and whitespace percent-encoded (no log injection), at most 500 characters."""
    if not isinstance(url, str):
        return repr(url)
    try:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            url = urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
    except ValueError:
        if "@" in url:
            return "(malformed URL)"
    url = "".join(quote(c) if ord(c) <= 0x20 or 0x7F <= ord(c) <= 0x9F else c for c in url)
    return url if len(url) <= _SHOWN_MAX else url[:_SHOWN_MAX] + "..."


def _refuse(shown: str, hop: str | None, reason: str) -> MediaError:
    return MediaError(shown, reason if hop is None else f"redirected to {_redact(hop)}: {reason}")


def _normalize_host(raw: str, shown: str, hop: str | None, policy: FetchPolicy) -> tuple[str, Address | None]:
    if "%" in raw:
        raise _refuse(shown, hop, "IPv6 zone identifiers (%) are not accepted in URLs")
    if ":" in raw:
        try:
            return str(ipaddress.IPv6Address(raw)), ipaddress.IPv6Address(raw)
        except ValueError:
            raise _refuse(shown, hop, f"invalid IPv6 address {raw!r}") from None
    try:
        host = raw.encode("idna").decode("ascii").lower()  # also folds full-width digits: １２７ -> 127
    except UnicodeError:
        raise _refuse(shown, hop, f"invalid host name {raw!r}") from None
    host = host[:-1] if host.endswith(".") else host
    if not host or not re.fullmatch(r"[a-z0-9_.-]+", host) or ".." in host:
        raise _refuse(shown, hop, f"invalid host name {raw!r}")
    last = host.rsplit(".", 1)[-1]
    if re.fullmatch(r"[0-9]+|0x[0-9a-f]*", last):  # a numeric host: must be a canonical dotted quad
        ip = _parse_legacy_ipv4(host)
        if ip is None:
            raise _refuse(shown, hop, f"invalid numeric host {raw!r}")
        if host != str(ip) or raw.rstrip(".") != host:
            kind = address_class(ip)
            what = f" ({kind})" if kind and not policy.allow_private else ""
            raise _refuse(shown, hop, f"numeric host {raw!r} is a non-canonical spelling of the IP address {ip}"
                                      f"{what}; refused (write the address as {ip})")
        return host, ip
    return host, None


_SAFE_PATH = "/%!$&'()*+,;=:@-._~"


def _parse(url: str, policy: FetchPolicy, shown: str, hop: str | None) -> _Target:
    if not isinstance(url, str) or not url.strip():
        raise _refuse(shown, hop, "empty URL")
    if any(ord(c) <= 0x20 or 0x7F <= ord(c) <= 0x9F for c in url):
        raise _refuse(shown, hop, "the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise _refuse(shown, hop, f"malformed URL ({e})") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise _refuse(shown, hop, "not an absolute http(s) URL")
    if scheme not in policy.allowed_schemes:
        raise _refuse(shown, hop, f"scheme {scheme + ':'!r} is not allowed (allowed: "
                                  f"{', '.join(policy.allowed_schemes)})")
    if "@" in parts.netloc:
        raise _refuse(shown, hop, "credentials in the URL (user:password@host) are not accepted")
    if not parts.hostname:
        raise _refuse(shown, hop, "the URL has no host")
    if port == 0:
        raise _refuse(shown, hop, "port 0 is not a valid port")
    host, literal = _normalize_host(parts.hostname, shown, hop, policy)
    target = quote(parts.path or "/", safe=_SAFE_PATH)
    if not target.startswith("/"):
        target = "/" + target
    if parts.query:
        target += "?" + quote(parts.query, safe=_SAFE_PATH + "?")
    return _Target(scheme, host, port or DEFAULT_PORTS[scheme], literal, target)


def _addresses(target: _Target, policy: FetchPolicy, shown: str, hop: str | None) -> list[str]:
    """The checked addresses to connect to: the literal, or every address the host resolves to (once)."""
    if target.literal is not None:
        found = [target.literal]
    else:
        try:
            resolved = list(resolve_host(target.host, target.port))
        except socket.gaierror as e:
            if e.errno in {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}:
                raise _refuse(shown, hop, f"host {target.host!r} not found") from None
            raise FetchError(shown, f"cannot resolve {target.host!r} ({e})") from e
        except OSError as e:
            raise FetchError(shown, f"cannot resolve {target.host!r} ({e})") from e
        try:
            found = [ipaddress.ip_address(str(a).split("%", 1)[0]) for a in resolved]
        except ValueError as e:
            raise FetchError(shown, f"resolver returned an invalid address for {target.host!r} ({e})") from e
        if not found:
            raise _refuse(shown, hop, f"host {target.host!r} has no address")
        resolved_text = [str(a) for a in resolved]
    if not policy.allow_private:
        for ip in found:
            kind = address_class(ip)
            if kind is not None:
                subject = target.host if target.literal is not None else f"{target.host} resolves to {ip}, which"
                raise _refuse(shown, hop, f"{subject} is not a public address ({kind}); refused (set "
                                          "FETCH_ALLOW_PRIVATE_ADDRESSES=1 to allow private targets)")
    return [str(target.literal)] if target.literal is not None else resolved_text


# ---------------------------------------------------------------------------------------------------------
# File names

_TYPE_EXTENSIONS = {
    "audio/mpeg": ".mp3", "audio/mp3": ".mp3", "audio/mpeg3": ".mp3", "audio/x-mpeg": ".mp3", "audio/x-mp3": ".mp3",
    "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/vnd.wave": ".wav",
    "audio/ogg": ".ogg", "application/ogg": ".ogg", "audio/x-ogg": ".ogg", "audio/vorbis": ".ogg",
    "audio/opus": ".opus",
    "audio/flac": ".flac", "audio/x-flac": ".flac",
    "audio/aac": ".aac", "audio/x-aac": ".aac", "audio/aacp": ".aac",
    "audio/mp4": ".m4a", "audio/x-m4a": ".m4a", "audio/m4a": ".m4a", "application/mp4": ".mp4",
    "audio/amr": ".amr", "audio/amr-wb": ".awb",
    "audio/x-ms-wma": ".wma", "video/x-ms-wmv": ".wmv",
    "audio/webm": ".webm", "video/webm": ".webm",
    "video/mp4": ".mp4", "video/quicktime": ".mov",
    "video/x-matroska": ".mkv", "audio/x-matroska": ".mkv", "video/matroska": ".mkv",
    "video/x-msvideo": ".avi", "video/avi": ".avi", "video/msvideo": ".avi",
}
_OTHER_MEDIA_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", "application/ogg",
                                "application/mp4"})
_PLAYLIST_TYPES = frozenset({"audio/x-mpegurl", "audio/mpegurl", "application/vnd.apple.mpegurl",
                             "application/x-mpegurl", "audio/x-scpls", "application/dash+xml"})
_UNSAFE_NAME = re.compile(r"[^\w .()+,\[\]-]+")


def _media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime or None


def _type_refusal(mime: str | None) -> str | None:
    if mime is None:
        return None
    if mime in _PLAYLIST_TYPES:
        return f"server sent a playlist ({mime}), not a media file"
    if mime.startswith(("audio/", "video/")) or mime in _OTHER_MEDIA_TYPES:
        return None
    return f"server sent {mime}, not media"


def _sanitize(raw: str) -> str:
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(" " if unicodedata.category(c).startswith("Z") else c for c in name
                   if not unicodedata.category(c).startswith("C"))
    name = re.sub(r" +", " ", _UNSAFE_NAME.sub("_", name))
    return name.lstrip(". _-").rstrip(". ")


def _split(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    return (stem, "." + ext.lower()) if dot and stem else (name, "")


def _compose(stem: str, ext: str) -> str:
    stem = stem.rstrip(". ") or "media"
    while len(stem.encode("utf-8")) > _MAX_STEM_BYTES:
        stem = stem[:-1]
    return f"{stem.rstrip('. ') or 'media'}{ext}"


def _disposition_filename(value: str) -> str | None:
    try:  # http.client decodes headers as latin-1; many servers send raw UTF-8 anyway
        value = value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        pass
    extended = re.search(r"filename\*\s*=\s*([\w!#$&+.^`|~-]+)'[^']*'([^;\s]+)", value, re.IGNORECASE)
    if extended:
        try:
            return unquote(extended.group(2), encoding=extended.group(1), errors="replace")
        except LookupError:  # unknown charset
            pass
    message = email.message.Message()
    try:
        message["Content-Disposition"] = value
        name = message.get_filename()
    except Exception:  # a malformed header is ignored, like a missing one
        return None
    return name if isinstance(name, str) else None


def _filename(urls: list[str], content_disposition: str | None, content_type: str | None, shown: str) -> str:
    candidates = []
    if content_disposition:
        candidates.append(_disposition_filename(content_disposition) or "")
    candidates += [url_name(u) for u in urls]
    names = [n for n in (_sanitize(c) for c in candidates if c) if n]
    for name in names:
        stem, ext = _split(name)
        if ext in SUPPORTED_EXTENSIONS:
            return _compose(stem, ext)
    mime = _media_type(content_type)
    ext = _TYPE_EXTENSIONS.get(mime or "")
    if ext is None:
        raise MediaError(shown, f"unsupported media: no supported file extension in the URL"
                                f"{' or Content-Disposition' if content_disposition else ''}, and the content type "
                                f"({mime or 'none'}) names no supported format; supported: "
                                f"{' '.join(sorted(SUPPORTED_EXTENSIONS))}")
    return _compose(_split(names[0])[0] if names else "media", ext)


def filename_for(url: str, content_disposition: str | None = None, content_type: str | None = None) -> str:
    """A safe file name with a supported (lower-case) extension for media downloaded from `url`.

    Content-Disposition's filename when it has a supported extension, else the URL path's last segment; the
    extension is derived from `content_type` when neither has one. Raises MediaError if none is supported.
    """
    return _filename([url], content_disposition, content_type, _redact(url))



# ---------------------------------------------------------------------------------------------------------
# Download


class _Deadline:
    """The whole download's time limit. urllib3's timeouts bound each socket operation, so a server sending a
    byte now and then could hold a download forever: at the deadline a timer shuts the connection down, which
    wakes any blocked read (through a duplicate of the socket: shutdown acts on the connection whichever
    descriptor names it, and is safe beside a TLS read in another thread)."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds
        self._expired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def passed(self) -> bool:
        return self._expired or time.monotonic() >= self.end

    def _shutdown(self) -> None:
        try:
            if self._sock is not None:
                self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            self._shutdown()

    def watch(self, sock: socket.socket | None) -> None:
        """Shut `sock`'s connection down at the deadline (None: the current one is done)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
            self._sock = None if sock is None else sock.dup()
            if self._expired:
                self._shutdown()

    def cancel(self) -> None:
        self._timer.cancel()
        self.watch(None)


class _Unreachable(Exception):
    """No checked address accepted the connection; `error` is the last attempt's."""

    def __init__(self, error: OSError | None):
        self.error = error


class _Pinned:
    """A urllib3 connection whose socket goes to the checked addresses (the first that answers), never to a
    new resolution of its host name; the Host header, SNI and certificate check still use the host name."""

    addresses: list[str]
    deadline: _Deadline

    def _new_conn(self) -> socket.socket:
        error = None
        for address in self.addresses:
            try:
                sock = _connect_socket(address, self.port, self.timeout)
            except OSError as e:  # refused, unreachable, timed out: try the next checked address
                error = e
                log.debug("connect to %s port %s failed: %r", address, self.port, e)
                continue
            self.deadline.watch(sock)
            return sock
        raise _Unreachable(error)


class _PinnedHTTP(_Pinned, HTTPConnection):
    pass


class _PinnedHTTPS(_Pinned, HTTPSConnection):
    pass


class _Download:
    def __init__(self, url: str, policy: FetchPolicy):
        self.shown = _redact(url)
        self.policy = policy
        self.deadline = _Deadline(policy.total_timeout)

    def out_of_time(self) -> FetchError:
        return FetchError(self.shown, f"took longer than the total time limit of {self.policy.total_timeout:g} s "
                                      "(FETCH_TOTAL_TIMEOUT)")

    @contextmanager
    def network(self, target: _Target, what: str) -> Iterator[None]:
        """Turn what goes wrong on the network during `what` into a MediaError (permanent) or FetchError."""
        host = target.host
        try:
            yield
        except (MediaError, FetchError):
            raise
        except Exception as e:
            if self.deadline.passed():
                raise self.out_of_time() from e
            if isinstance(e, _Unreachable):
                reason = f"connect timeout ({self.policy.connect_timeout:g} s)" if isinstance(e.error, TimeoutError) \
                    else repr(e.error)
                raise FetchError(self.shown, f"cannot connect to {host} port {target.port} ({reason})") from e.error
            if isinstance(e, ssl.SSLCertVerificationError):
                raise MediaError(self.shown, f"the TLS certificate of {host} is not valid "
                                             f"({e.verify_message or e})") from e
            if isinstance(e, (TimeoutError, urllib3.exceptions.TimeoutError)):
                if what == "TLS handshake":
                    raise FetchError(self.shown, f"TLS handshake with {host} timed out "
                                                 f"({self.policy.connect_timeout:g} s)") from e
                raise FetchError(self.shown, f"no data from {host} for {self.policy.read_timeout:g} s during {what} "
                                             "(read timeout, FETCH_READ_TIMEOUT)") from e
            if isinstance(e, (OSError, http.client.IncompleteRead, urllib3.exceptions.ProtocolError,
                              urllib3.exceptions.SSLError)):
                raise FetchError(self.shown, f"connection to {host} failed during {what} ({e!r})") from e
            if isinstance(e, (http.client.HTTPException, urllib3.exceptions.HTTPError)):
                raise MediaError(self.shown, f"invalid HTTP response from {host} ({e!r})") from e
            raise

    def connect(self, target: _Target, addresses: list[str]) -> HTTPConnection:
        left = self.deadline.end - time.monotonic()
        if left <= 0:
            raise self.out_of_time()
        connection = (_PinnedHTTPS if target.scheme == "https" else _PinnedHTTP)(
            target.host, target.port, timeout=min(self.policy.connect_timeout, left))
        connection.addresses, connection.deadline = addresses, self.deadline
        try:
            with self.network(target, "TLS handshake"):
                connection.connect()
        except BaseException:
            connection.close()
            raise
        return connection

    def request(self, target: _Target, connection: HTTPConnection) -> urllib3.BaseHTTPResponse:
        with self.network(target, "the request"):
            connection.request("GET", target.request_target, headers=REQUEST_HEADERS, preload_content=False,
                               decode_content=False, enforce_content_length=False)
            connection.timeout = self.policy.read_timeout  # each socket read from here on
            return connection.getresponse()

    def run(self, url: str, dest_dir: Path) -> FetchedMedia:
        urls = [url]
        try:
            for _ in range(self.policy.max_redirects + 1):
                hop = urls[-1] if len(urls) > 1 else None
                target = _parse(urls[-1], self.policy, self.shown, hop)
                connection = self.connect(target, _addresses(target, self.policy, self.shown, hop))
                response = None
                try:
                    response = self.request(target, connection)
                    if response.status not in REDIRECT_STATUSES:
                        return self.save(target, response, urls, dest_dir)
                    location = (response.headers.get("Location") or "").strip()
                    if not location:
                        raise MediaError(self.shown, f"HTTP {response.status} redirect without a Location header")
                    try:
                        urls.append(urljoin(urls[-1], location))
                    except ValueError:
                        raise MediaError(self.shown, "redirect to a malformed URL") from None
                    log.debug("redirect %s -> %s", _redact(urls[-2]), _redact(urls[-1]))
                finally:
                    if response is not None:
                        response.close()
                    connection.close()
                    self.deadline.watch(None)
            raise MediaError(self.shown, f"too many redirects (more than {self.policy.max_redirects})")
        finally:
            self.deadline.cancel()

    def check_response(self, response: urllib3.BaseHTTPResponse, hop: str) -> None:
        status, reason = response.status, (response.reason or "").strip()
        where = "" if hop == self.shown else f" (at {hop})"
        if status == 200:
            return
        if status >= 500 or status in RETRYABLE_CLIENT_STATUSES:
            raise FetchError(self.shown, f"HTTP {status} {reason}{where}; try again later")
        if 400 <= status < 500:
            raise MediaError(self.shown, f"HTTP {status} {reason}{where}")
        raise MediaError(self.shown, f"unexpected HTTP status {status} {reason}{where}")

    def save(self, target: _Target, response: urllib3.BaseHTTPResponse, urls: list[str],
             dest_dir: Path) -> FetchedMedia:
        self.check_response(response, _redact(urls[-1]))
        content_type = response.headers.get("Content-Type")
        refusal = _type_refusal(_media_type(content_type))
        if refusal:
            raise MediaError(self.shown, refusal)
        encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise MediaError(self.shown, f"server sent a {encoding}-encoded body (Content-Encoding); not supported")
        limit = self.policy.max_bytes
        expected = response.length_remaining  # None when chunked, absent or invalid
        if expected is not None and expected > limit:
            raise MediaError(self.shown, f"too large: the server announces {expected} bytes, more than the limit of "
                                         f"{limit} bytes (FETCH_MAX_BYTES)")
        path = dest_dir / _filename(urls[::-1], response.headers.get("Content-Disposition"), content_type, self.shown)
        dest_dir.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        try:
            chunks = response.stream(_CHUNK)
            with open(path, "wb") as out:
                while True:
                    with self.network(target, "the download"):
                        chunk = next(chunks, b"")
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise MediaError(self.shown, f"too large: more than the limit of {limit} bytes "
                                                     "(FETCH_MAX_BYTES) received; download stopped")
                    digest.update(chunk)
                    out.write(chunk)
            if self.deadline.passed():  # the shutdown at the deadline looks like the end of a close-delimited body
                raise self.out_of_time()
            if expected is not None and size < expected:
                raise FetchError(self.shown, f"connection closed after {size} of {expected} bytes")
            if size == 0:
                raise MediaError(self.shown, "the server sent an empty body (0 bytes)")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        log.info("fetched %s -> %s (%d bytes)", self.shown, path, size)
        return FetchedMedia(path, digest.hexdigest())


def fetch(url: str, dest_dir: str | Path, policy: FetchPolicy | None = None) -> FetchedMedia:
    """Download the media at `url` into `dest_dir` (a new folder of the caller's) under a safe name (see the
    module docstring). Raises MediaError (permanent) or FetchError (retryable)."""
    return _Download(url, policy or FetchPolicy()).run(url, Path(dest_dir))


# Other requests to addresses users give (run callbacks) pass the same checks and connect the same way.
POST_HEADERS = {"Content-Type": "application/json", "User-Agent": "whisperx-assets/1", "Connection": "close"}
_RESPONSE_BYTES = 64 * 1024  # read (and dropped) of a response body


def redact(url: str) -> str:
    """`url` as it may be shown in logs (no credentials, query or fragment)."""
    return _redact(url)


def check_url(url: str, policy: FetchPolicy | None = None) -> None:
    """Refuse `url` as URL inputs are refused: MediaError (a ValueError) saying why, or
    FetchError when its host cannot be resolved now."""
    policy = policy or FetchPolicy()
    shown = _redact(url)
    _addresses(_parse(url, policy, shown, None), policy, shown, None)


def post_json(url: str, payload: dict, timeout: float, policy: FetchPolicy | None = None) -> int:
    """POST `payload` as JSON to `url` once, to a checked address, within `timeout` seconds; the HTTP status.
    Raises MediaError (refused URL or address, invalid certificate or response: final) or FetchError
    (connection failed or timed out: worth retrying)."""
    policy = (policy or FetchPolicy()).replace(connect_timeout=timeout, read_timeout=timeout, total_timeout=timeout)
    body = json.dumps(payload).encode()
    request = _Download(url, policy)  # its deadline bounds the whole try
    try:
        target = _parse(url, policy, request.shown, None)
        connection = request.connect(target, _addresses(target, policy, request.shown, None))
        try:
            with request.network(target, "the callback"):
                connection.request("POST", target.request_target, body=body, preload_content=False,
                                   headers={**POST_HEADERS, "Content-Length": str(len(body))})
                response = connection.getresponse()
                response.read(_RESPONSE_BYTES)
                return response.status
        finally:
            connection.close()
            request.deadline.watch(None)
    finally:
        request.deadline.cancel()
