"""Fetching media URLs: refused URLs and addresses, DNS rebinding, redirects, size/time limits, names, the
policy's environment variables.

A real HTTP server (and an HTTPS one) runs on 127.0.0.1. Every connection goes through a guard that fails the
test for any address outside 127.0.0.0/8; "public" hosts are names that a fake resolver maps to a public-looking
address (93.184.216.34), which the guard routes to the local server. So no test touches the network.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote

import pytest

from whisperx_assets.inputs import fetch as fetch_module
from whisperx_assets.inputs.fetch import FetchedMedia, FetchError, FetchPolicy, address_class, fetch, filename_for
from whisperx_assets.speech.errors import MediaError

LIMIT = 64 * 1024  # max_bytes in these tests
PUBLIC = "93.184.216.34"  # a public address that the guard routes to the local server; never contacted
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
SYSTEM_RESOLVER = fetch_module.resolve_host  # before the autouse fixture replaces it


def _wav_bytes(seconds: float = 0.25, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes((i * 37) % 256 for i in range(int(seconds * rate) * 2)))
    return buffer.getvalue()


WAV = _wav_bytes()
WAV_SHA = hashlib.sha256(WAV).hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def reply(self, body: bytes, content_type: str | None = "audio/wav", status: int = 200, length: int | None = -1,
              headers: dict | None = None):
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(len(body) if length == -1 else length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length is None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def redirect(self, location: str):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.server.seen.append((self.path, self.headers.get("Host")))
        try:
            self.route()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def route(self):
        path, _, query = self.path.partition("?")
        stop: threading.Event = self.server.stop
        if path == "/media/talk.wav":
            self.reply(WAV)
        elif path == "/stream":
            self.reply(WAV, "audio/x-wav")
        elif path == "/blob":
            self.reply(WAV, "application/octet-stream")
        elif path == "/download":
            self.reply(WAV, "application/octet-stream",
                       headers={"Content-Disposition": 'attachment; filename="../../secret/.My Talk.WAV"'})
        elif path == "/big.wav":  # honest Content-Length, over the limit
            self.reply(b"\0" * (4 * LIMIT))
        elif path == "/chunked.wav":  # no Content-Length, over the limit while streaming
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(16):
                self.wfile.write(b"4000\r\n" + b"\0" * 0x4000 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/unframed.wav":  # no Content-Length, no chunking: the body ends when the connection closes
            self.reply(b"\0" * (4 * LIMIT), length=None)
        elif path == "/lying.wav":  # announces a small body, sends a large one
            self.reply(b"\0" * (4 * LIMIT), length=len(WAV))
        elif path == "/short.wav":  # announces more than it sends, then closes
            self.reply(WAV, length=len(WAV) + 1000)
            self.close_connection = True
        elif path == "/empty.wav":
            self.reply(b"")
        elif path == "/slow.wav":  # stalls after a few bytes
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(WAV[:10])
            self.wfile.flush()
            stop.wait(10)
        elif path == "/trickle.wav":  # one byte every 0.1 s: never a read timeout, but endless
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            while not stop.wait(0.1):
                self.wfile.write(b"\0")
                self.wfile.flush()
        elif path == "/stall":  # sends nothing at all
            stop.wait(10)
        elif path == "/page.html":
            self.reply(b"<html><body>not media</body></html>", "text/html; charset=utf-8")
        elif path == "/api":
            self.reply(b'{"error": "nope"}', "application/json")
        elif path == "/playlist":
            self.reply(b"#EXTM3U\nhttp://127.0.0.1/a.mp3\n", "audio/x-mpegurl")
        elif path == "/gzip.wav":
            self.reply(WAV, headers={"Content-Encoding": "gzip"})
        elif path.startswith("/status/"):
            self.send_error(int(path.rsplit("/", 1)[1]))
        elif path.startswith("/redirect/"):
            n = int(path.rsplit("/", 1)[1])
            self.redirect(f"/redirect/{n - 1}" if n > 0 else "/media/talk.wav")
        elif path == "/loop":
            self.redirect("/loop")
        elif path == "/to":
            self.redirect(parse_qs(query)["u"][0])
        else:
            self.send_error(404)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    tls: ssl.SSLContext | None = None

    def handle_error(self, request, client_address):  # clients hanging up mid-body are expected here
        pass

    def finish_request(self, request, client_address):
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


def _serve(tls: ssl.SSLContext | None = None):
    server = Server(("127.0.0.1", 0), Handler)
    server.tls, server.seen, server.stop = tls, [], threading.Event()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    server.port = server.server_address[1]
    server.url = lambda path: f"http://127.0.0.1:{server.port}{path}"
    return server


def _stop(server):
    server.stop.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def server():
    server = _serve()
    yield server
    _stop(server)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=media.test",
                    "-addext", "subjectAltName=DNS:media.test",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
                    "-addext", "extendedKeyUsage=serverAuth"],
                   check=True, capture_output=True, timeout=30)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = _serve(context)
    server.cert, server.sni = cert, names
    yield server
    _stop(server)


class FakeNet:
    """The resolver and socket opener every test runs with: only 127.0.0.0/8 is ever connected to."""

    def __init__(self, real_connect):
        self.real_connect = real_connect
        self.names: dict[str, list[str]] = {"localhost": ["127.0.0.1"]}
        self.routes: dict[tuple[str, int], int] = {}  # (address, port) -> local port
        self.lookups: list[str] = []
        self.connects: list[tuple[str, int]] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.names[host])

    def connect(self, address: str, port: int, timeout: float) -> socket.socket:
        self.connects.append((address, port))
        if (address, port) in self.routes:
            address, port = "127.0.0.1", self.routes[(address, port)]
        if ipaddress.ip_address(address) not in LOOPBACK:
            raise AssertionError(f"a test tried to contact {address} port {port}")
        return self.real_connect(address, port, timeout)


@pytest.fixture(autouse=True)
def net(monkeypatch):
    fake = FakeNet(fetch_module._connect_socket)
    monkeypatch.setattr(fetch_module, "_connect_socket", fake.connect)
    monkeypatch.setattr(fetch_module, "resolve_host", fake.resolve)
    return fake


@pytest.fixture
def public(net, server):
    """`media.test` and `cdn.test` resolve to a public address (routed to the local server on port 80)."""
    net.names.update({"media.test": [PUBLIC], "cdn.test": [PUBLIC]})
    net.routes[(PUBLIC, 80)] = server.port
    return net


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "downloads"


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


LOCAL = FetchPolicy(max_bytes=LIMIT, connect_timeout=2, read_timeout=2, total_timeout=10, allow_private=True)
STRICT = FetchPolicy(max_bytes=LIMIT, connect_timeout=2, read_timeout=2, total_timeout=10, allow_private=False)


@pytest.fixture
def no_lookup(net):
    """The URL must be refused before any name is resolved."""
    yield
    assert net.lookups == []


# --- success ------------------------------------------------------------------------------------------------


def test_fetch_from_loopback_server_when_private_targets_are_allowed(server, dest):
    url = server.url("/media/talk.wav")
    got = fetch(url, dest, LOCAL)
    assert isinstance(got, FetchedMedia)
    assert got.path == dest / "talk.wav" and got.path.read_bytes() == WAV and got.sha256 == WAV_SHA
    assert leftovers(dest) == ["talk.wav"]  # no temporary file left


def test_same_url_is_refused_without_allow_private(server, dest, net):
    with pytest.raises(MediaError, match="loopback") as caught:
        fetch(server.url("/media/talk.wav"), dest, STRICT)
    assert "FETCH_ALLOW_PRIVATE_ADDRESSES" in caught.value.reason
    assert net.connects == [] and leftovers(dest) == []


def test_localhost_by_name_is_refused(server, dest, net):
    with pytest.raises(MediaError, match="localhost resolves to 127.0.0.1.*loopback"):
        fetch(f"http://localhost:{server.port}/media/talk.wav", dest, STRICT)
    assert net.connects == []


def test_system_resolver_returns_each_address_once():
    # numeric hosts only: getaddrinfo parses them without asking any DNS server
    assert SYSTEM_RESOLVER("127.0.0.1", 80) == ["127.0.0.1"]
    assert SYSTEM_RESOLVER("::1", 80) == ["::1"]


def test_public_host_through_the_resolver_is_fetched_with_its_host_header(server, dest, public):
    got = fetch("http://media.test/media/talk.wav", dest, STRICT)
    assert got.path.read_bytes() == WAV and got.sha256 == WAV_SHA
    assert public.connects == [(PUBLIC, 80)]
    assert server.seen[-1] == ("/media/talk.wav", "media.test")


def test_name_from_content_type_when_the_url_has_no_extension(server, dest):
    got = fetch(server.url("/stream"), dest, LOCAL)
    assert got.path.name == "stream.wav" and got.sha256 == WAV_SHA


def test_name_from_content_disposition_is_sanitized(server, dest):
    got = fetch(server.url("/download?id=7"), dest, LOCAL)
    assert got.path == dest / "My Talk.wav"
    assert leftovers(dest) == ["My Talk.wav"]


# --- addresses ----------------------------------------------------------------------------------------------

BLOCKED = [
    ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local (cloud metadata"), ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("fc00::1", "unique-local"), ("fd12:3456::1", "unique-local"), ("fd00:ec2::254", "metadata"),
    ("fec0::1", "site-local"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("0.1.2.3", "this network"),
    ("100.64.0.1", "shared"), ("100.127.255.254", "shared"),
    ("192.0.2.1", "special-purpose"), ("198.18.0.1", "special-purpose"), ("2001:db8::1", "special-purpose"),
    ("::ffff:127.0.0.1", "loopback, the IPv4-mapped"), ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"), ("::ffff:0.0.0.0", "unspecified"),
    ("64:ff9b::7f00:1", "loopback, the NAT64"), ("2002:a9fe:a9fe::1", "link-local"),
]
PUBLIC_ADDRESSES = [PUBLIC, "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
                    "2002:808:808::1"]


@pytest.mark.parametrize("address,kind", BLOCKED)
def test_every_blocked_address_class_is_refused(address, kind, dest, net):
    assert kind in address_class(address)
    net.names["media.test"] = [address]
    with pytest.raises(MediaError, match="not a public address") as caught:
        fetch("http://media.test/talk.wav", dest, STRICT)
    assert kind in caught.value.reason and str(ipaddress.ip_address(address)) in caught.value.reason
    assert net.connects == []


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_pass(address):
    assert address_class(address) is None


def test_every_resolved_address_is_checked(dest, net):
    net.names["media.test"] = [PUBLIC, "10.0.0.5"]
    with pytest.raises(MediaError, match="10.0.0.5.*private"):
        fetch("http://media.test/talk.wav", dest, STRICT)
    assert net.connects == []


def test_dns_rebinding_connects_to_the_checked_address(server, dest, net, monkeypatch):
    """The first answer is public, later ones loopback: the connection must go to the checked address."""
    answers = iter([[PUBLIC], ["127.0.0.1"], ["127.0.0.1"]])
    lookups = []

    def rebinding(host, port):
        lookups.append(host)
        return next(answers)

    net.routes[(PUBLIC, 80)] = server.port
    monkeypatch.setattr(fetch_module, "resolve_host", rebinding)
    got = fetch("http://media.test/media/talk.wav", dest, STRICT)
    assert got.sha256 == WAV_SHA
    assert lookups == ["media.test"]  # resolved once
    assert net.connects == [(PUBLIC, 80)]  # to the checked address, not a fresh resolution
    assert server.seen[-1] == ("/media/talk.wav", "media.test")


def test_allow_private_allows_private_resolutions(server, dest, net):
    net.names["intranet.test"] = ["127.0.0.1"]
    got = fetch(f"http://intranet.test:{server.port}/media/talk.wav", dest, LOCAL)
    assert got.sha256 == WAV_SHA and server.seen[-1][1] == f"intranet.test:{server.port}"


def test_unknown_host_is_refused(dest):
    with pytest.raises(MediaError, match="not found"):
        fetch("http://nowhere.test/a.wav", dest, STRICT)


def test_temporary_resolver_failure_is_retryable(dest, monkeypatch):
    def failing(host, port):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(fetch_module, "resolve_host", failing)
    with pytest.raises(FetchError, match="cannot resolve"):
        fetch("http://media.test/a.wav", dest, STRICT)


# --- URLs ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://2130706433/a.wav", "http://0x7f.1/a.wav", "http://017700000001/a.wav",
                                 "http://0x7f000001/a.wav", "http://127.1/a.wav", "http://0177.0.0.1/a.wav",
                                 "http://127.0.0.01/a.wav", "http://0x7F.0.0.1/a.wav",
                                 "http://１２７.０.０.１/a.wav"])
@pytest.mark.parametrize("policy", [STRICT, LOCAL], ids=["strict", "allow_private"])
def test_numeric_ip_spellings_are_refused(url, policy, dest, net, no_lookup):
    with pytest.raises(MediaError, match="non-canonical spelling of the IP address 127.0.0.1"):
        fetch(url, dest, policy)
    assert net.connects == []


@pytest.mark.parametrize("url,kind", [("http://127.0.0.1/a.wav", "loopback"), ("http://[::1]/a.wav", "loopback"),
                                      ("http://[::ffff:7f00:1]/a.wav", "loopback"),
                                      ("http://169.254.169.254/latest/meta-data/", "metadata"),
                                      ("http://[fe80::1]/a.wav", "link-local"), ("http://0.0.0.0/a.wav", "unspecified"),
                                      ("http://2852039166/latest", "link-local")])
def test_ip_literals_are_checked_without_resolving(url, kind, dest, net, no_lookup):
    with pytest.raises(MediaError, match=kind):
        fetch(url, dest, STRICT)
    assert net.connects == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://media.test/a.mp3", "data:audio/wav;base64,UklGRg==",
                                 "gopher://127.0.0.1:70/_x", "javascript:alert(1)", "ws://media.test/a.wav",
                                 "//media.test/a.wav", "/srv/media/a.wav", "a.wav"])
def test_other_schemes_are_refused(url, dest, no_lookup):
    with pytest.raises(MediaError, match="scheme|absolute"):
        fetch(url, dest, STRICT)


def test_allowed_schemes_are_the_policys(dest, no_lookup):
    with pytest.raises(MediaError, match="scheme 'http:' is not allowed"):
        fetch("http://media.test/a.wav", dest, FetchPolicy(allowed_schemes=("https",)))
    with pytest.raises(ValueError, match="FETCH_ALLOWED_SCHEMES must be one of"):
        FetchPolicy(allowed_schemes=("ftp",))


@pytest.mark.parametrize("url", ["http://user:s3cret@media.test/a.wav", "http://user@media.test/a.wav",
                                 "http://@media.test/a.wav", "http://media.test\\@127.0.0.1/a.wav",
                                 "https://:s3cret@media.test/a.wav"])
def test_credentials_are_refused_and_not_shown(url, dest, no_lookup):
    with pytest.raises(MediaError, match="credentials") as caught:
        fetch(url, dest, STRICT)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("url", ["http:///a.wav", "http://:80/a.wav", "http:a.wav", "https://"])
def test_missing_host_is_refused(url, dest, no_lookup):
    with pytest.raises(MediaError, match="no host"):
        fetch(url, dest, STRICT)


@pytest.mark.parametrize("url", ["http://media.test/a b.wav", "http://media.test/a.wav\r\nX-Injected: 1",
                                 "http://media.test:99999/a.wav", "http://bad_host..test/a.wav", "http://[::1/a.wav",
                                 "http://[fe80::1%25eth0]/a.wav", ""])
def test_malformed_urls_are_refused(url, dest, no_lookup):
    with pytest.raises(MediaError) as caught:
        fetch(url, dest, STRICT)
    assert "\r" not in str(caught.value) and "\n" not in str(caught.value)  # no log injection


# --- size and time limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path,announced", [("/big.wav", True), ("/chunked.wav", False), ("/unframed.wav", False)])
def test_oversized_bodies_are_refused_and_leave_nothing(path, announced, server, dest):
    with pytest.raises(MediaError, match="too large") as caught:
        fetch(server.url(path), dest, LOCAL)
    assert ("announces" in caught.value.reason) is announced
    assert leftovers(dest) == []


def test_a_body_longer_than_announced_is_cut_at_the_announced_length(server, dest):
    got = fetch(server.url("/lying.wav"), dest, LOCAL)  # http framing: the rest is not part of the response
    assert got.path.stat().st_size == len(WAV)


def test_a_body_shorter_than_announced_is_a_retryable_failure(server, dest):
    with pytest.raises(FetchError, match=f"closed after {len(WAV)} of {len(WAV) + 1000} bytes"):
        fetch(server.url("/short.wav"), dest, LOCAL)
    assert leftovers(dest) == []


def test_empty_body_is_refused(server, dest):
    with pytest.raises(MediaError, match="empty"):
        fetch(server.url("/empty.wav"), dest, LOCAL)
    assert leftovers(dest) == []


def test_read_timeout(server, dest):
    start = time.monotonic()
    with pytest.raises(FetchError, match="read timeout"):
        fetch(server.url("/slow.wav"), dest, FetchPolicy(read_timeout=0.5, allow_private=True))
    assert time.monotonic() - start < 3
    assert leftovers(dest) == []


def test_total_timeout_stops_a_trickling_download(server, dest):
    start = time.monotonic()
    with pytest.raises(FetchError, match="total time limit"):
        fetch(server.url("/trickle.wav"), dest, FetchPolicy(read_timeout=5, total_timeout=1.0, allow_private=True))
    assert time.monotonic() - start < 3
    assert leftovers(dest) == []


def test_total_timeout_covers_a_server_that_never_answers(server, dest):
    start = time.monotonic()
    with pytest.raises(FetchError, match="total time limit"):
        fetch(server.url("/stall"), dest, FetchPolicy(read_timeout=5, total_timeout=0.5, allow_private=True))
    assert time.monotonic() - start < 3


def test_connection_refused_is_retryable(dest):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(FetchError, match="cannot connect") as caught:
        fetch(f"http://127.0.0.1:{port}/a.wav", dest, LOCAL)
    assert caught.value.url == f"http://127.0.0.1:{port}/a.wav" and isinstance(caught.value, RuntimeError)


# --- responses ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path,reason", [("/page.html", "server sent text/html, not media"),
                                         ("/api", "server sent application/json, not media"),
                                         ("/playlist", "playlist"), ("/gzip.wav", "Content-Encoding")])
def test_non_media_responses_are_refused(path, reason, server, dest):
    with pytest.raises(MediaError, match=reason):
        fetch(server.url(path), dest, LOCAL)
    assert leftovers(dest) == []


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_client_errors_are_permanent(status, server, dest):
    with pytest.raises(MediaError, match=f"HTTP {status}") as caught:
        fetch(server.url(f"/status/{status}"), dest, LOCAL)
    assert not isinstance(caught.value, FetchError)


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_server_errors_are_retryable(status, server, dest):
    url = server.url(f"/status/{status}")
    with pytest.raises(FetchError, match=f"HTTP {status}") as caught:
        fetch(url, dest, LOCAL)
    assert caught.value.url == url and isinstance(caught.value, RuntimeError)
    assert not isinstance(caught.value, MediaError)


# --- redirects ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("redirects", [1, 3, 5])
def test_redirects_are_followed_up_to_the_limit(redirects, server, dest):
    got = fetch(server.url(f"/redirect/{redirects - 1}"), dest, LOCAL)  # /redirect/N: N + 1 redirects
    assert server.seen[-1][0] == "/media/talk.wav" and got.path.name == "talk.wav" and got.sha256 == WAV_SHA


@pytest.mark.parametrize("path,policy", [("/redirect/5", LOCAL), ("/loop", LOCAL),
                                         ("/redirect/0", FetchPolicy(max_redirects=0, allow_private=True))])
def test_redirect_limit(path, policy, server, dest):
    with pytest.raises(MediaError, match="too many redirects"):
        fetch(server.url(path), dest, policy)
    assert leftovers(dest) == []


def _via_redirect(location: str) -> str:
    return f"http://media.test/to?u={quote(location, safe='')}"


@pytest.mark.parametrize("location,reason", [
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://metadata.test/computeMetadata/v1/", "metadata.test resolves to 169.254.169.254"),
    ("http://127.0.0.1:{port}/media/talk.wav", "loopback"),
    ("http://[::ffff:10.0.0.1]/a.wav", "private"),
    ("http://2130706433/a.wav", "non-canonical"),
    ("file:///etc/passwd", "scheme 'file:'"),
    ("gopher://media.test/_x", "scheme 'gopher:'"),
    ("http://user:pw@cdn.test/media/talk.wav", "credentials"),
])
def test_redirect_to_a_blocked_target_is_refused(location, reason, server, dest, public):
    public.names["metadata.test"] = ["169.254.169.254"]
    with pytest.raises(MediaError, match="redirected to") as caught:
        fetch(_via_redirect(location.format(port=server.port)), dest, STRICT)
    assert reason in caught.value.reason
    assert public.connects == [(PUBLIC, 80)]  # only the first hop was connected to
    assert leftovers(dest) == []


def test_redirect_to_an_allowed_public_host_is_followed(server, dest, public):
    got = fetch(_via_redirect("http://cdn.test/media/talk.wav"), dest, STRICT)
    assert got.path.name == "talk.wav" and got.sha256 == WAV_SHA
    assert public.lookups == ["media.test", "cdn.test"] and public.connects == [(PUBLIC, 80), (PUBLIC, 80)]
    assert [host for _, host in server.seen[-2:]] == ["media.test", "cdn.test"]


# --- https --------------------------------------------------------------------------------------------------


def test_https_verifies_the_host_name_and_sends_sni(tls_server, dest, net, monkeypatch):
    net.names.update({"media.test": [PUBLIC], "other.test": [PUBLIC]})
    net.routes[(PUBLIC, 443)] = tls_server.port
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_server.cert))  # the test certificate is the one authority trusted
    got = fetch("https://media.test/media/talk.wav", dest, STRICT)
    assert got.sha256 == WAV_SHA and net.connects == [(PUBLIC, 443)]
    assert tls_server.sni[-1] == "media.test" and tls_server.seen[-1] == ("/media/talk.wav", "media.test")
    # the same server and address under another name: the certificate does not match it
    with pytest.raises(MediaError, match="certificate of other.test is not valid"):
        fetch("https://other.test/media/talk.wav", dest, STRICT)
    # and by default only the system's trusted authorities count
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(MediaError, match="certificate of media.test is not valid"):
        fetch("https://media.test/media/talk.wav", dest, STRICT)
    assert leftovers(dest) == ["talk.wav"]


# --- names --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url,disposition,content_type,expected", [
    ("http://h/a/b/Talk%20One.MP3", None, None, "Talk One.mp3"),
    ("http://h/a/talk.wav?token=x#frag", None, None, "talk.wav"),
    ("http://h/a/talk.wav/", None, None, "talk.wav"),
    ("http://h/get", 'attachment; filename="../../etc/passwd.wav"', None, "passwd.wav"),
    ("http://h/get", 'attachment; filename="C:\\temp\\a.wav"', None, "a.wav"),
    ("http://h/get", "attachment; filename*=UTF-8''caf%C3%A9.flac; filename=\"cafe.wav\"", None, "café.flac"),
    ("http://h/get", 'attachment; filename=".bashrc.ogg"', None, "bashrc.ogg"),
    ("http://h/x.ogg", 'attachment; filename="setup.exe"', None, "x.ogg"),
    ("http://h/%2e%2e%2fsecret.wav", None, None, "secret.wav"),
    ("http://h/a%00b%0a.wav", None, None, "ab.wav"),
    ("http://h/evil%E2%80%AEvaw.mp3", None, None, "evilvaw.mp3"),
    ("http://h/stream", None, "audio/mpeg", "stream.mp3"),
    ("http://h/stream", None, "audio/mpeg; charset=binary", "stream.mp3"),
    ("http://h/x.php", None, "audio/x-wav", "x.wav"),
    ("http://h/s", None, "audio/wav", "s.wav"),
    ("http://h/s", None, "audio/ogg", "s.ogg"),
    ("http://h/s", None, "audio/flac", "s.flac"),
    ("http://h/s", None, "video/mp4", "s.mp4"),
    ("http://h/s", None, "audio/mp4", "s.m4a"),
    ("http://h/s", None, "video/webm", "s.webm"),
    ("http://h/s", None, "video/quicktime", "s.mov"),
    ("http://h/", None, "audio/mpeg", "media.mp3"),
    ("http://h/...", None, "audio/opus", "media.opus"),
    ("http://h/get", 'attachment; filename="Episode 12"', "audio/mpeg", "Episode 12.mp3"),
])
def test_filename_for(url, disposition, content_type, expected):
    assert filename_for(url, disposition, content_type) == expected


def test_filename_is_limited_in_length():
    name = filename_for("http://h/" + "é" * 400 + ".WAV")
    assert name.endswith(".wav") and len(name.encode()) <= 160


@pytest.mark.parametrize("url,content_type", [("http://h/file", "application/octet-stream"),
                                              ("http://h/file.exe", None), ("http://h/", None)])
def test_filename_without_a_supported_format_is_refused(url, content_type):
    with pytest.raises(MediaError, match="unsupported"):
        filename_for(url, None, content_type)


def test_download_without_a_supported_format_is_refused(server, dest):
    with pytest.raises(MediaError, match="unsupported media"):
        fetch(server.url("/blob"), dest, LOCAL)
    assert leftovers(dest) == []


# --- policy -------------------------------------------------------------------------------------------------


ENVIRONMENT = {"FETCH_MAX_BYTES": "1000", "FETCH_CONNECT_TIMEOUT": "1.5", "FETCH_READ_TIMEOUT": "2",
               "FETCH_TOTAL_TIMEOUT": "30", "FETCH_ALLOW_PRIVATE_ADDRESSES": "yes", "FETCH_MAX_REDIRECTS": "2"}


@pytest.fixture
def clean_env(monkeypatch):
    for name in [*ENVIRONMENT, "FETCH_ALLOWED_SCHEMES"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_policy_defaults_and_environment(clean_env):
    assert FetchPolicy().max_bytes == 2 * 1024**3 and not FetchPolicy().allow_private
    assert FetchPolicy.env_name("allow_private") == "FETCH_ALLOW_PRIVATE_ADDRESSES"
    for name, value in ENVIRONMENT.items():
        clean_env.setenv(name, value)
    assert FetchPolicy() == FetchPolicy(max_bytes=1000, connect_timeout=1.5, read_timeout=2.0, total_timeout=30.0,
                                        allow_private=True, max_redirects=2)
    for word, value in [("1", True), ("true", True), ("ON", True), ("0", False), ("no", False), ("", False)]:
        clean_env.setenv("FETCH_ALLOW_PRIVATE_ADDRESSES", word)
        assert FetchPolicy().allow_private is value


@pytest.mark.parametrize("name,value,message", [
    ("FETCH_MAX_BYTES", "lots", "FETCH_MAX_BYTES='lots' is not a valid int"),
    ("FETCH_MAX_BYTES", "0", "FETCH_MAX_BYTES must be > 0, got 0"),
    ("FETCH_READ_TIMEOUT", "-1", "FETCH_READ_TIMEOUT must be > 0, got -1"),
    ("FETCH_ALLOW_PRIVATE_ADDRESSES", "maybe", "FETCH_ALLOW_PRIVATE_ADDRESSES='maybe' is not a valid bool"),
    ("FETCH_MAX_REDIRECTS", "-1", "FETCH_MAX_REDIRECTS must be >= 0, got -1")])
def test_policy_rejects_invalid_environment(name, value, message, clean_env):
    clean_env.setenv(name, value)
    with pytest.raises(ValueError, match=f"^invalid URL download settings: {re.escape(message)}$"):
        FetchPolicy()
